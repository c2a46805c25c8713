"""Plugin loading: builtins, entry points, failures, duplicates, misspelt hooks."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import textwrap

import pluggy
import pytest

from pdebench_core import hookimpl, plugins
from pdebench_core.errors import UsageError

GOOD_PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    from pdebench_core import hookimpl

    @dataclass
    class TinyConfig:
        scale: float = 1.0

    def build(cfg, spec):
        import torch
        return torch.nn.Identity()

    @hookimpl
    def register_models(register):
        register("tiny-identity", build, config=TinyConfig, description="identity for tests", dims=(1, 2))
''')

BROKEN_PLUGIN = "raise RuntimeError('this plugin is broken on purpose')\n"

DUPLICATE_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_models(register):
        register("fno", lambda cfg, spec: None, description="a second fno")
''')


def test_builtins_register_through_the_same_hooks():
    regs = plugins.registries()
    assert "train" in regs["task"] and "evaluate" in regs["task"]
    assert "l2re" in regs["metric"]
    assert {"sqlite", "jsonl"} <= set(regs["sink"].names())
    assert regs["task"].get("train").plugin == "pdebench_core.builtin.tasks"


def test_bundled_plugins_are_entry_points():
    infos = {i.name: i for i in plugins.plugin_infos()}
    for name in ("fno", "ns2d", "persistence"):
        assert infos[name].origin == "entry point"
        assert infos[name].error is None
    assert plugins.get("model", "fno").plugin == "fno"


def test_unknown_name_suggests_and_points_to_listing():
    with pytest.raises(UsageError, match=r"unknown model 'fnoo' \(did you mean 'fno'\?\); run 'pdeb models'"):
        plugins.get("model", "fnoo")


def test_duplicate_name_disables_the_later_plugin_whole(capsys):
    class Duplicate:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("fno-twin", lambda cfg, spec: None)
            register("fno", lambda cfg, spec: None)

    plugins.register_plugin(Duplicate, name="duplicate-fno")
    try:
        regs = plugins.registries()
        assert regs["model"].get("fno").plugin == "fno"  # the first registrant keeps the name
        assert "fno-twin" not in regs["model"]  # nothing of the disabled plugin is half-registered
        status = {i.name: i for i in plugins.plugin_infos()}
        assert "already registered by plugin 'fno'" in status["duplicate-fno"].error
        err = capsys.readouterr().err
        assert err.count("duplicate-fno") == 1 and "model 'fno'" in err
    finally:
        plugins.unregister_plugin("duplicate-fno")
    assert plugins.get("model", "fno").plugin == "fno"


def test_hook_that_raises_disables_only_its_plugin():
    class Raising:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("half-done", lambda cfg, spec: None)
            raise KeyError("oops in the plugin")

    plugins.register_plugin(Raising, name="raising")
    try:
        regs = plugins.registries()
        assert "half-done" not in regs["model"] and "fno" in regs["model"]
        status = {i.name: i for i in plugins.plugin_infos()}
        assert status["raising"].error.startswith("register_models raised KeyError")
    finally:
        plugins.unregister_plugin("raising")


def test_misspelt_hook_is_caught():
    class Misspelt:
        @staticmethod
        @hookimpl
        def register_model(register):  # missing the final "s"
            register("x", None)

    with pytest.raises(pluggy.PluginValidationError, match="register_model"):
        plugins.register_plugin(Misspelt, name="misspelt")
    assert not plugins.pm.has_plugin("misspelt")
    assert "fno" in plugins.registries()["model"]


def test_entry_point_plugin_loads_and_broken_one_is_reported(tmp_path, pdeb, fake_distribution):
    root = fake_distribution(tmp_path / "site", "pdeb-test-plugins",
                             {"tinyplug": "tinyplug", "brokenplug": "brokenplug"},
                             {"tinyplug": GOOD_PLUGIN, "brokenplug": BROKEN_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    listed = pdeb("models", "--json", env=env, check=True)
    names = {m["name"]: m for m in json.loads(listed.stdout)}
    assert names["tiny-identity"]["plugin"] == "tinyplug"
    assert names["tiny-identity"]["version"] == "1.2.3"
    assert "fno" in names  # the rest keeps working
    assert "brokenplug" in listed.stderr and "failed to load" in listed.stderr
    status = {p["name"]: p for p in json.loads(pdeb("plugins", "--json", env=env, check=True).stdout)}
    assert "this plugin is broken on purpose" in status["brokenplug"]["error"]
    assert status["tinyplug"]["error"] is None


def test_pdeb_load_plugins_limits_entry_points(pdeb):
    result = pdeb("models", "--json", env={"PDEB_LOAD_PLUGINS": "fno"}, check=True)
    assert [m["name"] for m in json.loads(result.stdout)] == ["fno"]
    none = pdeb("plugins", "--json", env={"PDEB_LOAD_PLUGINS": ""}, check=True)
    assert {p["origin"] for p in json.loads(none.stdout)} == {"builtin"}
    filtered = pdeb("run", "--model", "fno", "--data", "ns2d", env={"PDEB_LOAD_PLUGINS": "fno"})
    assert filtered.returncode == 2 and "(PDEB_LOAD_PLUGINS=fno loads only those plugins)" in filtered.stderr
    typo = pdeb("models", "--json", env={"PDEB_LOAD_PLUGINS": "fno,nosuch"}, check=True)
    assert "warning: PDEB_LOAD_PLUGINS names nosuch, which no installed plugin is called; installed: " in typo.stderr


RAISING_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_datasets(register):
        raise ValueError("bug inside the hook")
''')

UNPRINTABLE_ERROR_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    class Unprintable(Exception):
        def __str__(self):
            raise TypeError("no str")

    @hookimpl
    def register_models(register):
        raise Unprintable()
''')

MISSPELT_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_modles(register):
        register("never", None)
''')


RENAMED_HOOK_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_datasets(register):
        register("never", None)

    register_folder = register_datasets  # as `from .folder import register_datasets as register_folder` does
''')


@pytest.mark.parametrize("source, reason", [
    (RENAMED_HOOK_PLUGIN, "'register_folder' is register_datasets under another name, and pluggy goes by the name: "
                          "mark it @hookimpl(specname=\"register_datasets\"), or call it from the plugin's own "
                          "register_datasets"),
    (DUPLICATE_PLUGIN, "model 'fno' is already registered by plugin 'fno'"),
    (RAISING_PLUGIN, "register_datasets raised ValueError: bug inside the hook"),
    (UNPRINTABLE_ERROR_PLUGIN, "register_models raised Unprintable: <its message cannot be shown: TypeError in "
                               "Unprintable.__str__>"),
    (MISSPELT_PLUGIN, "'register_modles' is not a pdeb hook (did you mean 'register_models'?)"),
])
def test_failing_entry_point_plugin_is_disabled_alone(tmp_path, pdeb, fake_distribution, source, reason):
    root = fake_distribution(tmp_path / "site", "pdeb-bad", {"badplug": "badplug"}, {"badplug": source})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    for args in (("--help",), ("models", "--json"), ("datasets", "--json")):
        result = pdeb(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    models = {m["name"]: m for m in json.loads(pdeb("models", "--json", env=env).stdout)}
    assert models["fno"]["plugin"] == "fno"
    warning = [line for line in pdeb("models", env=env).stderr.splitlines() if "badplug" in line]
    assert len(warning) == 1 and reason in warning[0]
    status = {p["name"]: p for p in json.loads(pdeb("plugins", "--json", env=env, check=True).stdout)}
    assert reason in status["badplug"]["error"] and status["fno"]["error"] is None
    unknown = pdeb("run", "--model", "never", "--data", "ns2d", env=env)
    assert unknown.returncode == 2
    assert "error: unknown model 'never' (plugin badplug is disabled and may hold it: 'pdeb plugins' says why)" \
        in unknown.stderr


UNMARKED_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    def register_models(register):  # no @hookimpl: pluggy never calls it
        register("unseen", None)

    @hookimpl
    def register_metrics(register):  # marked: called, so the plugin does implement a hook
        pass
''')


def test_a_plugin_without_marked_hooks_is_pointed_at_hookimpl(tmp_path, pdeb, fake_distribution):
    root = fake_distribution(tmp_path / "site", "pdeb-unmarked", {"unmarked": "unmarked"},
                             {"unmarked": UNMARKED_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = pdeb("models", env=env, check=True)
    warning = [line for line in result.stderr.splitlines() if "unmarked" in line]
    assert warning == ["warning: pdeb plugin 'unmarked': register_models not marked @hookimpl, so pdeb never calls "
                       "it; decorate with @hookimpl (from pdebench_core import hookimpl)"]


JUNK_FACTORIES_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_models(register):
        register("returns-none", lambda cfg, spec: None, dims=(2,))

    @hookimpl
    def register_datasets(register):
        register("returns-list", lambda cfg: [1, 2, 3], dims=(2,))
''')


@pytest.mark.parametrize("model, data, message", [
    ("returns-none", "ns2d", "error: model 'returns-none' (plugin 'junk'): its factory returned NoneType, not a "
                             "torch.nn.Module; return the built network"),
    ("fno", "returns-list", "error: dataset 'returns-list' (plugin 'junk'): its factory returned list, not a "
                            "dataset; return an object with .spec and .split(name)"),
])
def test_a_factory_returning_something_else_is_one_line(tmp_path, pdeb, fake_distribution, model, data, message):
    root = fake_distribution(tmp_path / "site", "pdeb-junk", {"junk": "junk"}, {"junk": JUNK_FACTORIES_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "PDEB_HOME": str(tmp_path / "home")}
    result = pdeb("run", "--model", model, "--data", data, "--profile", "smoke", "--quiet", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr


NOISY_PLUGIN = textwrap.dedent('''
    import typer
    from pdebench_core import hookimpl

    print("hello from a chatty plugin")

    @hookimpl
    def register_commands(app):
        @app.command("run")
        def run():
            """A takeover."""
            print("not pdeb's run")

        @app.command("hello")
        def hello(name: str = typer.Option("world", "--name")):
            """A command of its own."""
            print(f"hello {name}")

        @app.command("broken")
        def broken():
            """A command with a bug."""
            raise RuntimeError("bug in the command")

        @app.command("exit3")
        def exit3():
            """Ends with its own exit code."""
            raise typer.Exit(3)

        @app.command("odd")
        def odd(n: int = typer.Option(1, "--n")):
            """Refuses even numbers as click does."""
            if n % 2 == 0:
                raise typer.BadParameter("n must be odd")
            print(n)

        group = typer.Typer(help="A group of commands.")

        @group.command("crash")
        def crash():
            """A group command with a bug."""
            raise ValueError("bug in the group")

        app.add_typer(group, name="mytool")
''')

EXITING_PLUGIN = "import sys\nsys.exit(7)\n"


def test_plugins_cannot_take_over_commands_stdout_or_the_exit_code(tmp_path, pdeb, fake_distribution):
    root = fake_distribution(tmp_path / "site", "pdeb-rude", {"noisy": "noisy", "exiting": "exiting"},
                             {"noisy": NOISY_PLUGIN, "exiting": EXITING_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    listed = pdeb("models", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)  # stdout stays JSON
    assert "hello from a chatty plugin" in listed.stderr
    status = {p["name"]: p for p in json.loads(pdeb("plugins", "--json", env=env, check=True).stdout)}
    assert "SystemExit: 7" in status["exiting"]["error"]
    help_text = pdeb("--help", env=env, check=True)
    assert "tried to replace the command 'run'; it was left out" in help_text.stderr
    assert pdeb("hello", env=env, check=True).stdout.strip() == "hello world"
    assert pdeb("hello", "--name", "pdeb", env=env, check=True).stdout.strip() == "hello pdeb"  # options kept
    assert pdeb("exit3", env=env).returncode == 3  # typer's own flow passes untouched
    assert pdeb("odd", "--n", "2", env=env).returncode == 2
    assert pdeb("odd", "--n", "3", env=env, check=True).stdout.strip() == "3"
    crash = pdeb("mytool", "crash", env=env)
    assert crash.returncode == 1 and "Traceback" not in crash.stderr
    assert "error: command 'mytool crash' (plugin 'noisy') raised ValueError: bug in the group" in crash.stderr
    assert "mytool" in help_text.stdout
    broken = pdeb("broken", env=env)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert broken.stderr.strip().splitlines()[-1] == ("error: command 'broken' (plugin 'noisy') raised RuntimeError: "
                                                      "bug in the command; PDEB_DEBUG=1 shows the traceback")
    run_help = pdeb("run", "--help", env=env, check=True).stdout
    assert "--model" in run_help  # still pdeb's run


# A model whose forward raises, module-level source shared by two fake plugins.
BROKEN_FORWARD = textwrap.dedent('''
    import torch


    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, *args, **kwargs):
            raise RuntimeError("bug in forward")
''')

RAISING_COMPONENTS_PLUGIN = BROKEN_FORWARD + textwrap.dedent('''
    from pdebench_core import hookimpl

    def broken_model(cfg, spec):
        raise ValueError("bug in the model factory")

    def broken_data(cfg):
        raise KeyError("bug in the dataset factory")

    class BrokenSink:
        def __init__(self, cfg, run_dir):
            pass
        def log_step(self, step, values):
            pass
        def write_result(self, row):
            raise ZeroDivisionError("bug in the sink")
        def close(self):
            pass

    def junk_task(ctx):
        return ["not", "results"]

    def forgetful_task(ctx):
        pass  # no return: None

    def flat_task(ctx):
        return {"ns2d": 0.5}

    def model_with_broken_forward(cfg, spec):
        return Broken()

    class Exiting(Broken):
        def forward(self, x, *args, **kwargs):
            import sys
            sys.exit(3)

    class BrokenTwiceSink(BrokenSink):
        def close(self):
            raise OSError("bug in close")

    class FailingCloseSink(BrokenSink):
        def write_result(self, row):
            pass
        def close(self):
            raise OSError("disk gone at close")

    class PartialSink:
        def __init__(self, cfg, run_dir):
            pass
        def write_result(self, row):
            pass

    class ExitingSink(BrokenSink):
        def write_result(self, row):
            import sys
            sys.exit("giving up")

    class Unprintable(Exception):
        def __str__(self):
            raise TypeError("no str")

    class UnprintableForward(Broken):
        def forward(self, x, *args, **kwargs):
            raise Unprintable()

    @hookimpl
    def register_models(register):
        register("broken-model", broken_model, dims=(2,))
        register("broken-forward", model_with_broken_forward, dims=(2,))
        register("unprintable-forward", lambda cfg, spec: UnprintableForward(), dims=(2,))
        register("exiting-forward", lambda cfg, spec: Exiting(), dims=(2,))

    @hookimpl
    def register_datasets(register):
        register("broken-data", broken_data, dims=(2,))

    @hookimpl
    def register_sinks(register):
        register("broken-sink", BrokenSink)
        register("exiting-sink", ExitingSink)
        register("broken-twice-sink", BrokenTwiceSink)
        register("failing-close-sink", FailingCloseSink)
        register("partial-sink", PartialSink)

    @hookimpl
    def register_tasks(register):
        register("junk-task", junk_task)
        register("forgetful-task", forgetful_task)
        register("flat-task", flat_task)
''')


EVALUATE = ["--model", "persistence", "--data", "ns2d", "--task", "evaluate"]  # no training: the sinks meet rows soon


@pytest.mark.parametrize("args, message", [
    (["--model", "broken-model", "--data", "ns2d"],
     "error: model 'broken-model' (plugin 'raising') raised ValueError: bug in the model factory; PDEB_DEBUG=1"),
    (["--model", "fno", "--data", "broken-data"],
     "error: dataset 'broken-data' (plugin 'raising') raised KeyError: 'bug in the dataset factory'; PDEB_DEBUG=1"),
    ([*EVALUATE, "run.sinks=[broken-sink]"],
     "error: run persistence-ns2d-* finished, but its results did not reach sink(s) broken-sink: sink "
     "'broken-sink' (plugin 'raising') raised ZeroDivisionError: bug in the sink; PDEB_DEBUG=1"),
    (["--model", "broken-forward", "--data", "ns2d", "train.max_steps=2"],
     "error: plugin 'raising' raised RuntimeError: bug in forward (at raising.py:* in forward, during task "
     "'train'); PDEB_DEBUG=1"),
    (["--model", "unprintable-forward", "--data", "ns2d", "train.max_steps=2"],
     "error: plugin 'raising' raised Unprintable: <its message cannot be shown: TypeError in Unprintable.__str__> "
     "(at raising.py:* in forward, during task 'train'); PDEB_DEBUG=1"),
    (["--model", "exiting-forward", "--data", "ns2d", "train.max_steps=2"],
     "error: plugin 'raising' called sys.exit(3) (at raising.py:* in forward, during task 'train'); a plugin "
     "should raise an exception instead"),
    ([*EVALUATE, "run.sinks=[exiting-sink,jsonl]"],
     "error: run persistence-ns2d-* finished, but its results did not reach sink(s) exiting-sink: plugin 'raising' "
     "called sys.exit('giving up') (at raising.py:* in write_result, during sink 'exiting-sink')"),
    ([*EVALUATE, "run.sinks=[broken-twice-sink]"],
     "error: run persistence-ns2d-* finished, but its results did not reach sink(s) broken-twice-sink: sink "
     "'broken-twice-sink' (plugin 'raising') raised ZeroDivisionError: bug in the sink; PDEB_DEBUG=1"),
    ([*EVALUATE, "run.sinks=[failing-close-sink]"],
     "error: run persistence-ns2d-* finished, but its results did not reach sink(s) failing-close-sink: sink "
     "'failing-close-sink' (plugin 'raising') raised OSError: disk gone at close; PDEB_DEBUG=1"),
    ([*EVALUATE, "run.sinks=[partial-sink]"],
     "error: sink 'partial-sink' (plugin 'raising'): its factory returned a PartialSink without log_step, close; "
     "a sink has log_step(step, values), write_result(row) and close(); subclass pdebench_core.Sink to keep only "
     "some"),
    (["--model", "persistence", "--data", "ns2d", "--task", "junk-task"],
     "error: task 'junk-task' (plugin 'raising') returned list, not {dataset: {metric: value}}"),
    (["--model", "persistence", "--data", "ns2d", "--task", "forgetful-task"],
     "error: task 'forgetful-task' (plugin 'raising') returned NoneType, not {dataset: {metric: value}} ({} when "
     "it evaluates nothing)"),
    (["--model", "persistence", "--data", "ns2d", "--task", "flat-task"],
     "error: task 'flat-task' (plugin 'raising') returned float for 'ns2d', not {metric: value}"),
])
def test_a_plugin_component_that_raises_is_one_line_naming_it(tmp_path, pdeb_together, fake_distribution, args,
                                                              message):
    root = fake_distribution(tmp_path / "site", "pdeb-raising", {"raising": "raising"},
                             {"raising": RAISING_COMPONENTS_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "PDEB_HOME": str(tmp_path / "home")}
    command = ["run", *args, "--profile", "smoke", "--quiet"]
    # distinct ids: two runs started in the same second could otherwise draw the same one
    result, debug = pdeb_together([[*command, "--run-id", "persistence-ns2d-plain"],
                                   [*command, "--run-id", "persistence-ns2d-debug"]],
                                  env=[env, {**env, "PDEB_DEBUG": "1"}])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and fnmatch.fnmatchcase(errors[0], message + "*"), result.stderr
    if "did not reach sink" in message:  # computed and kept: the table is shown above the error
        assert "l2re" in result.stdout and "run persistence-ns2d-" in result.stdout
    assert ("Traceback" in debug.stderr) == ("PDEB_DEBUG" in message)
    if "PDEB_DEBUG" in message and "did not reach sink" not in message:
        # the traceback ends with pdeb's line, and both runs record that line as their error
        line = message.removeprefix("error: ").split("; PDEB_DEBUG=1")[0]
        assert fnmatch.fnmatchcase(debug.stderr.rstrip().splitlines()[-1], f"pdeb: {line}"), debug.stderr
        recorded = [json.loads(f.read_text())["error"] for f in (tmp_path / "home" / "runs").glob("*/status.json")]
        assert len(recorded) == 2 and all(fnmatch.fnmatchcase(e, f"{line}*") for e in recorded), recorded


def test_an_entry_point_listed_twice_is_loaded_and_reported_once(tmp_path):
    """An editable install can show the same entry point twice: one warning, not two."""
    (tmp_path / "twice_broken.py").write_text("raise ImportError('broken on purpose')\n")
    script = textwrap.dedent(f"""
        import importlib.metadata, sys
        sys.path.insert(0, {str(tmp_path)!r})
        ep = importlib.metadata.EntryPoint(name="twice", value="twice_broken", group="pdeb")
        real = importlib.metadata.entry_points
        importlib.metadata.entry_points = lambda **kw: ([ep, ep] if kw.get("group") == "pdeb" else real(**kw))
        from pdebench_core import plugins
        plugins.registries()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PDEB_LOAD_PLUGINS": "twice"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("pdeb plugin 'twice' disabled") == 1, result.stderr


