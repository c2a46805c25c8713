"""Run provenance, reproduction and the self-contained HTML report of one run.

:func:`load_run` gathers what a run left behind (``config.yaml``, ``command.txt``,
``status.json``, ``eval/<dataset>.json`` and its result-store rows);
:func:`reproduction` turns it into the command that reruns it; :func:`build_report`
writes one HTML file with the metric tables, the error-versus-step curves and, by
reloading the checkpoint and rolling the model out again on a few test trajectories,
prediction / truth / error fields and energy spectra. Figures are PNGs drawn with
matplotlib's Agg canvas and embedded as base64, so the file opens anywhere, offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pdebench_core import paths
from pdebench_core.errors import PdebError, UsageError, did_you_mean
from pdebench_core.runs import run_dir_for

# Options of the original command that choose how a run is launched rather than what it
# computes (the saved config holds the rest); they are carried over to the rerun.
LAUNCH_OPTIONS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port",
                  "--rdzv-endpoint", "--rdzv-backend", "--rdzv-id")
MAX_CHANNELS_SHOWN = 4
SNAPSHOTS = 4


# --------------------------------------------------------------------------- run provenance


@dataclass
class RunInfo:
    """What a run directory and the results store say about one run.

    Attributes:
        run_id: The run's id.
        run_dir: Its directory.
        config: The resolved config (``config.yaml``) as a dict.
        config_text: ``config.yaml`` verbatim.
        command: The command that started it (``command.txt``), or ``""``.
        status: ``status.json`` (state, timings, results), or ``{}``.
        evals: ``{dataset: eval json}`` from ``eval/``.
        rows: Its rows in the results store.
    """

    run_id: str
    run_dir: Path
    config: dict[str, Any]
    config_text: str
    command: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        """Registered model name."""
        return str((self.config.get("model") or {}).get("name", ""))

    @property
    def datasets(self) -> list[str]:
        """Dataset names of the run, in config order."""
        return list((self.config.get("data") or {}).keys())

    @property
    def checkpoint(self) -> Path | None:
        """``checkpoints/last.pt`` when the run saved one."""
        path = self.run_dir / "checkpoints" / "last.pt"
        return path if path.is_file() else None


def known_run_ids() -> list[str]:
    """Run directories under the pdeb home plus run ids in the results store."""
    ids = set()
    root = paths.runs_dir()
    if root.is_dir():
        ids.update(p.name for p in root.iterdir() if p.is_dir())
    try:
        from pdebench_core.results import ResultsStore

        ids.update(ResultsStore().run_ids())
    except Exception:  # an unreadable store must not hide the run directories
        pass
    return sorted(ids)


def load_run(run_id: str) -> RunInfo:
    """Read everything a run left behind.

    Raises:
        UsageError: No such run directory (with the closest known id), or no ``config.yaml``.
    """
    import yaml

    run_dir = run_dir_for(run_id)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        known = known_run_ids()
        where = "has no config.yaml" if run_dir.is_dir() else f"does not exist under {run_dir.parent}"
        raise UsageError(f"run '{run_id}' {where}{did_you_mean(run_id, known)}; "
                         f"list runs with 'pdeb runs' or 'pdeb leaderboard --source local'")
    text = config_file.read_text(encoding="utf-8")
    config = yaml.safe_load(text) or {}
    command_file = run_dir / "command.txt"
    status_file = run_dir / "status.json"
    evals = {}
    for path in sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []:
        try:
            evals[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
    ordered = {name: evals[name] for name in list((config.get("data") or {})) if name in evals}
    ordered.update({k: v for k, v in evals.items() if k not in ordered})
    try:
        from pdebench_core.results import ResultsStore

        rows = ResultsStore().run_rows(run_id)
    except Exception:
        rows = []
    return RunInfo(
        run_id=run_id, run_dir=run_dir, config=config, config_text=text,
        command=command_file.read_text(encoding="utf-8").strip() if command_file.is_file() else "",
        status=_read_json(status_file), evals=ordered, rows=rows,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def new_repro_id(run_id: str) -> str:
    """A fresh run id for a rerun: ``<run_id>-repro-<6 hex digits>``."""
    base = run_id.split("-repro-")[0]
    return f"{base}-repro-{secrets.token_hex(3)}"


def launch_options(command: str) -> list[str]:
    """The launch options (``--nproc-per-node 4``, ...) of an original command line."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    out = []
    for position, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            if "=" in arg:
                out.append(arg)
            elif position + 1 < len(argv):
                out += [arg, argv[position + 1]]
    return out


