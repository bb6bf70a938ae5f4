"""Paired comparison of two methods on the search-quality grid: the regret difference on each
(task, seed) cell both ran, its mean, and a bootstrap interval over cells.

A mean over 50 runs hides how noisy one run is (a single lcbench run's final regret spreads by
about 0.03). Each method here ran the same tasks with the same seeds, so differences are taken
cell by cell, and the interval says whether a gap in the means is larger than that noise.

    rows = paired_differences(regrets, reference="smac_mf")
    rows["stepsize"][1.0]  # PairedDifference(mean=..., low=..., high=..., cells=50)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

#: ``method -> (task, seed) -> fraction of the budget -> regret``
Regrets = Mapping[str, Mapping[tuple[str, int], Mapping[float, float]]]


@dataclass(frozen=True)
class PairedDifference:
    """``method - reference`` regret on shared cells: mean and ``level`` bootstrap interval."""

    mean: float
    low: float
    high: float
    cells: int

    @property
    def verdict(self) -> str:
        """'lower' or 'higher' when the interval excludes 0, else 'level'."""
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "level"


def paired_differences(regrets: Regrets, reference: str, *, level: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> dict[str, dict[float, PairedDifference]]:
    """For every method but ``reference``: per budget fraction, the mean of ``method - reference``
    over the cells both ran, with a percentile bootstrap interval (cells resampled with
    replacement, ``resamples`` times, seeded). Methods sharing no cell with ``reference`` are left
    out."""
    if reference not in regrets:
        raise KeyError(f"no results for the reference method {reference!r}")
    rng = np.random.default_rng(seed)
    base = regrets[reference]
    rows: dict[str, dict[float, PairedDifference]] = {}
    for method, cells in regrets.items():
        shared = sorted(set(cells) & set(base))
        if method == reference or not shared:
            continue
        draws = rng.integers(0, len(shared), size=(resamples, len(shared)))
        row = {}
        for fraction in base[shared[0]]:
            diffs = np.array([cells[c][fraction] - base[c][fraction] for c in shared])
            means = diffs[draws].mean(axis=1)
            low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
            row[fraction] = PairedDifference(float(diffs.mean()), float(low), float(high), len(shared))
        rows[method] = row
    return rows


def markdown(rows: Mapping[str, Mapping[float, PairedDifference]], reference: str) -> str:
    """One line per method: mean difference and interval at each fraction of the budget."""
    fractions = sorted({f for row in rows.values() for f in row})
    head = f"| method - {reference} | cells | " + " | ".join(f"@{int(f * 100)}%" for f in fractions) + " |"
    lines = [head, "|---|---|" + "---|" * len(fractions)]
    for method, row in sorted(rows.items(), key=lambda kv: kv[1][fractions[-1]].mean):
        cells = next(iter(row.values())).cells
        parts = [f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] {d.verdict}" for d in (row[f] for f in fractions)]
        lines.append(f"| {method} | {cells} | " + " | ".join(parts) + " |")
    return "\n".join(lines)