PACKAGE_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl


    def build(cfg, spec):
        from layered.model import Broken

        return Broken()


    @hookimpl
    def register_models(register):
        register("layered-model", build, dims=(2,))
''')


def test_a_plugin_whose_entry_point_is_a_submodule_is_named_for_its_packages_code(tmp_path, pdeb, fake_distribution):
    """Entry point layered.plugin, the model in layered/model.py: still the plugin's code."""
    root = fake_distribution(tmp_path / "site", "pdeb-layered", {"layered": "layered.plugin"},
                             {"layered/__init__": "", "layered/plugin": PACKAGE_PLUGIN, "layered/model": BROKEN_FORWARD})
    result = _train_installed_model(pdeb, root, tmp_path, "layered-model")
    assert result.returncode == 1, result.stderr
    assert "error: plugin 'layered' raised RuntimeError: bug in forward (at model.py:" in result.stderr


def _train_installed_model(pdeb, root, tmp_path, model: str):
    """``pdeb run`` (smoke, 2 steps on ns2d) of a model of the distribution installed under ``root``."""
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "PDEB_HOME": str(tmp_path / "home")}
    return pdeb("run", "--model", model, "--data", "ns2d", "--profile", "smoke", "--quiet", "train.max_steps=2",
                env=env)



MULTI_MODELS = textwrap.dedent('''
    import torch

    from pdebench_core import hookimpl


    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            raise RuntimeError("bug in the models module")


    @hookimpl
    def register_models(register):
        register("multi-model", lambda cfg, spec: Broken(), dims=(2,))
''')

MULTI_TASKS = textwrap.dedent('''
    from pdebench_core import hookimpl


    @hookimpl
    def register_tasks(register):
        register("multi-task", lambda ctx: {}, description="does nothing")
''')


@pytest.mark.parametrize("models_first", [True, False])
def test_of_two_entry_points_in_one_package_the_one_whose_module_raised_is_named(tmp_path, pdeb, fake_distribution,
                                                                                models_first):
    """One distribution, entry points for multi.tasks and multi.models, listed in either order:
    an error in multi/models.py is the models plugin's."""
    models, points = "mmodels", {"mtasks": "multi.tasks", "mmodels": "multi.models"}
    if models_first:
        points = dict(reversed(list(points.items())))
    root = fake_distribution(tmp_path / "site", "pdeb-multi", points,
                             {"multi/__init__": "", "multi/tasks": MULTI_TASKS, "multi/models": MULTI_MODELS})
    result = _train_installed_model(pdeb, root, tmp_path, "multi-model")
    assert result.returncode == 1, result.stderr
    assert f"plugin '{models}' raised RuntimeError: bug in the models module (at models.py:" in result.stderr
