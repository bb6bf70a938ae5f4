"""The search-quality report's paired comparison: differences are taken cell by cell on the cells
both methods ran, and the interval tells a consistent gap from noise."""

from __future__ import annotations

import numpy as np
import pytest

from bench.search_quality.paired import markdown, paired_differences


def grid(values: dict[tuple[str, int], float]) -> dict[tuple[str, int], dict[float, float]]:
    return {cell: {0.25: 2 * v, 1.0: v} for cell, v in values.items()}


def test_a_consistent_gap_is_lower_and_noise_is_level():
    rng = np.random.default_rng(1)
    cells = [(task, seed) for task in ("a", "b", "c", "d", "e") for seed in range(10)]
    noise = {c: float(rng.normal(0.02, 0.03)) for c in cells}
    regrets = {
        "ref": grid(noise),
        "better": grid({c: v - 0.01 for c, v in noise.items()}),  # 0.01 lower on every cell
        "other": grid({c: float(rng.normal(0.02, 0.03)) for c in cells}),  # the same spread, unpaired
    }
    rows = paired_differences(regrets, "ref")
    assert set(rows) == {"better", "other"}
    better = rows["better"][1.0]
    assert better.cells == 50 and better.mean == pytest.approx(-0.01)
    assert better.low == pytest.approx(-0.01) and better.high == pytest.approx(-0.01)
    assert better.verdict == "lower" and rows["better"][0.25].mean == pytest.approx(-0.02)
    other = rows["other"][1.0]
    assert other.low < other.mean < other.high and other.verdict == "level"
    table = markdown(rows, "ref")
    assert table.splitlines()[2].startswith("| better | 50 | -0.0200 [")  # sorted by the last fraction
    assert "lower" in table and "level" in table


def test_only_shared_cells_are_compared():
    regrets = {"ref": grid({("a", 0): 0.1, ("a", 1): 0.3}), "m": grid({("a", 1): 0.5, ("b", 0): 0.0})}
    row = paired_differences(regrets, "ref")["m"][1.0]
    assert row.cells == 1 and row.mean == pytest.approx(0.2) and row.verdict == "higher"
    assert "m" not in paired_differences({"ref": regrets["ref"], "m": grid({("z", 0): 0.1})}, "ref")
    with pytest.raises(KeyError, match="missing"):
        paired_differences(regrets, "missing")
