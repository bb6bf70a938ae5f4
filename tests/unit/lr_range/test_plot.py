"""The LR range test's plot is written (a PNG of the digits CNN's curve)."""

from __future__ import annotations

from orchestrator.lr_range.plot import plot_lr_range
from orchestrator.lr_range.ramp import lr_range_test
from tests.unit.lr_range.curves import digits_cnn


def test_the_plot_is_written(tmp_path):
    model, loss_fn, batches = digits_cnn()
    result = lr_range_test(model, loss_fn, batches, {"momentum": 0.9}, min_lr=1e-4, max_lr=10.0)
    path = plot_lr_range(result, tmp_path / "lr.png")
    data = (tmp_path / "lr.png").read_bytes()
    assert path.endswith("lr.png") and len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"