@dataclass
class Reproduction:
    """How to rerun a run.

    Attributes:
        run_id: The original run.
        new_run_id: Id the rerun will get.
        argv: The rerun command, ``["pdeb", "run", "--config", ..., "--run-id", ...]``.
        original: The original command line (for reference; may be empty).
        config_hash: The original's config hash (a rerun must report the same).
        seed: The original's seed.
    """

    run_id: str
    new_run_id: str
    argv: list[str]
    original: str
    config_hash: str | None = None
    seed: int | None = None

    @property
    def command(self) -> str:
        """The rerun command as one shell line."""
        return shlex.join(self.argv)


def reproduction(run_id: str, new_run_id: str | None = None) -> Reproduction:
    """The command that reruns ``run_id`` from its saved, fully resolved config.

    The saved ``config.yaml`` pins every setting (profile defaults included), so the
    rerun does not depend on how defaults may have changed since; only the run id is new.
    """
    info = load_run(run_id)
    new_id = new_run_id or new_repro_id(run_id)
    argv = ["pdeb", "run", "--config", str(info.run_dir / "config.yaml"), "--run-id", new_id,
            *launch_options(info.command)]
    first = info.rows[0] if info.rows else {}
    seed = (info.config.get("run") or {}).get("seed")
    return Reproduction(run_id, new_id, argv, info.command, first.get("config_hash"), seed)


