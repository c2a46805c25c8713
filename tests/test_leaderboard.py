"""The leaderboard: published tables, local rows, seed pooling, comparisons under one protocol, filters, views, reproduce."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pdebench_core import leaderboard as lb
from pdebench_core.cli_results import register
from pdebench_core.leaderboard.render import pivot_cell
from pdebench_core.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "registry" / "published"
DPOT = "Hao et al. 2024 (DPOT), Table 1"
PDEBENCH = "Takamoto et al. 2022 (PDEBench), v7"
SMOKE_RUN = "fno-smoke-results"  # the run conftest.py's smoke_run_home makes


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """Test app holding the result commands."""

    register(app)
    return app


def invoke(*args: str):
    return CliRunner().invoke(_app(), list(args))


def store_row(run_id: str, seed: int = 0, l2re: float = 0.5, model: str = "fno", dataset: str = "ns2d",
              task: str = "train", lr: float = 1e-3, data_cfg: dict | None = None, profile: str = "paper",
              horizon: int = 20, grid: str = "64x64", data_hash: str = "data-1", n_params: int = 4505,
              scoring: str = "strided on 128x128", **metrics: float) -> dict:
    """A result row as the workflow writes it (a resolved config and the data's provenance); by default
    measured like DPOT's Table 1 on ns2d (t_in 10, horizon 20, 64x64 scored strided on 128x128)."""
    config = {
        "run": {"task": task, "seed": seed, "device": "auto", "run_id": run_id, "profile": profile,
                "sinks": ["sqlite", "jsonl"]},
        "model": {"name": model, "width": 8},
        "data": {dataset: data_cfg or {"nu": 0.001, "n_train": 8}},
        "train": {"lr": lr, "max_steps": 10}, "eval": {"metrics": ["l2re"]}, "task": {},
    }
    return {
        "run_id": run_id, "model": model, "dataset": dataset, "task": task, "metrics": {"l2re": l2re, **metrics},
        "seed": seed, "n_params": n_params, "train_time_s": 2.0 + seed, "device": "cpu",
        "versions": {"pdeb": "0.1.0"}, "config_hash": f"hash-{run_id}", "config": config, "profile": profile,
        "data_hash": data_hash, "command": f"pdeb run --model {model} --data {dataset}",
        "extra": {"scoring": scoring, "scored_data_hash": f"test-of-{data_hash}"},
        "data_source": "generated", "dataset_hash": f"{data_hash}-{dataset}", "n_train": 8, "t_in": 10,
        "horizon": horizon, "grid": grid,
    }


def fill(rows: list[dict]) -> None:
    store = ResultsStore()
    for row in rows:
        store.add(row)


def by_run(board) -> dict:
    return {r.run_id: r for r in board.rows if r.is_local}


# --------------------------------------------------------------------------- published numbers


def _csv_cells(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#") and line.strip()))


def test_published_rows_cover_every_cell_with_citations():
    tables = lb.load_published()
    assert tables.directory == PUBLISHED
    rows = lb.published_rows(tables)
    dpot = [r for r in rows if r.source == DPOT]
    pdebench = [r for r in rows if r.source == PDEBENCH]
    table = _csv_cells(PUBLISHED / "dpot_table1_l2re.csv")
    filled = [(rec["model"], rec["group"], rec["part"], col, float(v)) for rec in table for col, v in rec.items()
              if col not in ("model", "group", "part", "params") and v.strip()]
    # also shown under our `ns2d`, and each compressible-NS column under its `cfd2d-*` preset
    alias = sum(1 for *_, col, _ in filled if col == "ns2d_nu1e-3" or re.fullmatch(r"cns_M[\d.]+_eta[\d.]+", col))
    assert len(table) == 24 and len(dpot) == len(filled) + alias
    got = [(r.model, r.task, r.part, r.published_name, r.metrics["l2re"]) for r in dpot]
    assert sorted(set(got)) == sorted(filled) and len(set(filled)) == len(filled)
    assert len(pdebench) == len(_csv_cells(PUBLISHED / "pdebench_fno_nrmse.csv")) == 24
    assert all(set(r.metrics) == {"l2re"} for r in dpot) and all(set(r.metrics) == {"nrmse"} for r in pdebench)
    # every published dataset name is mapped explicitly (no fallback spelling)
    columns = set(table[0]) - {"model", "group", "part", "params"}
    names = {rec["dataset"] for rec in _csv_cells(PUBLISHED / "pdebench_fno_nrmse.csv")}
    assert columns | names <= set(tables.datasets)
    assert all(r.citation and r.url.startswith("https://arxiv.org/") for r in rows)


def test_published_tables_carry_paper_version_date_and_protocol():
    tables = lb.load_published()
    for key in ("dpot", "pdebench"):
        info = lb.source_summary(tables, key)
        assert info["paper"] and info["version"] and info["date"] and info["protocol"], key
        protocol = tables.protocols[key]
        assert protocol is not None and protocol.metric == tables.sources[key]["metric"]
    # every published column has the measure it was taken with (averages: that of their members)
    rows = lb.published_rows(tables)
    assert all(r.published_measure is not None for r in rows)
    ns2d = {r.published_measure for r in rows if r.source_key == "dpot" and r.dataset == "ns2d"}
    assert ns2d == {lb.Measure(t_in=10, horizon=20, grid="64x64", scoring="strided on 128x128")}
    burgers = {r.published_measure for r in rows if r.source_key == "pdebench" and r.dataset == "burgers1d"}
    assert burgers == {lb.Measure(t_in=10, horizon=31, grid="256", scoring="native")}


def test_pdebench_rows_are_checked_or_marked_unchecked():
    """The 2D PDEBench cells equal the FNO row of DPOT's Table 1 (which quotes PDEBench); the 1D
    and Darcy cells were not compared with the paper and say so."""
    rows = lb.published_rows()
    pdebench = [r for r in rows if r.source_key == "pdebench"]
    fno = {(r.dataset, r.setting): r.metrics["l2re"] for r in rows
           if r.source_key == "dpot" and r.model == "FNO" and not r.averaged and r.dataset != "ns2d"}
    for row in pdebench:
        if row.dataset in ("cfd2d", "dr2d", "swe2d"):
            assert row.checked and row.metrics["nrmse"] == pytest.approx(fno[(row.dataset, row.setting)])
        else:
            assert row.checked is False, row.dataset
    assert "unchecked against its source" in lb.render(lb.collect(store_rows=[], data="burgers1d"), "markdown")


@pytest.mark.parametrize("source, model, task, dataset, setting, metric, value", [
    (DPOT, "FNO", "baseline", "ns2d-nu1e-5", "", "l2re", 0.156),
    (DPOT, "FNO", "baseline", "ns2d", "", "l2re", 0.0128),  # our ns2d default is nu=1e-3
    (DPOT, "FNO", "baseline", "ns2d-nu1e-3", "", "l2re", 0.0128),
    (DPOT, "DPOT-L-500", "finetuned", "cfd2d", "M=1.0 eta=zeta=0.1", "l2re", 0.0108),
    (DPOT, "DPOT-H", "pretrained", "cfd2d", "M=0.1, mean over eta=zeta 0.1 and 0.01", "l2re", 0.00948),
    (DPOT, "GK-T", "baseline", "pdearena-ns", "", "l2re", 0.0952),
    (DPOT, "MPP-S", "pretrained", "swe2d", "", "l2re", 0.0024),
    (DPOT, "DPOT-Ti", "pretrained", "ns2d-nu1e-5", "", "l2re", 0.0976),
    (PDEBENCH, "FNO", "baseline", "burgers1d", "nu=0.01", "nrmse", 7.8e-3),
    (PDEBENCH, "FNO", "baseline", "cfd2d", "M=1.0 eta=zeta=0.1", "nrmse", 9.8e-2),
    (PDEBENCH, "FNO", "baseline", "dr2d", "", "nrmse", 0.12),
])
def test_published_values_map_to_our_dataset_names(source, model, task, dataset, setting, metric, value):
    hits = [r for r in lb.published_rows() if (r.source, r.model, r.task, r.dataset, r.setting)
            == (source, model, task, dataset, setting)]
    assert len(hits) == 1
    assert hits[0].metrics[metric] == pytest.approx(value)


def test_table1_groups_are_the_papers_parts():
    """Parts 1-2 of Table 1 are zero-shot results of pre-trained models, not per-dataset baselines."""
    rows = [r for r in lb.published_rows() if r.source == DPOT and r.published_name == "swe2d"]
    labels = {(r.model, r.part): r.task for r in rows}
    assert labels[("FNO", "1")] == labels[("OFormer", "1")] == "baseline"
    for model in ("DPOT-Ti", "DPOT-S", "MPP-Ti", "MPP-S"):
        assert labels[(model, "1")] == "pretrained", model
    assert labels[("DPOT-S", "2")] == labels[("DPOT-H", "2")] == labels[("MPP-L", "2")] == "pretrained"
    assert labels[("DPOT-L-500", "3")] == "finetuned"
    spec = lb.load_published().sources["dpot"]
    assert "dc8a1728e5f582baa5f42284fb30027dbcdcd812" in spec["version"] and spec["part_column"] == "part"
    # DPOT-S is listed in parts 1 and 2 with different cells: the pivot keeps both rows.
    table = lb.pivot(lb.collect(store_rows=[], source="dpot", model="DPOT-S", data="pdearena-ns"), "l2re")
    assert sorted((e.part, e.cells["pdearena-ns"].metrics["l2re"]) for e in table.rows) == \
        [("1", 0.0991), ("2", 0.0999)]
    assert lb.render_pivot(table, "markdown").splitlines()[0] == "| model | size | source | task | part | pdearena-ns |"


def test_published_tables_are_found_in_an_installed_layout(tmp_path, monkeypatch):
    """A wheel installs the tables as data files under <prefix>/share/pdeb/registry/published."""
    import sys
    import sysconfig

    from pdebench_core import paths

    prefix = tmp_path / "prefix"
    shutil.copytree(PUBLISHED, prefix / "share" / "pdeb" / "registry" / "published")
    shutil.copytree(ROOT / "registry" / "protocols", prefix / "share" / "pdeb" / "registry" / "protocols")
    fake_package = tmp_path / "site-packages" / "pdebench_core"
    fake_package.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(fake_package / "paths.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert lb.published_dir() == prefix / "share" / "pdeb" / "registry" / "published"
    installed = lb.published_rows()
    assert len(installed) == len(lb.published_rows(lb.load_published(PUBLISHED)))
    assert all(r.published_measure is not None for r in installed)  # the protocols were installed beside
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "nowhere"))
    monkeypatch.setattr(sysconfig, "get_path", lambda *a, **k: str(tmp_path / "nowhere"))
    assert lb.published_dir() is None
    assert lb.collect(store_rows=[]).rows == []  # no tables: an empty board, not a crash


def test_parse_setting_and_local_matching():
    assert lb.parse_setting("M=1.0 eta=zeta=0.1") == {"M": 1.0, "eta": 0.1, "zeta": 0.1}
    assert lb.parse_setting("nu=0.5 rho=1") == {"nu": 0.5, "rho": 1.0}
    assert lb.parse_setting("") == {}
    tables = lb.load_published()
    cfd = ["M=1.0 eta=zeta=0.1", "M=1.0 eta=zeta=0.01", "M=0.1 eta=zeta=0.1"]
    config = {"data": {"cfd2d": {"mach": 1.0, "eta": 0.1, "zeta": 0.1}}}
    assert lb.local_setting(tables, "cfd2d", config, cfd) == "M=1.0 eta=zeta=0.1"
    assert lb.local_setting(tables, "cfd2d", {"data": {"cfd2d": {"mach": 0.5, "eta": 0.1, "zeta": 0.1}}}, cfd) == ""
    burgers = {"data": {"burgers1d": {"nu": 0.01}}}
    assert lb.local_setting(tables, "burgers1d", burgers, ["nu=0.001", "nu=0.01"]) == "nu=0.01"


# --------------------------------------------------------------------------- local rows, pooling, ranks


def test_seeds_pool_into_mean_std_and_count(fresh_home):
    fill([store_row(f"a{s}", seed=s, l2re=v) for s, v in enumerate([0.1, 0.2, 0.3])]
         + [store_row("other-lr", lr=3e-3, l2re=0.05)])
    board = lb.collect(source="local")
    pooled = by_run(board)
    assert set(pooled) == {"a2", "other-lr"}  # the newest run names the pooled row
    row = pooled["a2"]
    assert row.n == 3 and row.run_ids == ["a0", "a1", "a2"] and row.seeds == [0, 1, 2]
    assert row.metrics["l2re"] == pytest.approx(0.2) and row.std["l2re"] == pytest.approx(0.1)
    assert row.train_time_s == pytest.approx(3.0)
    assert pooled["other-lr"].n == 1 and pooled["other-lr"].std["l2re"] is None
    assert [r.rank for r in board.rows] == [1, 2]  # 0.05 beats 0.2
    assert len(lb.collect(source="local", per_run=True).rows) == 4
    text = lb.render(board, "markdown")
    assert "0.2 ± 0.1" in text and "| 3 |" in text
    record = json.loads(lb.render(board, "json"))[1]
    assert record["l2re"] == pytest.approx(0.2) and record["std"]["l2re"] == pytest.approx(0.1) and record["n"] == 3


def test_same_seed_repeats_replace_the_earlier_run_and_do_not_inflate_n(fresh_home):
    fill([store_row("first", seed=0, l2re=0.4), store_row("again", seed=0, l2re=0.1),
          store_row("other-seed", seed=1, l2re=0.3)])
    row = by_run(lb.collect(source="local"))["other-seed"]
    assert row.n == 2 and row.seeds == [0, 1] and row.run_ids == ["again", "other-seed"]
    assert row.metrics["l2re"] == pytest.approx(0.2) and row.repeats == ["first"]
    assert "replaces first (same seed)" in lb.render(lb.collect(source="local"), "markdown")
    per_run = by_run(lb.collect(source="local", per_run=True))
    assert per_run["first"].differs == ["repeat of again"] and per_run["first"].rank is None
    assert per_run["again"].rank == 1 and per_run["other-seed"].rank == 2


def test_non_finite_rows_are_failed_and_never_pooled(fresh_home):
    fill([store_row("ok-0", seed=0, l2re=0.1), store_row("ok-1", seed=1, l2re=0.3),
          store_row("diverged", seed=2, l2re=float("nan"))])
    board = lb.collect(source="local")
    rows = by_run(board)
    assert rows["ok-1"].n == 2 and rows["ok-1"].metrics["l2re"] == pytest.approx(0.2)
    assert rows["diverged"].failed and rows["diverged"].n == 1 and rows["diverged"].rank is None
    assert rows["ok-1"].rank == 1 and rows["ok-1"].ranked_among == 1
    record = [r for r in json.loads(lb.render(board, "json")) if r["run_id"] == "diverged"][0]
    assert record["failed"] and record["l2re"] is None and "failed" in record["note"]
    assert "nan" in lb.render(board, "markdown").split("diverged")[0].splitlines()[-1]


def test_pooling_needs_the_same_config_and_the_same_data(fresh_home):
    base = store_row("x", seed=1)["config"]
    other = json.loads(json.dumps(base))
    other["run"].update(seed=7, run_id="y", sinks=["jsonl", "csv"])
    other["sinks"] = {"csv": {"filename": "other.csv"}}  # where results go: not another experiment
    other["train"].update(log_every=1, num_workers=2, checkpoint_every=3)  # how it is watched and fed: neither
    other["data"]["ns2d"]["preload"] = not base["data"]["ns2d"].get("preload", False)
    assert lb.seedless_hash(base) == lb.seedless_hash(other)
    assert lb.seedless_hash({**other, "run": {**other["run"], "device": "cuda"}}) != lb.seedless_hash(base)
    rollback = json.loads(json.dumps(base))
    rollback["train"]["on_divergence"] = "rollback"  # a rollback returns to the last checkpoint written
    sparser = json.loads(json.dumps(rollback))
    sparser["train"]["checkpoint_every"] = 1000
    assert lb.seedless_hash(rollback) != lb.seedless_hash(sparser)
    other["data"]["ns2d"]["n_train"] = 16
    assert lb.seedless_hash(base) != lb.seedless_hash(other)
    fill([store_row("d1-a", seed=0, data_hash="d1"), store_row("d1-b", seed=1, data_hash="d1"),
          store_row("d2", seed=2, data_hash="d2")])  # same config, another file under the same path
    assert sorted((r.run_id, r.n) for r in lb.collect(source="local").rows) == [("d1-b", 2), ("d2", 1)]


def test_size_is_the_parameter_count_not_a_preset_name(fresh_home):
    row = store_row("small-dpot", model="dpot", n_params=420_000, profile="small")
    row["config"]["model"]["size"] = "ti"
    fill([row])
    assert by_run(lb.collect(source="local"))["small-dpot"].size == "0.42M"
    assert [lb.size_label(n) for n in (4505, 420_000, 7_000_000, 122_000_000, 1_030_000_000)] == \
        ["4.5K", "0.42M", "7M", "122M", "1.03B"]


def test_ranks_are_per_group_with_ties_and_direction():
    def row(dataset: str, value: float | None) -> lb.Row:
        metrics = {} if value is None else {"m": value}
        return lb.Row(source="local", source_key="local", model="x", dataset=dataset, metrics=metrics,
                      failed=value is not None and value != value, t_in=10, horizon=20, grid="64x64")

    rows = [row("a", 0.3), row("a", 0.1), row("a", 0.1), row("b", 5.0), row("a", float("nan")), row("a", None)]
    lb.assign_ranks(rows, "m")
    assert [r.rank for r in rows] == [3, 1, 1, 1, None, None]
    lb.assign_ranks(rows, "m", higher_is_better=True)
    assert [r.rank for r in rows] == [1, 2, 2, 1, None, None]


def test_local_rows_rank_against_published_only_when_measured_alike(fresh_home):
    fill([store_row("good", l2re=0.001), store_row("bad", l2re=0.5, lr=0.1),
          store_row("long-rollout", l2re=0.0001, lr=0.2, horizon=40),
          store_row("small-profile", l2re=0.002, lr=0.3, profile="small")])
    board = lb.collect(data="ns2d")
    ranks = {(r.source, r.run_id or r.model): r.rank for r in board.rows}
    n_published = sum(1 for r in board.rows if r.source == DPOT)
    assert n_published == 21 and ranks[("local", "good")] == 1 and ranks[("local", "bad")] == n_published + 3
    mine = by_run(board)
    # a 40-step rollout is not ranked beside the published 20-step cells, and says why
    assert mine["long-rollout"].differs == ["horizon 40 vs 20"] and mine["long-rollout"].ranked_among == 1
    # a small-profile row measured alike is ranked beside them, marked
    assert mine["small-profile"].differs == ["profile small"] and ranks[("local", "small-profile")] == 2
    assert mine["good"].differs == [] and mine["good"].ranked_among == n_published + 3
    assert {r.source for r in board.rows} == {"local", DPOT}
    assert board.sources[DPOT]["url"] == "https://arxiv.org/abs/2403.03542"
    table = lb.pivot(board, "l2re")
    cells = {e.cells["ns2d"].run_id: pivot_cell(table, e, "ns2d") for e in table.rows if e.is_local}
    assert cells["long-rollout"] == "0.0001 [horizon 40 vs 20]"  # both values shown, not ranked together
    assert cells["good"] == "0.001 (1)" and cells["small-profile"] == "0.002 (2) [profile small]"


def test_local_rows_scored_on_other_trajectories_are_marked_and_ranked_apart_without_published_cells(fresh_home):
    """cfd3d has no published cells: rows are ranked only among rows scored on the same test
    trajectories; more train data with the same test split ranks together."""
    fill([store_row("a", l2re=0.2, dataset="cfd3d", data_hash="d1"),
          store_row("b", l2re=0.3, dataset="cfd3d", data_hash="d2", model="unet"),
          store_row("c", l2re=0.1, dataset="cfd3d", data_hash="d3", model="vit")])
    store = ResultsStore()
    rows = store.rows()
    for row in rows:  # a and b: other train data, one test split; c: another test split
        row["extra"]["scored_data_hash"] = "test-shared" if row["run_id"] in ("a", "b") else "test-other"
    board = lb.collect(rows, data="cfd3d")
    mine = by_run(board)
    assert (mine["a"].rank, mine["a"].ranked_among, mine["b"].rank) == (1, 2, 2)
    assert (mine["c"].rank, mine["c"].ranked_among) == (1, 1)
    assert mine["a"].differs == ["scored data test-sha"] and mine["c"].differs == ["scored data test-oth"]
    # one test split for all: no note
    for row in rows:
        row["extra"]["scored_data_hash"] = "test-shared"
    assert all(not r.differs and r.ranked_among == 3 for r in lb.collect(rows, data="cfd3d").rows)


def test_beside_published_cells_rows_on_other_trajectories_are_marked_but_ranked_with_them(fresh_home):
    fill([store_row("generated", l2re=0.001, data_hash="d1"), store_row("file", l2re=0.002, data_hash="d2")])
    rows = ResultsStore().rows()
    rows[1]["extra"]["scored_data_hash"] = "from-the-file"
    mine = by_run(lb.collect(rows, data="ns2d"))
    assert mine["generated"].differs == ["scored data test-of-"] and mine["file"].differs == ["scored data from-the"]
    assert mine["generated"].ranked_among == mine["file"].ranked_among == 23  # 21 published cells and both


def test_rows_written_before_scoring_was_recorded_take_it_from_their_config(fresh_home):
    older = store_row("older")
    del older["extra"]["scoring"]
    strided = {**older, "config": {**older["config"], "eval": {"grid": "strided"}, "train": {"resolution": 128}}}
    assert lb.collect([strided], data="ns2d").rows[-1].differs == []  # strided on 128x128, like Table 1
    native = lb.collect([older], data="ns2d")  # no resolution, one dataset: the model saw the data's grid
    assert by_run(native)["older"].differs == ["scoring native vs strided on 128x128"]
    mixed = {**older, "config": {**older["config"], "data": {"ns2d": {}, "cfd2d": {}}}}
    assert by_run(lb.collect([mixed], data="ns2d"))["older"].differs == ["scoring ? vs strided on 128x128"]


# --------------------------------------------------------------------------- filters


def test_filters_keep_what_they_name(fresh_home):
    fill([store_row("r1", model="fno", dataset="ns2d", nrmse=0.4),
          store_row("r2", model="unet", dataset="burgers1d", data_cfg={"nu": 0.01}, nrmse=0.3)])
    by_model = lb.collect(model="fno")
    assert {r.model for r in by_model.rows} == {"fno", "FNO", "FNO-m"}  # published labels map to `fno`
    assert {r.source for r in by_model.rows} == {"local", DPOT, PDEBENCH}
    only_local = lb.collect(source="local", data="burgers1d")
    assert [r.run_id for r in only_local.rows] == ["r2"]
    assert only_local.rows[0].setting == "nu=0.01"  # lines up with PDEBench's nu=0.01 row
    published = lb.collect(source="published", task="finetuned")
    assert published.rows and all(r.source == DPOT and r.task == "finetuned" for r in published.rows)
    assert {r.source for r in lb.collect(source="pdebench").rows} == {PDEBENCH}
    nrmse = lb.collect(metric="nrmse")
    assert nrmse.metrics == ["nrmse"] and nrmse.rank_metric == "nrmse"
    assert all("nrmse" in r.metrics for r in nrmse.rows)
    assert {r.source for r in nrmse.rows} == {"local", PDEBENCH}


@pytest.mark.parametrize("args, message", [
    (["--data", "ns2dd"], "no results for dataset 'ns2dd' (did you mean 'ns2d'?)"),
    (["--model", "fnoo"], "(did you mean 'fno'?)"),
    (["--metric", "l2ree"], "no results for metric 'l2ree' (did you mean 'l2re'?)"),
    (["--task", "trian"], "(did you mean 'train'?)"),
    (["--source", "locall"], "unknown source 'locall' (did you mean 'local'?)"),
    (["--format", "htm"], "unknown format 'htm' (did you mean 'html'?)"),
    (["--pivot", "--metric", "l2re,nrmse"], "--pivot shows one metric"),
    # each name exists, together they match nothing: said so, with the closest name that does
    (["--source", "local", "--data", "ns2d", "--model", "unet"],
     "no results for model 'unet' among the rows of --data ns2d (closest: 'fno'); --model takes a comma-separated "
     "list of: fno"),
    (["--source", "local", "--data", "burgers1d", "--model", "fno"],
     "no results for model 'fno' among the rows of --data burgers1d (closest: 'unet')"),
    (["--source", "dpot", "--data", "swe2d", "--task", "train"],
     "no results for task 'train' among the rows of --data swe2d"),
])
def test_bad_filters_are_one_line_usage_errors(fresh_home, args, message):
    fill([store_row("r1"), store_row("r2", model="unet", dataset="burgers1d", data_cfg={"nu": 0.01})])
    result = invoke("leaderboard", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.startswith("error: ")
    assert result.output.strip().count("\n") == 0


# --------------------------------------------------------------------------- pivot and formats


def test_pivot_is_model_by_dataset_like_the_paper(fresh_home):
    fill([store_row("mine", l2re=0.02), store_row("mine-2", seed=1, l2re=0.04)])
    table = lb.pivot(lb.collect(metric="l2re"), "l2re")
    assert table.columns[:4] == ["ns2d-nu1e-5", "ns2d-nu1e-4", "ns2d-nu1e-3", "ns2d"]
    assert "cfd2d (M=1.0 eta=zeta=0.1)" in table.columns
    published = [e for e in table.rows if e.source == DPOT]
    assert [e.model for e in published][:3] == ["FNO", "UNet", "FFNO"]  # the paper's row order
    fno = published[0]
    assert fno.cells["ns2d-nu1e-5"].metrics["l2re"] == 0.156 and fno.task == "baseline" and fno.size == "0.5M"
    local = [e for e in table.rows if e.is_local]
    assert len(local) == 1 and set(local[0].cells) == {"ns2d"}
    cell = local[0].cells["ns2d"]
    assert cell.metrics["l2re"] == pytest.approx(0.03) and cell.n == 2
    column = [e.cells["ns2d"].metrics["l2re"] for e in table.rows if "ns2d" in e.cells]
    assert local[0].ranks["ns2d"] == 1 + sum(v < 0.03 for v in column)
    best = [e for e in table.rows if e.ranks.get("ns2d-nu1e-5") == 1]
    assert [e.model for e in best] == ["DPOT-H"]
    markdown = lb.render_pivot(table, "markdown")
    assert "**0.0174 (1)**" in markdown and "0.03 ± 0.014" in markdown
    assert "<strong>0.0174 (1)</strong>" in lb.render_pivot(table, "html")
    rows = json.loads(lb.render_pivot(table, "json"))
    mine = [r for r in rows if r["source"] == "local"][0]
    assert mine["ns2d"] == pytest.approx(0.03) and mine["n"]["ns2d"] == 2 and mine["run_id"]["ns2d"] == "mine-2"
    lines = list(csv.DictReader(io.StringIO(lb.render_pivot(table, "csv"))))
    assert float(lines[0]["ns2d-nu1e-5"]) == 0.156
    result = invoke("leaderboard", "--pivot", "--format", "markdown", "--data", "ns2d,ns2d-nu1e-5")
    assert result.exit_code == 0 and result.output.splitlines()[0].startswith("| model | size | source | task |")


def test_every_format_renders_the_rows(fresh_home, tmp_path):
    fill([store_row("r1", l2re=0.25, nrmse=0.3)])
    args = ["leaderboard", "--data", "ns2d"]
    table = invoke(*args)
    assert table.exit_code == 0 and "r1" in table.output and "0.25" in table.output and "dpot" in table.output
    wide = invoke(*args, "--wide")
    assert wide.exit_code == 0 and "DPOT-H" in wide.output and "64x64" in wide.output and "r1" in wide.output
    markdown = invoke(*args, "--format", "markdown").output
    assert markdown.startswith("| rank | dataset | model |") and "| r1 |" in markdown and DPOT in markdown
    lines = list(csv.DictReader(io.StringIO(invoke(*args, "--format", "csv").output)))
    local = [line for line in lines if line["source"] == "local"]
    assert len(local) == 1 and float(local[0]["l2re"]) == 0.25 and local[0]["run_id"] == "r1"
    assert len(lines) == 22 and {"l2re_std", "config_hash", "data_hash", "data_source", "horizon"} <= set(lines[0])
    records = json.loads(invoke(*args, "--format", "json").output)
    mine = [r for r in records if r["source"] == "local"][0]
    for key in ("model", "dataset", "task", "run_id", "source", "l2re", "nrmse", "config_hash", "data_hash",
                "seed", "n_params", "train_time_s", "device", "versions", "data_source", "dataset_hash", "n_train",
                "t_in", "horizon", "grid", "size", "profile", "differs"):
        assert key in mine, key
    assert mine["versions"] == {"pdeb": "0.1.0"} and mine["n_params"] == 4505 and mine["size"] == "4.5K"
    assert all(r["source"] == DPOT and r["run_id"] is None and r["horizon"] == 20 for r in records if r is not mine)
    page = invoke(*args, "--format", "html").output
    assert page.startswith("<!DOCTYPE html>") and page.count('<tr class="local">') == 1
    assert page.count('<tr class="published">') == 21 and "<link" not in page and "src=" not in page
    assert "http://" not in page.split("<h2>Sources</h2>")[0]  # nothing fetched from the network
    out = tmp_path / "board.html"
    assert invoke(*args, "--out", str(out)).exit_code == 0  # format taken from the suffix
    assert out.read_text().startswith("<!DOCTYPE html>")
    # an earlier output is replaced; another kind of file only with --force: a typo must not
    # overwrite the results store
    store = fresh_home / "results.sqlite"
    before = store.read_bytes()
    refused = invoke(*args, "--format", "csv", "--out", str(store))
    assert refused.exit_code == 2 and "exists and is no .csv file; pass --force" in refused.output
    assert store.read_bytes() == before
    assert invoke(*args, "--out", str(out)).exit_code == 0  # board.html again
    assert invoke(*args, "--format", "html", "--out", "/dev/null").exit_code == 2  # a device
    assert invoke(*args, "--format", "csv", "--out", str(tmp_path)).exit_code == 2  # a folder
    mismatch = invoke(*args, "--format", "html", "--out", str(tmp_path / "board.csv"))
    assert mismatch.exit_code == 2 and "names a csv file, but --format is html" in mismatch.output


def test_per_run_view_shows_where_each_number_comes_from(fresh_home):
    fill([store_row("prov-run", n_params=420_000)])
    result = invoke("leaderboard", "--per-run", "--source", "local")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "run_id" in line).split()
    assert header[:5] == ["rank", "dataset", "model", "size", "profile"]
    assert ["data", "data_hash", "n_train", "t_in", "horizon", "grid"] == header[5:11]
    line = next(line for line in result.output.splitlines() if "prov-run" in line).split()
    assert line[1:11] == ["ns2d", "fno", "0.42M", "paper", "generated", "data-1-n", "8", "10", "20", "64x64"]


def _width(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


def test_default_view_fits_100_columns_local_first(fresh_home):
    long_id = "fno-ns2d-small-20250101-120000-a1b2c3d4"
    fill([store_row(long_id, l2re=0.02), store_row("fno-long-rollout", l2re=0.05, lr=0.2, horizon=40),
          store_row("unet-burgers", model="unet", dataset="burgers1d", data_cfg={"nu": 0.01}, nrmse=0.3,
                    horizon=31, grid="256")])
    result = invoke("leaderboard")
    assert result.exit_code == 0, result.output
    text = result.output
    assert _width(text) <= 100
    lines = text.splitlines()
    first_published = next(i for i, line in enumerate(lines) if line.startswith("dpot = "))
    run_lines = [i for i, line in enumerate(lines) if long_id in line or "fno-long-rollout" in line
                 or "unet-burgers" in line]
    assert len(run_lines) == 3 and max(run_lines) < first_published  # local runs first, whole ids
    assert any(line.startswith("pdebench = ") for line in lines)  # the published tables, summarised
    assert "DPOT-H" not in text  # not listed row by row
    assert "horizon 40 vs 20" in text
    wide = invoke("leaderboard", "--wide", "--data", "ns2d").output
    assert any(long_id in line for line in wide.splitlines()) and "DPOT-H" in wide  # ids never wrap


def test_default_view_tells_tasks_apart_and_never_cuts_a_word(fresh_home):
    """A pre-trained and a fine-tuned model on one dataset get a task column; long dataset
    names and run ids are never folded inside a word, even when the table must grow past 100."""
    pretrained = "dpot-cfd2d-m1-eta1e-1-pretrain-20250101-120000-a1b2c3d4"
    finetuned = "dpot-cfd2d-m1-eta1e-1-finetune-20250101-130000-e5f6a7b8"
    fill([store_row(pretrained, model="dpot", dataset="cfd2d-m1-eta1e-1", task="pretrain", l2re=0.3),
          store_row(finetuned, model="dpot", dataset="cfd2d-m1-eta1e-1", task="finetune", l2re=0.1)])
    result = invoke("leaderboard")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert next(line for line in lines if "run_id" in line).split()[:4] == ["rank", "dataset", "model", "task"]
    rows = {line.split()[3]: line.split() for line in lines if pretrained in line or finetuned in line}
    assert rows["finetune"][1] == rows["pretrain"][1] == "cfd2d-m1-eta1e-1"
    assert rows["finetune"][-1] == finetuned and rows["pretrain"][-1] == pretrained
    fill([store_row("fno-alone", model="fno", dataset="ns2d")])
    alone = invoke("leaderboard", "--data", "ns2d").output
    assert "task" not in next(line for line in alone.splitlines() if "run_id" in line).split()


EVIL = "<script>document.body.setAttribute('data-pwned','1')</script>"


def test_html_escapes_every_value(fresh_home):
    fill([store_row("evil-run", model=EVIL, l2re=0.1)])
    for text in (lb.render(lb.collect(source="local"), "html"),
                 lb.render_pivot(lb.pivot(lb.collect(source="local")), "html")):
        assert text.count("<script") == 1 and html.escape(EVIL) in text  # only the page's own script


def test_leaderboard_does_not_import_torch(fresh_home):
    code = ("import sys, typer; from pdebench_core.cli_results import register; app = typer.Typer(); "
            "app.callback()(lambda: None); register(app)\n"
            "try:\n    app(['leaderboard', '--format', 'json'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"


# --------------------------------------------------------------------------- a real smoke run


def test_smoke_run_rows_appear_beside_dpot_and_pdebench(smoke_home):
    records = json.loads(invoke("leaderboard", "--format", "json").output)
    mine = [r for r in records if r["run_id"] == SMOKE_RUN]
    assert len(mine) == 1 and mine[0]["source"] == "local" and mine[0]["dataset"] == "ns2d"
    mine = mine[0]
    assert 0 < mine["l2re"] < 10 and mine["profile"] == "smoke" and mine["n_params"] > 0
    assert mine["data_source"] == "generated" and mine["grid"] == "32x32" and mine["t_in"] == 10
    assert mine["size"] == lb.size_label(mine["n_params"]) and mine["n_train"] > 0
    sources = {r["source"] for r in records}
    assert {"local", DPOT, PDEBENCH} <= sources
    beside = [r for r in records if r["dataset"] == "ns2d"]
    assert {r["source"] for r in beside} == {"local", DPOT}
    # a smoke run is measured on another grid and horizon: marked, and not ranked among the paper's rows
    assert mine["differs"] == [f"horizon {mine['horizon']} vs 20", "grid 32x32 vs 64x64", "scoring native vs strided on 128x128",
                              "profile smoke"]
    assert mine["rank"] == 1 and mine["ranked_among"] == 1
    assert all(r["ranked_among"] == 21 for r in beside if r["source"] == DPOT)
    pivot = json.loads(invoke("leaderboard", "--pivot", "--format", "json").output)
    local = [r for r in pivot if r["source"] == "local" and r["model"] == "fno"]
    assert local and local[0]["ns2d"] == pytest.approx(mine["l2re"]) and local[0]["differs"]["ns2d"]


def test_reproduce_prints_a_command_that_works(smoke_home, pdeb):
    result = invoke("reproduce", SMOKE_RUN, "--run-id", "smoke-again")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"# rerun of {SMOKE_RUN}") and lines[2].startswith("# original command: ")
    argv = shlex.split(lines[1])
    assert argv[:3] == ["pdeb", "run", "--config"] and argv[-2:] == ["--run-id", "smoke-again"]
    assert Path(argv[3]) == smoke_home / "runs" / SMOKE_RUN / "config.yaml"
    pdeb(*argv[1:], "--quiet", check=True)
    store = ResultsStore()
    before, after = store.run_rows(SMOKE_RUN)[0], store.run_rows("smoke-again")[0]
    assert after["config_hash"] == before["config_hash"] and after["data_hash"] == before["data_hash"]
    assert after["metrics"] == pytest.approx(before["metrics"], rel=1e-6)  # CPU runs are deterministic
    pooled = [r for r in json.loads(invoke("leaderboard", "--source", "local", "--format", "json").output)
              if "smoke-again" in (r.get("run_ids") or [])]
    # the same seed again is a repeat, not a second sample
    assert len(pooled) == 1 and pooled[0]["n"] == 1 and pooled[0]["repeats"] == [SMOKE_RUN]
    info = json.loads(invoke("reproduce", SMOKE_RUN, "--json").output)
    assert info["config_hash"] == before["config_hash"] and info["seed"] == 0


def test_reproduce_names_the_rerun_the_same_way_until_it_exists(smoke_home):
    from pdebench_core.report import new_repro_id
    from pdebench_core.rundir import RunDir

    first = json.loads(invoke("reproduce", SMOKE_RUN, "--json").output)["new_run_id"]
    assert first == f"{SMOKE_RUN}-repro-1"  # printing alone takes no id: --execute uses the printed one
    assert json.loads(invoke("reproduce", SMOKE_RUN, "--json").output)["new_run_id"] == first
    RunDir.of(first).path.mkdir(parents=True)
    try:
        assert json.loads(invoke("reproduce", SMOKE_RUN, "--json").output)["new_run_id"] == f"{SMOKE_RUN}-repro-2"
        assert new_repro_id(first) == f"{SMOKE_RUN}-repro-2"  # a rerun's rerun counts on from the original
    finally:
        RunDir.of(first).path.rmdir()


def test_reproduce_tells_runs_and_protocols_apart(smoke_home):
    near_protocol = invoke("reproduce", "dpot-table")
    assert near_protocol.exit_code == 2 and "did you mean 'dpot-table1'" in near_protocol.output
    run_with_protocol_options = invoke("reproduce", SMOKE_RUN, "--checkpoint", "x.pt")
    assert run_with_protocol_options.exit_code == 2
    assert f"'{SMOKE_RUN}' is a run; --checkpoint and --data-root apply to a protocol" in run_with_protocol_options.output
    assert invoke("reproduce", SMOKE_RUN, "--finetune-steps", "-3").exit_code == 2


def test_reproduce_of_an_unknown_run_suggests_the_closest(smoke_home):
    result = invoke("reproduce", "fno-smoke-result")
    assert result.exit_code == 2 and f"did you mean '{SMOKE_RUN}'" in result.output
    assert result.output.strip().count("\n") == 0


@pytest.mark.slow
def test_reproduce_execute_reruns_and_compares(smoke_home):
    result = invoke("reproduce", SMOKE_RUN, "--execute", "--run-id", "executed", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{\n"):])
    assert report["new_run_id"] == "executed" and report["config_differences"] == []
    assert report["data_differences"] == []
    assert all(abs(line["difference"]) < 1e-6 for line in report["metrics"])


def test_a_rerun_on_changed_data_says_so(fresh_home, capsys):
    from pdebench_core.cli_results import _compare

    fill([store_row("original", data_hash="before"), store_row("rerun", data_hash="after", l2re=0.7)])
    _compare("original", "rerun", as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["data_differences"] == ["ns2d: hash before-n then, after-ns now"]
    _compare("original", "rerun", as_json=False)
    assert "the data differs: ns2d: hash before-n then, after-ns now" in capsys.readouterr().out


# --------------------------------------------------------------------------- in a real browser


def chromium_dom(page: Path, tmp_path: Path) -> str:
    """The DOM of ``page`` after a headless Chromium loaded it (skips without Chromium)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# Runs after the page's own script: sorts by l2re twice (ascending, descending), filters, and
# writes what it saw into a marker element the test reads from the DOM.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  function runIds() {
    var column = Array.prototype.indexOf.call(document.querySelectorAll('#board thead th'),
      Array.prototype.filter.call(document.querySelectorAll('#board thead th'),
        function (th) { return th.textContent === 'run_id'; })[0]);
    return Array.prototype.filter.call(document.querySelectorAll('#board tbody tr'),
      function (tr) { return !tr.hidden && tr.cells[column].textContent; })
      .map(function (tr) { return tr.cells[column].textContent; }).join(',');
  }
  var l2re = Array.prototype.filter.call(document.querySelectorAll('#board thead th'),
    function (th) { return th.textContent === 'l2re'; })[0];
  l2re.click();
  var ascending = runIds();
  l2re.click();
  var descending = runIds();
  var box = document.querySelector('input.filter');
  box.value = 'browser';
  box.dispatchEvent(new Event('input'));
  var visible = Array.prototype.filter.call(document.querySelectorAll('#board tbody tr'),
    function (tr) { return !tr.hidden; }).length;
  var marker = document.createElement('div');
  marker.id = 'pdeb-probe';
  marker.textContent = 'rows=' + document.querySelectorAll('#board tbody tr').length + ' errors=' +
    window.__errors.length + ' asc=' + ascending + ' desc=' + descending + ' visible=' + visible;
  document.body.appendChild(marker);
});
</script>"""


def test_html_leaderboard_sorts_and_filters_in_chromium(fresh_home, tmp_path):
    fill([store_row("browser-run", l2re=0.02), store_row("evil-run", model=EVIL, l2re=0.3, lr=0.5),
          store_row("browser-best", l2re=0.0001, lr=0.7)])
    page = tmp_path / "board.html"
    assert invoke("leaderboard", "--data", "ns2d", "--out", str(page)).exit_code == 0
    page.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = chromium_dom(page, tmp_path)
    probe = re.search(r'id="pdeb-probe">rows=(\d+) errors=(\d+) asc=([^ ]*) desc=([^ ]*) visible=(\d+)<', dom)
    assert probe, dom[-2000:]
    rows, errors, ascending, descending, visible = probe.groups()
    assert int(rows) == 24 and int(errors) == 0  # 21 published + 3 local rows, no script errors
    assert ascending == "browser-best,browser-run,evil-run" and descending == "evil-run,browser-run,browser-best"
    assert int(visible) == 2  # the two rows whose text holds 'browser'
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "&lt;script&gt;" in dom  # the hostile model name is shown as text, not run


def _user_tables(home: Path, sources: str, csv_text: str | bytes = "model,ns2d\nFNO,0.1\n",
                 protocol: str | None = None) -> Path:
    """A published folder under ``home/registry`` as a user adds one: sources.yaml, one CSV, a protocol."""
    folder = home / "registry" / "published"
    folder.mkdir(parents=True)
    (folder / "sources.yaml").write_text(sources, encoding="utf-8")
    data = csv_text if isinstance(csv_text, bytes) else csv_text.encode()
    (folder / "mine.csv").write_bytes(data)
    if protocol is not None:
        (home / "registry" / "protocols").mkdir(parents=True)
        (home / "registry" / "protocols" / "mine.yaml").write_text(protocol, encoding="utf-8")
    return folder


@pytest.mark.parametrize("sources, csv_text, protocol, says", [
    ("- mine.csv\n", None, None, "the file must be a mapping of names to values, not a list"),
    ("sources: [mine.csv]\n", None, None, "sources must be a mapping"),
    ("sources:\n  mine: mine.csv\n", None, None, "sources.mine must be a mapping"),
    ("sources:\n  mine: {label: x}\n", None, None, "sources.mine needs 'file'"),
    ("sources:\n  mine: {file: mine.csv, layout: tall}\n", None, None, "layout must be 'wide' or 'long'"),
    ("sources:\n  mine: {file: mine.csv, layout: long, dataset_column: d}\n", None, None, "needs 'value_column'"),
    ("sources:\n  mine: {file: mine.csv}\n", "name,ns2d\nFNO,0.1\n", None, "has no column 'model'"),
    ("sources:\n  mine: {file: mine.csv, layout: long, value_column: v, dataset_column: d}\n",
     "d,value\nns2d,0.1\n", None, "has no column 'v'"),
    ("sources:\n  mine: {file: mine.csv}\n", "model,ns2d\nFNO \xe9,0.1\n".encode("latin-1"), None, "is not UTF-8"),
    ("sources:\n  mine: {file: mine.csv}\nmodels: [FNO]\n", None, None, "models must be a mapping"),
    ("sources:\n  mine: {file: mine.csv}\ndatasets: {ns2d: {aliases: {a: 1}}}\n", None, None,
     "datasets.ns2d.aliases must be a list"),
    ("sources:\n  mine: {file: mine.csv, protocol: mine}\n", None, "- key: ns2d\n",
     "mine.yaml: the file must be a mapping"),
    ("sources:\n  mine: {file: mine.csv, protocol: mine}\n", None, "columns: {ns2d: 1}\n", "columns must be a list"),
    ("sources:\n  mine: {file: mine.csv}\n", "model,ns2d,ns2d\nFNO,0.1,0.2\n", None, "names the column 'ns2d' twice"),
    ("sources:\n  local: {file: mine.csv}\n", None, None, "table 'local' may not be called 'local'"),
    ("sources:\n  mine: {file: mine.csv, label: local}\n", None, None, "may not be called 'local'"),
    ("sources:\n  a: {file: mine.csv, label: Mine}\n  b: {file: mine.csv, label: Mine}\n", None, None,
     "tables 'a' and 'b' share the label 'Mine'"),
])
def test_a_malformed_user_table_is_one_line_naming_the_file_and_key(tmp_path, monkeypatch, sources, csv_text,
                                                                      protocol, says):
    """Tables a user adds under $PDEB_HOME/registry/published are hand-written: whatever is wrong with
    them is one DataError naming the file and the key, never a traceback from the reader."""
    from pdebench_core.errors import DataError

    folder = _user_tables(tmp_path, sources, **({} if csv_text is None else {"csv_text": csv_text}),
                          protocol=protocol)
    with pytest.raises(DataError, match=re.escape(says)) as caught:
        lb.published_rows(lb.load_published(folder))
    assert "\n" not in str(caught.value) and str(folder.parent) in str(caught.value)


def test_a_well_formed_user_table_shows_beside_local_rows(tmp_path):
    """A wide table with a stray blank-padded header, a short row and a non-numeric cell is read."""
    folder = _user_tables(tmp_path, "sources:\n  mine: {file: mine.csv, label: Mine, metric: l2re}\n"
                                    "models: {FNO: fno}\n",
                          csv_text="# my notes\nmodel , ns2d,dr2d\nFNO,0.1,n/a\nUNet,0.2\n")
    rows = lb.published_rows(lb.load_published(folder))
    assert sorted((r.model, r.model_key, r.dataset, r.metrics["l2re"]) for r in rows) == \
        [("FNO", "fno", "ns2d", 0.1), ("UNet", None, "ns2d", 0.2)]


def test_a_users_tables_join_the_bundled_ones(tmp_path, monkeypatch):
    """A table added under $PDEB_HOME/registry/published is shown beside DPOT's and PDEBench's,
    not instead of them; a key it shares with a bundled table replaces that one."""
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    _user_tables(tmp_path, "sources:\n  mine: {file: mine.csv, label: Mine, metric: l2re}\nmodels: {FNO: fno}\n",
                 csv_text="model,ns2d\nFNO,0.1\nUNet,nan\n")
    tables = lb.load_published()
    assert {"dpot", "pdebench", "mine"} <= set(tables.sources)
    assert tables.folders["mine"] == tmp_path / "registry" / "published" and tables.folders["dpot"] == PUBLISHED
    rows = lb.published_rows(tables)
    mine = [(r.model, r.metrics["l2re"]) for r in rows if r.source == "Mine"]
    assert mine == [("FNO", 0.1)]  # a non-finite cell is not reported
    assert {r.source for r in rows} == {"Mine", DPOT, PDEBENCH}
    assert tables.models["FNO"] == "fno" and tables.models["DPOT-Ti"] == "dpot"  # bundled labels are kept


def test_the_leaderboard_command_reports_a_malformed_user_table_in_one_line(tmp_path):
    from pdebench_core.testing import run_pdeb

    _user_tables(tmp_path, "sources:\n  mine: {file: mine.csv}\n", csv_text="name,ns2d\nFNO,0.1\n")
    result = run_pdeb("leaderboard", env={"PDEB_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "mine.csv has no column 'model'" in result.stderr


def test_reproduce_execute_passes_a_termination_signal_on_to_the_rerun(tmp_path):
    """``timeout`` or a scheduler signals the reproduce process alone: the rerun must get it too,
    to end as interrupted rather than train on as an orphan."""
    import signal
    import threading
    import time

    from pdebench_core.cli_results import _run_forwarding_signals

    ready = tmp_path / "ready"
    child = (f"import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
             f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")
    before = signal.getsignal(signal.SIGTERM)

    def terminate_once_ready():  # as `timeout` would, to this process alone
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_once_ready, daemon=True)
    sender.start()
    assert _run_forwarding_signals([sys.executable, "-c", child]) == 7
    sender.join()
    assert signal.getsignal(signal.SIGTERM) == before  # this process's own handling is back


def test_a_termination_signal_arriving_before_the_rerun_starts_still_reaches_it(monkeypatch):
    """The handlers are in place before the child exists: a signal in between is kept for it,
    rather than killing this process and leaving the rerun to train on as an orphan."""
    import signal
    import subprocess

    from pdebench_core import cli_results

    real_popen = subprocess.Popen

    def signalled_while_starting(argv):
        os.kill(os.getpid(), signal.SIGTERM)  # handled here; the child does not exist yet
        return real_popen(argv)

    monkeypatch.setattr(cli_results.subprocess, "Popen", signalled_while_starting)
    code = cli_results._run_forwarding_signals([sys.executable, "-c", "import time; time.sleep(60)"])
    assert code == -signal.SIGTERM  # the child got the signal as soon as it existed


def test_a_signal_before_a_rerun_that_cannot_start_is_not_lost(monkeypatch):
    import errno
    import signal

    from pdebench_core import cli_results
    from pdebench_core.errors import PdebError

    def cannot_fork(argv):
        os.kill(os.getpid(), signal.SIGTERM)  # kept for a child that never comes
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    got = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: got.append(number))
    try:
        monkeypatch.setattr(cli_results.subprocess, "Popen", cannot_fork)
        with pytest.raises(PdebError, match=r"^could not start the rerun \(Resource temporarily unavailable\); run "
                                            r"the printed command yourself$"):
            cli_results._run_forwarding_signals([sys.executable, "-c", "pass"])
        assert got == [signal.SIGTERM]  # back with this process's own handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_evaluation_of_a_runs_own_weights_is_shown_but_counted_once(fresh_home):
    trained = store_row("trained", l2re=0.1)
    again = {**store_row("again", l2re=0.1, task="evaluate"), "extra": {**trained["extra"], "weights_of_run": "trained"}}
    elsewhere = {**store_row("elsewhere", l2re=0.2, task="evaluate", horizon=40, lr=0.5),
                 "extra": {**trained["extra"], "weights_of_run": "trained"}}
    mine = by_run(lb.collect([trained, again, elsewhere], data="ns2d"))
    assert mine["again"].differs == ["scores the weights of trained again"] and mine["again"].rank is None
    assert mine["trained"].ranked_among == 22  # the 21 published cells and it, not the evaluation again
    assert mine["elsewhere"].rank == 1  # measured otherwise (another horizon): the only row of its ranking
    table = lb.pivot(lb.collect([trained, again], data="ns2d"), "l2re")
    assert [e.cells["ns2d"].run_id for e in table.rows if e.is_local] == ["trained"]


def test_evaluations_of_the_same_weights_are_one_sample_whatever_their_seeds(fresh_home):
    """Scoring one checkpoint with --seed 0, 1, 2 is no experiment repeated over three seeds:
    evaluation draws nothing at random, so n stays 1 and the newest evaluation counts."""
    def evaluation(run_id, seed, checkpoint="/weights/a.pt", l2re=0.3):
        row = store_row(run_id, seed=seed, task="evaluate", l2re=l2re)
        row["config"]["task"] = {"checkpoint": checkpoint}
        return row

    fill([evaluation("ev-0", 0), evaluation("ev-1", 1), evaluation("ev-2", 2, l2re=0.31),
          evaluation("ev-b", 3, checkpoint="/weights/b.pt", l2re=0.4)])
    rows = {r.run_id: r for r in lb.collect(source="local").rows}
    assert rows["ev-2"].n == 1 and rows["ev-2"].metrics["l2re"] == pytest.approx(0.31)
    assert rows["ev-2"].repeats == ["ev-0", "ev-1"] and rows["ev-b"].n == 1  # other weights: another row
    assert "replaces ev-0, ev-1 (same weights)" in lb.render(lb.collect(source="local"), "markdown")
    per_run = {r.run_id: r for r in lb.collect(source="local", per_run=True).rows}
    assert "repeat of ev-1" in per_run["ev-0"].differs and "repeat of ev-2" in per_run["ev-1"].differs
    trained = [store_row("t-0", seed=0), store_row("t-1", seed=1, l2re=0.7)]  # training runs: seeds are samples
    fill(trained)
    assert {r.run_id: r.n for r in lb.collect(source="local").rows}["t-1"] == 2
