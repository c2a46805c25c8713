"""Every published table names the protocol its cells were measured under, with a column for each cell."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from pdebench_core import leaderboard as lb
from pdebench_core import protocols
from pdebench_core.cli_results import register


def test_every_published_cell_has_a_protocol_column():
    tables = lb.load_published()
    for key, spec in tables.sources.items():
        protocol = tables.protocols[key]
        assert protocol is not None and protocol.name == spec["protocol"], key
        names = {r.published_name for r in lb.published_rows(tables) if r.source_key == key}
        assert names <= set(protocol.columns), (key, names - set(protocol.columns))


def test_the_pdebench_protocol_follows_the_official_subsampling():
    """grid = stored grid / reduced_resolution, horizon = subsampled frames - initial_step."""
    measures = lb.load_published().protocols["pdebench"].columns
    assert measures["burgers1d"] == lb.Measure(t_in=10, horizon=len(range(0, 201, 5)) - 10, grid="256", scoring="native")
    assert measures["cfd1d"] == lb.Measure(t_in=10, horizon=len(range(0, 101, 5)) - 10, grid="128", scoring="native")
    assert measures["diffusion_reaction1d"] == lb.Measure(t_in=5, horizon=101 - 5, grid="256", scoring="native")
    assert measures["cfd2d"] == lb.Measure(t_in=10, horizon=21 - 10, grid="64x64", scoring="native")
    assert measures["darcy2d"] == lb.Measure(t_in=1, horizon=1, grid="128x128", scoring="native")


def test_a_comparison_protocol_is_not_offered_to_reproduce():
    assert "pdebench-fno-nrmse" not in protocols.protocol_names()
    assert "dpot-table1" in protocols.protocol_names()
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["reproduce", "pdebench-fno-nrmse", "--checkpoint", "x.pth", "--data-root", "."])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "only records how a published table was measured" in result.output and "dpot-table1" in result.output


def test_differences_name_each_measure():
    published = lb.Measure(t_in=10, horizon=20, grid="64x64")
    assert lb.differences(lb.Measure(10, 20, "64x64"), published) == []
    assert lb.differences(lb.Measure(10, 40, "64x64"), published) == ["horizon 40 vs 20"]
    assert lb.differences(lb.Measure(1, 20, None), published) == ["t_in 1 vs 10", "grid ? vs 64x64"]
    assert lb.differences(lb.Measure(10, 20, "64x64"), None) == ["published protocol unknown"]
    strided = lb.Measure(10, 20, "64x64", "strided on 128x128")
    assert lb.differences(lb.Measure(10, 20, "64x64", "native"), strided) == ["scoring native vs strided on 128x128"]


def test_scoring_says_whether_the_truth_was_the_stored_data():
    assert lb.scoring_label("strided", (128, 128), (64, 64)) == "strided on 128x128"
    assert lb.scoring_label("model", (32, 32), (64, 64)) == "model on 32x32"
    # scored against the stored data: the native mode, or a model that sees the data's own grid
    assert lb.scoring_label("native", (128, 128), (64, 64)) == "native"
    assert lb.scoring_label("strided", (64, 64), (64, 64)) == "native"
    assert lb.scoring_label("model", None, (64, 64)) == "native"
