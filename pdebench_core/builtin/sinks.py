"""Builtin sinks: the SQLite results store, per-run JSON-lines files, TensorBoard and Weights & Biases."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pdebench_core.hookspecs import hookimpl
from pdebench_core.sink import Sink


@dataclass
class SqliteSinkConfig:
    """Settings of the ``sqlite`` sink.

    Attributes:
        path: Database file; empty means ``$PDEB_HOME/results.sqlite``.
    """

    path: Optional[str] = None


class SqliteSink(Sink):
    """Writes result rows to the results store; step logs are kept by the ``jsonl`` sink.
    Each write opens its own connection, so there is nothing to close."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        from pdebench_core.results import ResultsStore

        super().__init__(cfg, run_dir)
        self.store = ResultsStore(getattr(cfg, "path", None))
        self.store.check_writable()  # before the run computes anything

    def write_result(self, row: dict[str, Any]) -> None:
        """Insert one row."""
        self.store.add(row)


class JsonlSink(Sink):
    """Appends step metrics to ``metrics.jsonl`` and result rows to ``results.jsonl`` in the run
    directory; files are opened per write, so there is nothing to close."""

    def _append(self, name: str, record: dict[str, Any]) -> None:
        from pdebench_core.diskspace import write_failed

        path = self.run_dir / name
        line = (json.dumps(record, default=str) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise write_failed(path, exc) from None
        try:
            start = os.fstat(fd).st_size
            written = 0
            while written < len(line):  # unbuffered: what failed is known, and taken back
                written += os.write(fd, line[written:])
        except OSError as exc:  # a full disk: one line; earlier lines stay, no half line is left
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise write_failed(path, exc) from None
        finally:
            os.close(fd)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """One JSON object per logged step."""
        self._append("metrics.jsonl", {"step": step, **values})

    def write_result(self, row: dict[str, Any]) -> None:
        """One JSON object per result row."""
        self._append("results.jsonl", row)


#: The values of ``WANDB_MODE`` that wandb accepts.
WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")


class TensorBoardSink:
    """Step metrics and result metrics as TensorBoard scalars (needs ``tensorboard``)."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            from pdebench_core.errors import UsageError

            raise UsageError("the tensorboard sink needs the tensorboard package; pip install 'pdeb[tensorboard]'") from exc
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Each value becomes a scalar at ``step``."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def write_result(self, row: dict[str, Any]) -> None:
        """Final metrics under ``eval/<dataset>/<metric>``."""
        for key, value in row.get("metrics", {}).items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{row['dataset']}/{key}", value)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _drop_wandb_exit_reports() -> None:
    """Once wandb's service is lost (killed, out of memory), its own exit hook fails as well and
    Python prints that as a traceback after pdeb's one-line error; leave those reports out (and
    only those: any other object's still reach the previous hook)."""
    import sys

    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if str(getattr(unraisable.object, "__module__", "") or "").startswith("wandb"):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def _reporting_wandb_failures(method: Any) -> Any:
    """A sink method that, when wandb fails inside it, quiets wandb's exit reports (see
    :func:`_drop_wandb_exit_reports`) before the error goes on to pdeb's own handling."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            _drop_wandb_exit_reports()
            raise

    return wrapper


class WandbSink:
    """The run's config, step metrics, result rows and error-per-step figures in Weights & Biases.

    Needs the ``wandb`` package. Where and how is wandb's own business, read from its
    environment variables: ``WANDB_MODE`` (``offline`` writes the run under the run directory
    for ``wandb sync``), ``WANDB_PROJECT`` (default ``pdeb``), ``WANDB_ENTITY``,
    ``WANDB_RUN_GROUP`` (a sweep's runs form one group), ``WANDB_DIR`` (default: the run
    directory). A resumed pdeb run continues the same wandb run: online wandb resumes it; offline
    the resumed part is a second folder, which ``wandb sync --append`` adds to the first. Steps
    already sent before the stop are not sent again (the file ``wandb-last-step`` remembers
    them), and a run that failed or was stopped ends in wandb with a non-zero exit code.
    """

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        from pdebench_core.errors import UsageError

        try:
            import wandb
        except ImportError:
            raise UsageError("the wandb sink needs the wandb package; pip install 'pdeb[wandb]' "
                             "(or leave wandb out of run.sinks)") from None
        import os

        mode = os.environ.get("WANDB_MODE")
        if mode and mode not in WANDB_MODES:
            raise UsageError(f"WANDB_MODE={mode} is not a mode wandb knows; use one of {', '.join(WANDB_MODES)}")
        self.wandb, self.run_dir, self.rows = wandb, Path(run_dir), []
        self.sent_through = _last_step_sent(self.run_dir)  # a resumed run logs those steps again
        config = _run_config(self.run_dir)
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or "pdeb", dir=os.environ.get("WANDB_DIR") or str(self.run_dir),
                name=self.run_dir.name, id=_wandb_run_id(self.run_dir.name), resume="allow", config=config,
                tags=_tags(config), settings=wandb.Settings(console="off", silent=True, save_code=False))
        except Exception as exc:  # e.g. online without a login: say so in one line, before any training
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            raise UsageError(f"the wandb sink could not start a run: {first}; run 'wandb login', or set "
                             f"WANDB_MODE=offline to keep the run on disk for 'wandb sync'") from None

    @_reporting_wandb_failures
    def log_step(self, step: int, values: dict[str, float]) -> None:
        """The step's training metrics, at that step (not again for a step sent before a stop:
        wandb's history must not go back, and offline folders appended to one another must not
        overlap)."""
        if self.sent_through is not None and int(step) < self.sent_through:
            return
        self.run.log(dict(values), step=int(step))
        if self.sent_through is None or int(step) > self.sent_through:
            self.sent_through = int(step)
            with contextlib.suppress(OSError):  # a lost record only means steps sent twice
                (self.run_dir / LAST_STEP_FILE).write_text(str(self.sent_through))

    @_reporting_wandb_failures
    def write_result(self, row: dict[str, Any]) -> None:
        """Final metrics into the run summary (``eval/<dataset>/<metric>``), the error-per-step
        figure of that dataset as an image, and the row for the results table sent at the end."""
        dataset = str(row.get("dataset"))
        for key, value in (row.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                self.run.summary[f"eval/{dataset}/{key}"] = value
        self.rows.append(row)
        image = _error_curve_image(self.run_dir / "eval" / f"{dataset}.json", dataset)
        if image is not None:
            self.run.log({f"eval/{dataset}/error_per_step": self.wandb.Image(image, caption=f"{dataset}: error per "
                                                                                             f"rollout step")})

    @_reporting_wandb_failures
    def close(self) -> None:
        """Send the results table and end the wandb run."""
        if self.rows:
            metrics = sorted({k for r in self.rows for k, v in (r.get("metrics") or {}).items()
                              if isinstance(v, (int, float))})
            columns = ["run_id", "model", "dataset", "task", "seed", "n_params", "data_hash", *metrics]
            data = [[r.get(c) for c in columns[:7]] + [(r.get("metrics") or {}).get(m) for m in metrics]
                    for r in self.rows]
            self.run.log({"results": self.wandb.Table(columns=columns, data=data)})
        state, error = _run_outcome(self.run_dir)
        if error:
            self.run.summary["pdeb/error"] = error
        self.run.summary["pdeb/state"] = state
        self.run.finish(exit_code=0 if state in ("running", "finished") else 1)


#: Under the run directory: the last step the wandb sink sent, read when the run resumes.
LAST_STEP_FILE = "wandb-last-step"


def _last_step_sent(run_dir: Path) -> int | None:
    try:
        return int((run_dir / LAST_STEP_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _run_outcome(run_dir: Path) -> tuple[str, str | None]:
    """The run's state and error as ``status.json`` has them when the sinks close: ``running``
    for a run that finished its work (it is marked finished once the sinks have closed),
    ``failed`` or ``interrupted`` otherwise."""
    from pdebench_core.rundir import RunDir

    status = RunDir(run_dir).read_status()
    return str(status.get("state") or "running"), status.get("error")


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config the run saved (empty when there is none)."""
    from omegaconf import OmegaConf

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return config if isinstance(config, dict) else {}


