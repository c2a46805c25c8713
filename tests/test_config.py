"""Run configuration: structured sections, profiles, YAML, overrides and their errors."""

from __future__ import annotations

import pytest

from pdebench_core.config import build_config, config_hash, parse_overrides
from pdebench_core.errors import UsageError


def test_profile_then_yaml_then_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  max_steps: 7\n  lr: 0.01\nmodel:\n  width: 12\ndata:\n  ns2d:\n    n_train: 5\n")
    cfg = build_config(model="fno", data="ns2d", profile="smoke", config_file=config,
                       overrides=["train.lr=0.002", "data.ns2d.nu=0.0001"])
    assert cfg.train.max_steps == 7  # YAML over the profile
    assert cfg.train.lr == 0.002  # override over YAML
    assert cfg.model.width == 12 and cfg.model.name == "fno"
    assert cfg.data.ns2d.n_train == 5 and cfg.data.ns2d.nu == 0.0001
    assert cfg.run.profile == "smoke" and cfg.run.task == "train"


def test_profiles_change_defaults():
    smoke = build_config(model="fno", data="ns2d", profile="smoke")
    small = build_config(model="fno", data="ns2d")
    assert small.run.profile == "small"
    assert smoke.train.max_steps < small.train.max_steps
    assert smoke.model.width < small.model.width
    assert smoke.data.ns2d.resolution < small.data.ns2d.resolution


@pytest.mark.parametrize("overrides, message", [
    (["train.max_stpes=3"], r"unknown setting 'train.max_stpes' \(did you mean 'max_steps'\?\)"),
    (["model.widht=3"], r"unknown setting 'model.widht' \(did you mean 'width'\?\)"),
    (["data.ns2d.nuu=3"], r"unknown setting 'data.ns2d.nuu' \(did you mean 'nu'\?\)"),
    (["trian.lr=3"], r"unknown section 'trian' in overrides \(did you mean 'train'\?\)"),
    (["train.max_steps=many"], r"bad value for 'train.max_steps'"),
    (["data.cfd2d.mach=1"], r"settings for dataset 'cfd2d' in overrides, but it is not in --data"),
    (["train.max_steps"], r"override 'train.max_steps' is not key=value"),
])
def test_config_errors_are_one_line_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message) as info:
        build_config(model="fno", data="ns2d", profile="smoke", overrides=overrides)
    assert "\n" not in str(info.value)


def test_unknown_names_fail_before_compute():
    with pytest.raises(UsageError, match=r"unknown dataset 'ns2' \(did you mean 'ns2d'\?\)"):
        build_config(model="fno", data="ns2")
    with pytest.raises(UsageError, match=r"unknown task 'trian'"):
        build_config(model="fno", data="ns2d", task="trian")
    with pytest.raises(UsageError, match=r"unknown profile 'tiny'"):
        build_config(model="fno", data="ns2d", profile="tiny")
    with pytest.raises(UsageError, match=r"unknown metric 'l2'"):
        build_config(model="fno", data="ns2d", overrides=["eval.metrics=[l2]"])
    with pytest.raises(UsageError, match=r"no model given"):
        build_config(data="ns2d")


def test_missing_or_broken_yaml(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_config(model="fno", data="ns2d", config_file=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        build_config(model="fno", data="ns2d", config_file=bad)


def test_yaml_can_name_model_and_data(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  name: persistence\ndata:\n  ns2d: {}\nrun:\n  seed: 3\n")
    cfg = build_config(config_file=config)
    assert cfg.model.name == "persistence" and list(cfg.data) == ["ns2d"] and cfg.run.seed == 3


def test_config_hash_ignores_run_id_only():
    a = build_config(model="fno", data="ns2d", run_id="a")
    b = build_config(model="fno", data="ns2d", run_id="b")
    c = build_config(model="fno", data="ns2d", overrides=["train.lr=0.5"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_a_config_path_that_is_missing_or_not_a_file_is_named(tmp_path):
    from pdebench_core.config import build_config
    from pdebench_core.errors import UsageError

    with pytest.raises(UsageError, match=f"config file {tmp_path / 'nope.yaml'} does not exist"):
        build_config(model="fno", data="ns2d", config_file=tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match=f"config file {tmp_path} is not a file; pass a YAML file"):
        build_config(model="fno", data="ns2d", config_file=tmp_path)


def test_a_relative_data_path_is_kept_absolute_and_a_url_as_given(tmp_path, monkeypatch):
    from pdebench_core.config import build_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ns.h5").touch()
    cfg = build_config(model="fno", data="ns2d", overrides=["data.ns2d.path=files/ns.h5"])
    assert cfg.data.ns2d.path == str(tmp_path / "files" / "ns.h5")  # a rerun from elsewhere finds it
    url = build_config(model="fno", data="ns2d", overrides=["data.ns2d.path=http://127.0.0.1:9/ns.h5"])
    assert url.data.ns2d.path == "http://127.0.0.1:9/ns.h5"


def test_a_relative_sink_path_is_kept_absolute(tmp_path, monkeypatch):
    from pdebench_core.config import build_config

    monkeypatch.chdir(tmp_path)
    cfg = build_config(model="fno", data="ns2d", overrides=["sinks.sqlite.path=results/mine.sqlite"])
    assert cfg.sinks.sqlite.path == str(tmp_path / "results" / "mine.sqlite")  # a resume elsewhere adds to it


def test_a_sinks_own_relative_default_path_stays_as_it_is(tmp_path, monkeypatch):
    """A sink may keep its default relative to the run directory; neither a run nor its resume
    (which rebuilds from the saved config, default included) makes it absolute."""
    from dataclasses import dataclass

    from pdebench_core import hookimpl, plugins
    from pdebench_core.config import build_config

    @dataclass
    class CsvConfig:
        path: str = "results.csv"

    class CsvPlugin:
        @staticmethod
        @hookimpl
        def register_sinks(register):
            register("csv-test", lambda cfg, run_dir: None, config=CsvConfig)

    monkeypatch.chdir(tmp_path)
    plugins.register_plugin(CsvPlugin, name="csv-test-plugin")
    try:
        given = ["run.sinks=[jsonl,csv-test]"]
        assert build_config(model="fno", data="ns2d", overrides=given).sinks["csv-test"].path == "results.csv"
        saved = build_config(model="fno", data="ns2d", overrides=[*given, "sinks.csv-test.path=results.csv"])
        assert saved.sinks["csv-test"].path == "results.csv"  # as a resume re-reads it from config.yaml
        mine = build_config(model="fno", data="ns2d", overrides=[*given, "sinks.csv-test.path=out/mine.csv"])
        assert mine.sinks["csv-test"].path == str(tmp_path / "out" / "mine.csv")
    finally:
        plugins.unregister_plugin("csv-test-plugin")


def test_an_option_wins_over_the_config_file(tmp_path):
    """A shared base config that pins a profile or task still takes a quick --profile smoke."""
    from pdebench_core.config import build_config

    base = tmp_path / "base.yaml"
    base.write_text("run:\n  profile: small\n  task: train\n  seed: 3\n")
    cfg = build_config(model="fno", data="ns2d", profile="smoke", task="evaluate", config_file=base, seed=5)
    assert (cfg.run.profile, cfg.run.task, cfg.run.seed) == ("smoke", "evaluate", 5)
