"""The LR range test's plot: loss against learning rate with the suggestion and the bounds."""

from __future__ import annotations

import math
from os import PathLike

from orchestrator.lr_range.result import LRRangeResult


def plot_lr_range(result: LRRangeResult, path: str | PathLike[str], *, title: str | None = None) -> str:
    """Loss against LR (log axis): raw, online-smoothed and zero-lag-smoothed curves, the
    suggestion, the search bounds and the divergence point. Saved as PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = str(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        finite = [(lr, loss) for lr, loss in zip(result.lrs, result.losses) if math.isfinite(loss)]
        if finite:
            ax.plot(*zip(*finite), color="0.6", lw=1, marker=".", ms=3, label="loss (raw)")
        online = [(lr, v) for lr, v in zip(result.lrs, result.smoothed_losses) if math.isfinite(v)]
        if online:
            ax.plot(*zip(*online), color="tab:orange", lw=1, ls="--", label=f"online EMA (beta {result.smoothing:g})")
        if result.analysis_losses:
            ax.plot(result.lrs[: len(result.analysis_losses)], result.analysis_losses, color="tab:blue", lw=2,
                    label="smoothed (zero lag)")
        if result.bounds is not None:
            ax.axvspan(*result.bounds, color="tab:green", alpha=0.12, label="suggested search range")
        if result.suggested_lr is not None:
            ax.axvline(result.suggested_lr, color="tab:green", lw=2, label=f"suggested lr {result.suggested_lr:.3g}")
        if result.divergence_lr is not None:
            ax.axvline(result.divergence_lr, color="tab:red", lw=1, ls=":",
                       label=f"loss rose for good at {result.divergence_lr:.3g}")
        ax.set_xscale("log")
        kept = len(result.analysis_losses)
        reference = [v for v in list(result.analysis_losses) + list(result.losses[:kept]) if math.isfinite(v)]
        if math.isfinite(result.initial_loss):
            reference.append(result.initial_loss)
        if reference:
            low, high = min(reference), max(reference)
            span = max(high - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, high + 0.5 * span)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title or f"LR range test: {result.num_steps} batches, {result.stop_reason}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