def _tags(config: dict[str, Any]) -> list[str]:
    """Model, datasets, task and profile, for filtering runs in the wandb interface."""
    run = config.get("run") or {}
    names = [(config.get("model") or {}).get("name"), *(config.get("data") or {}), run.get("task"), run.get("profile")]
    return [str(n) for n in names if n]


def _wandb_run_id(run_id: str) -> str:
    """The pdeb run id as a wandb run id (at most 64 characters; longer ids end in a digest)."""
    import hashlib

    if len(run_id) <= 64:
        return run_id
    return f"{run_id[:47]}-{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


def _error_curve_image(path: Path, dataset: str):
    """The report's error-per-step figure of one evaluation file as an RGB array (``None`` without one)."""
    import numpy as np

    try:
        evaluation = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not evaluation.get("per_step"):
        return None
    try:
        from pdebench_core.report import error_curve_figure

        fig = error_curve_figure(evaluation, dataset)
    except Exception:  # the report's figures are optional here: draw the same curves plainly
        fig = _plain_error_curve(evaluation, dataset)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _plain_error_curve(evaluation: dict[str, Any], dataset: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, curve in evaluation["per_step"].items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("error")
    ax.set_title(f"{dataset}: error per rollout step")
    ax.legend()
    return fig


@hookimpl
def register_sinks(register):
    """Register the builtin sinks."""
    register("sqlite", SqliteSink, config=SqliteSinkConfig, description="SQLite results store (the leaderboard reads it)")
    register("jsonl", JsonlSink, description="metrics.jsonl and results.jsonl in the run directory")
    register("tensorboard", TensorBoardSink, description="TensorBoard scalars under <run>/tensorboard (optional)")
    register("wandb", WandbSink, description="Weights & Biases: config, step metrics, results, figures (optional)")