def config_differences(first: Mapping[str, Any], second: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (``run.run_id`` ignored)."""
    out = []
    for key in sorted(set(first) | set(second), key=str):
        path = f"{prefix}{key}"
        a, b = first.get(key), second.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, path + ".")
        elif a != b and path != "run.run_id":
            out.append(path)
    return out


# --------------------------------------------------------------------------- rollouts for the figures


@dataclass
class Rollout:
    """Predictions and targets of a few test trajectories of one dataset.

    Attributes:
        dataset: Dataset name.
        fields: Channel names.
        pred: ``(B, steps, *S, C)`` numpy array.
        true: Same shape.
        t_in: Frames given to the model before the rollout.
    """

    dataset: str
    fields: list[str]
    pred: Any
    true: Any
    t_in: int


def rerun_rollouts(info: RunInfo, n_trajectories: int = 2, device: str = "cpu") -> tuple[dict[str, Rollout], list[str]]:
    """Rebuild the run's datasets and model from its config, load its weights and roll out.

    Returns:
        ``({dataset: Rollout}, notes)``; the notes say which weights were used.

    Raises:
        PdebError: The config, data or checkpoint cannot be rebuilt (the caller reports it).
    """
    import torch

    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.data.pipeline import plan_mixture
    from pdebench_core.data.windows import conform
    from pdebench_core.evaluation import rollout
    from pdebench_core.spec import DataSpec
    from pdebench_core.weights import resolve_checkpoint, state_dict_of

    cfg = build_config(config_file=info.run_dir / "config.yaml")
    datasets = {name: plugins.get("dataset", name).factory(section) for name, section in cfg.data.items()}
    mixture = plan_mixture(datasets, t_out=int(cfg.train.t_out), resolution=int(cfg.train.resolution))
    notes = []
    state = None
    if info.checkpoint is not None:
        state = _load_state(info.checkpoint)
        notes.append(f"weights: {info.checkpoint.relative_to(info.run_dir)}")
    elif cfg.task.get("checkpoint"):
        path = resolve_checkpoint(str(cfg.task.checkpoint))
        state = _load_state(path)
        notes.append(f"weights: {path} (task.checkpoint)")
    spec = mixture.model_spec
    if state is not None and isinstance(state.get("spec"), Mapping):
        spec = DataSpec.from_dict(state["spec"])
    model = plugins.get("model", cfg.model.name).factory(cfg.model, spec)
    if state is not None:
        model.load_state_dict(state_dict_of(state))
    elif any(p.requires_grad for p in model.parameters()):
        notes.append("no checkpoint: the model was rolled out as built from its config (untrained weights "
                     "unless the model loads them itself)")
    else:
        notes.append("no checkpoint: the model has no trained weights (e.g. persistence); rolled out as built")
    target = torch.device(device)
    model = model.to(target).eval()
    out = {}
    split = str(cfg.eval.split)
    for name, dataset in datasets.items():
        trajectories = dataset.split(split)
        count = min(int(n_trajectories), len(trajectories))
        if count == 0:
            notes.append(f"{name}: the {split} split is empty; nothing to roll out")
            continue
        real, group = dataset.spec.n_channels, mixture.group_of(name)
        batch = torch.stack([conform(trajectories[i], group.grid, group.n_channels)
                             for i in range(count)]).to(target)  # (B, T, *S, C)
        mask = torch.arange(group.n_channels, device=target) < real  # padded channels are never fed back
        horizon = int(cfg.eval.horizon) or int(dataset.spec.horizon or 0)
        available = batch.shape[1] - mixture.t_in
        steps = available if not horizon else min(horizon, available)
        if steps <= 0:
            notes.append(f"{name}: trajectories are too short to roll out")
            continue
        pred = rollout(model, batch[:, :mixture.t_in], steps, mixture.t_out, str(cfg.eval.precision),
                       channel_mask=mask)  # (B, steps, *S, C)
        true = batch[:, mixture.t_in:mixture.t_in + steps]  # (B, steps, *S, C)
        out[name] = Rollout(name, list(dataset.spec.fields), pred[..., :real].cpu().numpy(),
                            true[..., :real].cpu().numpy(), mixture.t_in)
    return out, notes


def _load_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, also accepting a ``TorchVersion`` (a ``str``
    subclass) among its version information, as checkpoints of earlier pdeb versions stored."""
    import torch

    from pdebench_core.checkpoint import load_checkpoint

    allowed = [torch.torch_version.TorchVersion]
    with torch.serialization.safe_globals(allowed):
        return load_checkpoint(path)


# --------------------------------------------------------------------------- spectra


def radial_spectrum(field: Any) -> tuple[Any, Any]:
    """Radially averaged power spectrum of a field on a periodic grid.

    ``P(k)`` is the mean of ``|F_k|^2`` over the shell of integer wavenumber magnitude
    ``k = round(|k_vec|)``, with ``F = fftn(u) / N`` over all axes of ``field`` (1 to 3
    spatial axes), for ``k = 0 .. min(S) // 2``.

    Returns:
        ``(k, P)`` numpy arrays.
    """
    import numpy as np

    u = np.asarray(field, dtype=np.float64)
    coeffs = np.fft.fftn(u) / u.size
    power = np.abs(coeffs) ** 2
    axes = np.meshgrid(*[np.fft.fftfreq(n) * n for n in u.shape], indexing="ij")
    magnitude = np.sqrt(sum(a ** 2 for a in axes))
    shell = np.rint(magnitude).astype(int)
    k_max = min(u.shape) // 2
    keep = shell <= k_max
    sums = np.bincount(shell[keep], weights=power[keep], minlength=k_max + 1)
    counts = np.bincount(shell[keep], minlength=k_max + 1)
    k = np.arange(k_max + 1)
    return k, sums / np.maximum(counts, 1)


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas, without touching pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_data_uri(fig) -> str:
    """``data:image/png;base64,...`` of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def error_curve_figure(evaluation: Mapping[str, Any], dataset: str):
    """Error of every metric against the rollout step (from ``eval/<dataset>.json``)."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    positive = True
    for name, curve in (evaluation.get("per_step") or {}).items():
        steps = list(range(1, len(curve) + 1))
        ax.plot(steps, curve, marker="o" if len(curve) <= 20 else None, markersize=3, label=name)
        positive = positive and all(v > 0 for v in curve)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("error")
    ax.set_title(f"{dataset}: error per rollout step")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def snapshot_steps(steps: int, count: int = SNAPSHOTS) -> list[int]:
    """Up to ``count`` rollout step indices spread from the first to the last."""
    if steps <= count:
        return list(range(steps))
    return sorted({round(i * (steps - 1) / (count - 1)) for i in range(count)})


def _plane(frame: Any) -> Any:
    """A 2D view of a spatial frame: itself (2D) or its middle slice along the last axis (3D)."""
    return frame if frame.ndim == 2 else frame[..., frame.shape[-1] // 2]


def field_figure(sample: Rollout, channel: int):
    """Truth, prediction and error of trajectory 0 at a few rollout steps, for one channel."""
    import numpy as np

    true = sample.true[0, ..., channel]  # (steps, *S)
    pred = sample.pred[0, ..., channel]  # (steps, *S)
    shown = snapshot_steps(true.shape[0])
    name = sample.fields[channel] if channel < len(sample.fields) else f"channel {channel}"
    ndim = true.ndim - 1
    if ndim == 1:
        fig = _figure(3.0 * len(shown) + 0.6, 4.4)
        axes = fig.subplots(2, len(shown), squeeze=False, sharex=True)
        x = np.linspace(0.0, 1.0, true.shape[1], endpoint=False)
        for col, step in enumerate(shown):
            top, bottom = axes[0][col], axes[1][col]
            top.plot(x, true[step], label="truth", color="black")
            top.plot(x, pred[step], label="prediction", color="tab:orange", linestyle="--")
            top.set_title(f"step {step + 1}")
            bottom.plot(x, pred[step] - true[step], color="tab:red")
            bottom.set_xlabel("x")
        axes[0][0].set_ylabel(name)
        axes[1][0].set_ylabel("prediction - truth")
        axes[0][0].legend(fontsize="small")
        fig.suptitle(f"{sample.dataset}: {name}, trajectory 0")
        return fig
    slice_note = " (middle z slice)" if ndim == 3 else ""
    fig = _figure(2.6 * len(shown) + 1.2, 7.4)
    axes = fig.subplots(3, len(shown), squeeze=False)
    planes_true = [_plane(true[s]) for s in shown]
    planes_pred = [_plane(pred[s]) for s in shown]
    low = float(min(p.min() for p in planes_true + planes_pred))
    high = float(max(p.max() for p in planes_true + planes_pred))
    err_max = float(max(np.abs(p - t).max() for p, t in zip(planes_pred, planes_true))) or 1.0
    for col, step in enumerate(shown):
        images = [
            axes[0][col].imshow(planes_true[col].T, origin="lower", cmap="viridis", vmin=low, vmax=high),
            axes[1][col].imshow(planes_pred[col].T, origin="lower", cmap="viridis", vmin=low, vmax=high),
            axes[2][col].imshow((planes_pred[col] - planes_true[col]).T, origin="lower", cmap="RdBu_r",
                                vmin=-err_max, vmax=err_max),
        ]
        axes[0][col].set_title(f"step {step + 1}")
        for ax in (axes[0][col], axes[1][col], axes[2][col]):
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("truth", "prediction", "error")):
        axes[row][0].set_ylabel(label)
    fig.colorbar(images[1], ax=[axes[0][-1], axes[1][-1]], shrink=0.8)
    fig.colorbar(images[2], ax=axes[2][-1], shrink=0.8)
    fig.suptitle(f"{sample.dataset}: {name}, trajectory 0{slice_note}")
    return fig


def spectrum_figure(sample: Rollout):
    """Radially averaged power spectra of prediction and truth at the first and last rollout step,
    averaged over the trajectories shown, one panel per channel."""
    import numpy as np

    channels = min(sample.true.shape[-1], MAX_CHANNELS_SHOWN)
    fig = _figure(3.6 * channels + 0.4, 3.6)
    axes = fig.subplots(1, channels, squeeze=False)[0]
    last = sample.true.shape[1] - 1
    for c in range(channels):
        ax = axes[c]
        for step, alpha in ((0, 0.45), (last, 1.0)):
            for kind, data, style in (("truth", sample.true, "-"), ("prediction", sample.pred, "--")):
                spectra = [radial_spectrum(data[b, step, ..., c]) for b in range(data.shape[0])]
                k = spectra[0][0]
                power = np.mean([s[1] for s in spectra], axis=0)
                keep = (k > 0) & (power > 0)
                if keep.any():
                    colour = "black" if kind == "truth" else "tab:orange"
                    ax.loglog(k[keep], power[keep], style, alpha=alpha, color=colour, label=f"{kind}, step {step + 1}")
        ax.set_xlabel("wavenumber k")
        ax.set_title(sample.fields[c] if c < len(sample.fields) else f"channel {c}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("power P(k)")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{sample.dataset}: radially averaged power spectrum")
    return fig


# --------------------------------------------------------------------------- HTML


REPORT_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 80rem;
  color: #1d2430; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d9dee7; }
h3 { font-size: 1rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .6rem 0 1rem; }
th, td { border-bottom: 1px solid #d9dee7; padding: .25rem .6rem; text-align: left; }
th { background: #eef1f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.overview td.num { text-align: left; } table.overview td:first-child { color: #4a5568; }
pre { background: #f5f7fa; padding: .7rem; overflow-x: auto; font-size: .8rem; }
img { max-width: 100%; height: auto; display: block; margin: .5rem 0 1rem; }
p.note { color: #6b4e00; background: #fff7e0; padding: .4rem .7rem; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    esc = html.escape
    head = ("<thead><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in header) + "</tr></thead>") if header else ""
    out = [f'<table class="{esc(css_class)}">{head}<tbody>']
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append(f'<td class="num">{value:.4g}</td>')
            elif isinstance(value, int) and not isinstance(value, bool):
                cells.append(f'<td class="num">{value}</td>')
            else:
                cells.append(f"<td>{esc('' if value is None else str(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt, quote=True)}">'


def metric_tables(evaluation: Mapping[str, Any]) -> str:
    """Summary / one-step table and per-channel table of one eval json, as HTML."""
    summary = evaluation.get("summary") or {}
    one_step = evaluation.get("one_step") or {}
    names = list(summary) + [n for n in one_step if n not in summary]
    parts = [_table(["", *names], [
        ["rollout (summary)", *[summary.get(n) for n in names]],
        ["one step (teacher forced)", *[one_step.get(n) for n in names]],
    ], "metrics")]
    per_channel = evaluation.get("per_channel") or {}
    fields = list(evaluation.get("fields") or [])
    if per_channel:
        width = max(len(v) for v in per_channel.values())
        labels = [fields[i] if i < len(fields) else f"channel {i}" for i in range(width)]
        rows = [[labels[i], *[(per_channel.get(n) or [None] * width)[i] if i < len(per_channel.get(n) or []) else None
                              for n in per_channel]] for i in range(width)]
        parts.append("<h3>Per channel</h3>" + _table(["field", *per_channel], rows, "per-channel"))
    return "".join(parts)


def render_report(info: RunInfo, rollouts: Mapping[str, Rollout], notes: Sequence[str],
                  repro: Reproduction | None = None, advance=lambda amount: None) -> str:
    """The report page as one self-contained HTML string (``advance(1)`` is called per dataset drawn)."""
    esc = html.escape
    run = info.config.get("run") or {}
    first = info.rows[0] if info.rows else {}
    model_cfg = info.config.get("model") or {}
    overview = [
        ("model", info.model + (f" ({model_cfg['size']})" if model_cfg.get("size") else "")),
        ("datasets", ", ".join(info.datasets)),
        ("task", run.get("task")), ("profile", run.get("profile")), ("seed", run.get("seed")),
        ("state", info.status.get("state", "unknown")),
        ("parameters", first.get("n_params")), ("training time (s)", first.get("train_time_s")),
        ("device", first.get("device")), ("created", first.get("created_at")),
        ("config hash", first.get("config_hash")), ("data hash", first.get("data_hash")),
    ]
    versions = first.get("versions") or {}
    if versions:
        overview.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    if info.status.get("error"):
        overview.append(("error", info.status["error"]))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>pdeb report: {esc(info.run_id)}</title>", f"<style>{REPORT_CSS}</style></head><body>",
             f"<h1>Run {esc(info.run_id)}</h1>",
             _table([], [(k, v) for k, v in overview if v not in (None, "")], "overview")]
    parts.append("<h2>Reproduce</h2>")
    if repro is not None:
        parts.append(f"<pre>{esc(repro.command)}</pre>")
    if info.command:
        parts.append(f"<p>Original command:</p><pre>{esc(info.command)}</pre>")
    for note in notes:
        parts.append(f'<p class="note">{esc(note)}</p>')
    names = list(info.evals) + [n for n in rollouts if n not in info.evals]
    if not names:
        parts.append("<p>No evaluation outputs and no rollout for this run.</p>")
    for name in names:
        evaluation = info.evals.get(name)
        parts.append(f"<h2>{esc(name)}</h2>")
        if evaluation:
            parts.append(f"<p>{esc(str(evaluation.get('split', 'test')))} split, "
                         f"{esc(str(evaluation.get('n_samples', '?')))} trajectories, "
                         f"{esc(str(evaluation.get('horizon', '?')))} rollout steps.</p>")
            parts.append(metric_tables(evaluation))
            if evaluation.get("per_step"):
                parts.append("<h3>Error per rollout step</h3>"
                             + _image(png_data_uri(error_curve_figure(evaluation, name)), f"{name} error per step"))
        else:
            parts.append("<p>No evaluation output (eval/" + esc(name) + ".json) for this dataset.</p>")
        sample = rollouts.get(name)
        if sample is not None:
            count = sample.true.shape[0]
            parts.append(f"<h3>Rollout of {count} test trajector{'y' if count == 1 else 'ies'} (re-run for this "
                         f"report, {sample.true.shape[1]} steps after {sample.t_in} input frames)</h3>")
            for c in range(min(sample.true.shape[-1], MAX_CHANNELS_SHOWN)):
                parts.append(_image(png_data_uri(field_figure(sample, c)), f"{name} fields channel {c}"))
            parts.append("<h3>Energy spectra</h3>" + _image(png_data_uri(spectrum_figure(sample)), f"{name} spectra"))
        advance(1)
    parts.append("<h2>Configuration</h2><details><summary>config.yaml</summary>"
                 f"<pre>{esc(info.config_text)}</pre></details>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p style="color:#6b7280;font-size:.8rem">Generated {esc(stamp)} by pdeb report.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(run_id: str, out: str | Path | None = None, n_trajectories: int = 2, rollout: bool = True,
                 device: str = "cpu") -> Path:
    """Write the HTML report of a run.

    Args:
        run_id: The run.
        out: Output file (default ``<run_dir>/report.html``).
        n_trajectories: Test trajectories rolled out again for the field and spectrum figures.
        rollout: Rebuild data and model to draw fields and spectra (else metrics only).
        device: Where to roll out.

    Returns:
        The path written. A run whose data, model or checkpoint cannot be rebuilt still gets a
        report (metrics and curves), with a note saying why the rollout figures are missing.
    """
    from pdebench_core.progress import progress

    info = load_run(run_id)
    rollouts: dict[str, Rollout] = {}
    notes: list[str] = []
    with progress(f"report {run_id}", len(info.evals) + 1) as advance:  # plain lines when logged
        if rollout and n_trajectories > 0:
            try:
                rollouts, notes = rerun_rollouts(info, n_trajectories, device)
            except PdebError as exc:
                notes.append(f"no rollout figures: {exc}")
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                notes.append(f"no rollout figures: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}")
        advance(1)
        page = render_report(info, rollouts, notes, reproduction(run_id), advance)
    path = Path(out) if out else info.run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
