"""The report page: one self-contained HTML file per run (no script, images embedded)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pdebench_core import html_page
from pdebench_core.errors import PdebError

from .figures import MAX_CHANNELS_SHOWN, error_curve_figure, field_figure, png_data_uri, spectrum_figure
from .provenance import Reproduction, RunInfo, load_run, reproduction
from .rollouts import Rollout, rerun_rollouts

REPORT_CSS = """
body { margin: 2rem auto; max-width: 80rem; padding: 0 1rem; }
h2 { border-bottom: 1px solid #d9dee7; }
td { white-space: normal; } th { position: static; }
table.overview td.num { text-align: left; } table.overview td:first-child { color: #4a5568; }
pre { background: #f5f7fa; padding: .7rem; overflow-x: auto; font-size: .8rem; }
img { max-width: 100%; height: auto; display: block; margin: .5rem 0 1rem; }
p.warning { color: #6b4e00; background: #fff7e0; padding: .4rem .7rem; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    return html_page.table(header, [[html_page.cell(v) for v in row] for row in rows], css_class)


def _image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html_page.esc(alt)}">'


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
        rows = [[labels[i], *[(per_channel.get(n) or [])[i] if i < len(per_channel.get(n) or []) else None
                              for n in per_channel]] for i in range(width)]
        parts.append("<h3>Per channel</h3>" + _table(["field", *per_channel], rows, "per-channel"))
    return "".join(parts)


def _data_lines(rows: Sequence[Mapping[str, Any]]) -> str:
    """What each dataset's numbers were measured on: source, content hash, trajectories, grid."""
    lines = []
    for row in rows:
        if not row.get("data_source"):
            continue
        facts = [f"{row['dataset']}: {row['data_source']}"]
        facts += [f"hash {row['dataset_hash']}"] if row.get("dataset_hash") else []
        facts += [f"{row['n_train']} train trajectories"] if row.get("n_train") is not None else []
        facts += [f"grid {row['grid']}"] if row.get("grid") else []
        facts += [f"t_in {row['t_in']}"] if row.get("t_in") is not None else []
        facts += [f"horizon {row['horizon']}"] if row.get("horizon") is not None else []
        lines.append(", ".join(facts))
    return "; ".join(lines)


def overview(info: RunInfo) -> list[tuple[str, Any]]:
    """``(label, value)`` pairs of the run: what ran, on what, where, and its provenance."""
    from pdebench_core.leaderboard import size_label

    run = info.config.get("run") or {}
    first = info.rows[0] if info.rows else {}
    parameters = first.get("n_params")
    pairs = [
        ("model", info.model), ("datasets", ", ".join(info.datasets)),
        ("task", run.get("task")), ("profile", run.get("profile")), ("seed", run.get("seed")),
        ("state", info.status.get("state", "unknown")),
        ("parameters", (f"{parameters:,} ({size_label(parameters)})" if size_label(parameters) != str(parameters)
                        else f"{parameters:,}") if parameters else None),
        ("training time (s)", first.get("train_time_s")), ("device", first.get("device")),
        ("created", first.get("created_at")), ("config hash", first.get("config_hash")),
        ("data hash", first.get("data_hash")), ("data", _data_lines(info.rows)),
    ]
    versions = first.get("versions") or {}
    if versions:
        pairs.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    if info.status.get("error"):
        pairs.append(("error", info.status["error"]))
    return [(k, v) for k, v in pairs if v not in (None, "")]


def _dataset_section(name: str, evaluation: Mapping[str, Any] | None, sample: Rollout | None) -> list[str]:
    esc = html_page.esc
    parts = [f"<h2>{esc(name)}</h2>"]
    if evaluation:
        try:
            shown = [f"<p>{esc(evaluation.get('split', 'test'))} split, {esc(evaluation.get('n_samples', '?'))} "
                     f"trajectories, {esc(evaluation.get('horizon', '?'))} rollout steps.</p>",
                     metric_tables(evaluation)]
            if evaluation.get("per_step"):
                shown.append("<h3>Error per rollout step</h3>"
                             + _image(png_data_uri(error_curve_figure(evaluation, name)), f"{name} error per step"))
            parts += shown
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:  # edited or damaged file
            parts.append(f'<p class="warning">eval/{esc(name)}.json does not hold what pdeb writes '
                         f"({esc(type(exc).__name__)}: {esc(str(exc)[:120])}); its metrics are not shown.</p>")
    else:
        parts.append(f"<p>No evaluation output (eval/{esc(name)}.json) for this dataset.</p>")
    if sample is not None:
        count = sample.true.shape[0]
        parts.append(f"<h3>Rollout of {count} test trajector{'y' if count == 1 else 'ies'} (re-run for this "
                     f"report, {sample.true.shape[1]} steps after {sample.t_in} input frames)</h3>")
        for c in range(min(sample.true.shape[-1], MAX_CHANNELS_SHOWN)):
            parts.append(_image(png_data_uri(field_figure(sample, c)), f"{name} fields channel {c}"))
        parts.append("<h3>Energy spectra</h3>" + _image(png_data_uri(spectrum_figure(sample)), f"{name} spectra"))
    return parts


def render_report(info: RunInfo, rollouts: Mapping[str, Rollout], notes: Sequence[str],
                  repro: Reproduction | None = None, advance=lambda amount: None) -> str:
    """The report page as one self-contained HTML string (``advance(1)`` is called per dataset drawn)."""
    esc = html_page.esc
    parts = [_table([], overview(info), "overview"), "<h2>Reproduce</h2>"]
    if repro is not None:
        parts.append(f"<pre>{esc(repro.command)}</pre>")
        if repro.problem is not None:
            parts.append(f"<p>This command cannot run as it is: the saved config no longer builds "
                         f"({esc(repro.problem)}).</p>")
    if info.command:
        parts.append(f"<p>Original command:</p><pre>{esc(info.command)}</pre>")
    parts += [f'<p class="warning">{esc(note)}</p>' for note in notes]
    names = list(info.evals) + [n for n in rollouts if n not in info.evals]
    if not names:
        parts.append("<p>No evaluation outputs and no rollout for this run.</p>")
    for name in names:
        parts += _dataset_section(name, info.evals.get(name), rollouts.get(name))
        advance(1)
    parts.append("<h2>Configuration</h2><details><summary>config.yaml</summary>"
                 f"<pre>{esc(info.config_text)}</pre></details>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p style="color:#6b7280;font-size:.8rem">Generated {esc(stamp)} by pdeb report.</p>')
    return html_page.page(f"Run {info.run_id}", parts, css=REPORT_CSS)


def build_report(run_id: str, out: str | Path | None = None, n_trajectories: int = 2, rollout: bool = True,
                 device: str = "cpu", warn: Callable[[str], None] | None = None) -> Path:
    """Write the HTML report of a run.

    Args:
        run_id: The run.
        out: Output file (default ``<run_dir>/report.html``).
        n_trajectories: Test trajectories rolled out again for the field and spectrum figures.
        rollout: Rebuild data and model to draw fields and spectra (else metrics only).
        device: Where to roll out.
        warn: Called with each note on what the report lacks or where it took its weights
            from (the command line prints them; they are in the page too).

    Returns:
        The path written. A run whose data, model or checkpoint cannot be rebuilt still gets a
        report (metrics and curves), with a note saying why the rollout figures are missing.
    """
    from pdebench_core.progress import progress

    info = load_run(run_id)
    if rollout and n_trajectories > 0:  # checked before any work
        from pdebench_core.devices import resolve_device

        resolve_device(device)  # an unknown or absent device is the user's error, before any work
    rollouts: dict[str, Rollout] = {}
    notes: list[str] = []
    drawn = set(info.evals) | set(info.config.get("data") or {})  # datasets render_report may draw
    rerun = rollout and n_trajectories > 0
    # Only a rollout takes long enough to want progress (plain lines when logged).
    with progress(f"report {run_id}", len(drawn) + 1, enabled=rerun) as advance:
        if rerun:
            try:
                rollouts, notes = rerun_rollouts(info, n_trajectories, device)
            except PdebError as exc:
                notes.append(f"no rollout figures: {exc}")
            except (OSError, RuntimeError, KeyError, ValueError) as exc:  # torch's reason may start a line later
                reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:240]
                notes.append(f"no rollout figures: {type(exc).__name__}: {reason}")
        advance(1)
        page = render_report(info, rollouts, notes, reproduction(run_id), advance)
    for note in notes if warn else ():
        warn(note)
    from pdebench_core.diskspace import write_text_atomically

    return write_text_atomically(Path(out) if out else info.run_dir / "report.html", page)
