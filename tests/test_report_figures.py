"""The report's figures show the data they claim to: images, lines and spectra hold the arrays."""

from __future__ import annotations

import numpy as np

from pdebench_core import report


def _rollout(shape):
    rng = np.random.default_rng(0)
    true = rng.standard_normal((2, 6, *shape, 2)).astype(np.float32)  # (B, steps, *S, C)
    pred = true + 0.1 * rng.standard_normal(true.shape).astype(np.float32)
    return report.Rollout(dataset="toy", fields=["u", "v"], pred=pred, true=true, t_in=3)


def test_2d_field_figure_images_are_truth_prediction_and_error():
    sample = _rollout((8, 6))
    fig = report.field_figure(sample, channel=1)
    shown = report.snapshot_steps(6)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3 * len(shown)
    rows = {"truth": sample.true[0, ..., 1], "prediction": sample.pred[0, ..., 1],
            "error": sample.pred[0, ..., 1] - sample.true[0, ..., 1]}
    for row, expected in enumerate(rows.values()):
        for col, step in enumerate(shown):
            image = axes[row * len(shown) + col].images[0].get_array()
            np.testing.assert_allclose(np.asarray(image), expected[step].T, rtol=1e-6)  # drawn transposed, origin low


def test_3d_field_figure_shows_the_middle_slice():
    sample = _rollout((4, 4, 6))
    fig = report.field_figure(sample, channel=0)
    first = [ax for ax in fig.axes if ax.images][0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(first), sample.true[0, report.snapshot_steps(6)[0], :, :, 3, 0].T)


def test_1d_field_figure_lines_are_the_trajectories():
    sample = _rollout((16,))
    fig = report.field_figure(sample, channel=0)
    step = report.snapshot_steps(6)[-1]
    top = [ax for ax in fig.axes if ax.get_title() == f"step {step + 1}"][0]
    truth, prediction = top.get_lines()[:2]
    np.testing.assert_allclose(truth.get_ydata(), sample.true[0, step, :, 0])
    np.testing.assert_allclose(prediction.get_ydata(), sample.pred[0, step, :, 0])


def test_spectrum_figure_plots_the_radial_spectrum_of_the_truth():
    sample = _rollout((16, 16))
    fig = report.spectrum_figure(sample)
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "truth, step 6"][0]
    spectra = [report.radial_spectrum(sample.true[b, 5, ..., 0]) for b in range(2)]
    k, power = spectra[0][0], np.mean([s[1] for s in spectra], axis=0)
    keep = (k > 0) & (power > 0)
    np.testing.assert_allclose(line.get_xdata(), k[keep])
    np.testing.assert_allclose(line.get_ydata(), power[keep], rtol=1e-6)


def test_error_curve_figure_plots_the_per_step_values():
    evaluation = {"per_step": {"l2re": [0.1, 0.2, 0.4], "rmse": [1.0, 2.0, 3.0]}}
    fig = report.error_curve_figure(evaluation, "toy")
    plotted = {ln.get_label(): list(ln.get_ydata()) for ax in fig.axes for ln in ax.get_lines()}
    assert [0.1, 0.2, 0.4] in plotted.values() and [1.0, 2.0, 3.0] in plotted.values()
