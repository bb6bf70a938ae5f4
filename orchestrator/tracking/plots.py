"""Study plots for the parent run: PNG files (matplotlib) and, where plotly is installed, one
interactive HTML page with the same plots.

- ``optimization_history.png``: objective per completed trial and the best so far;
- ``lr_vs_final_loss.png``: learning rate (log axis) against each trial's final objective value;
  pruned trials hollow, diverged ones as red crosses along the top edge;
- ``learning_curves.png``: every trial's per-epoch objective overlaid (completed solid, pruned
  dashed grey, diverged red, failed dotted black, the best thick);
- ``parallel_coordinates.png`` and ``param_importances.png`` (Optuna's own plots);
- ``study_plots.html``: interactive versions (plotly).

A plot the study cannot support yet (no completed trial, one completed trial for importances, no
learning rate in the space) is skipped with a note instead of failing.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from optuna.trial import FrozenTrial, TrialState

from orchestrator.credentials import protected_logger
from orchestrator.errors import PlotSkipped
from orchestrator.keys import StudyAttr, TrialAttr
from orchestrator.study.summary import best_trial

logger = protected_logger("orchestrator.tracking")

LR_KEYS = (TrialAttr.EFFECTIVE_LR, "learning_rate", "lr")


def make_plots(study: Any, metric: str, folder: str | Path) -> tuple[list[Path], list[str]]:
    """Draw the study's plots into ``folder``; returns the files and the notes on skipped plots."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    files: list[Path] = []
    notes: list[str] = []
    _agg_backend()
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's "experimental" warnings, matplotlib's layout notes
        for name, draw in _PNG_PLOTS:
            path = folder / f"{name}.png"
            try:
                # Optuna's plots switch matplotlib's global style; the context puts it back.
                with plt.style.context("default"):
                    draw(study, trials, metric, path)
                files.append(path)
            except PlotSkipped as skip:
                notes.append(f"{name}: skipped, {skip}")
            except Exception as exc:  # noqa: BLE001 - a plot never fails the study's record
                notes.append(f"{name}: skipped, {type(exc).__name__}: {exc}")
        html = folder / "study_plots.html"
        try:
            _write_html(study, trials, metric, html, notes)
            files.append(html)
        except PlotSkipped as skip:
            notes.append(f"study_plots.html: skipped, {skip}")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"study_plots.html: skipped, {type(exc).__name__}: {exc}")
    for note in notes:
        logger.info("study %s plots: %s", study.study_name, note)
    return files, notes


# -- what each plot needs ----------------------------------------------------------------------
def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]


def _need_complete(trials: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    done = _complete(trials)
    if len(done) < count:
        raise PlotSkipped(f"needs {count} completed trial{'s' if count > 1 else ''}, the study has {len(done)}")
    return done


def _lr(trial: FrozenTrial) -> float | None:
    for key in LR_KEYS:
        value = trial.params.get(key, trial.user_attrs.get(key))
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def _kind(trial: FrozenTrial) -> str:
    if trial.user_attrs.get(TrialAttr.DIVERGED):
        return "diverged"
    return {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}.get(
        trial.state, "running")


def _curve(trial: FrozenTrial) -> tuple[list[int], list[float]]:
    steps = sorted(trial.intermediate_values)
    if trial.user_attrs.get(TrialAttr.DIVERGED) and steps:
        steps = steps[:-1]  # the last value of a diverged trial is a penalty, not a measurement
    values = [trial.intermediate_values[s] for s in steps]
    keep = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
    return [s for s, _ in keep], [v for _, v in keep]


def _final(trial: FrozenTrial) -> float | None:
    if trial.state == TrialState.COMPLETE:
        return trial.value
    steps, values = _curve(trial)
    return values[-1] if values else None


def _best_number(study: Any) -> int | None:
    best = best_trial(study)
    return None if best is None else best.number


# -- matplotlib ----------------------------------------------------------------------------------
def _agg_backend() -> None:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def _save(drawn: Any, path: Path) -> None:
    """Save a Figure, an Axes or an array of Axes (Optuna returns either) and close it."""
    import matplotlib.pyplot as plt

    if hasattr(drawn, "flat"):
        drawn = drawn.flat[0]
    fig = drawn if hasattr(drawn, "savefig") else drawn.figure
    width, height = fig.get_size_inches()
    fig.set_size_inches(max(width, 8), max(height, 5))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _history(study: Any, trials: list[FrozenTrial], metric: str, path: Path) -> None:
    from optuna.visualization.matplotlib import plot_optimization_history

    _need_complete(trials, 1)
    ax = plot_optimization_history(study, target_name=metric)
    ax.set_title(f"Optimization history: {metric}")
    _save(ax, path)


def _lr_vs_loss(study: Any, trials: list[FrozenTrial], metric: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    points = [(t, _lr(t)) for t in trials]
    points = [(t, lr) for t, lr in points if lr is not None]
    if not points:
        raise PlotSkipped("no learning rate (learning_rate, lr or effective_learning_rate) among the trials' params")
    shown = [(t, lr, _final(t)) for t, lr in points if _kind(t) in ("completed", "pruned")]
    shown = [(t, lr, v) for t, lr, v in shown if v is not None]
    diverged = [lr for t, lr in points if _kind(t) == "diverged"]
    if not shown and not diverged:
        raise PlotSkipped("no trial has a final value yet")
    fig, ax = plt.subplots(figsize=(8, 5))
    best = _best_number(study)
    for kind, style in (("completed", dict(color="C0", marker="o")),
                        ("pruned", dict(facecolors="none", edgecolors="grey", marker="o"))):
        xs = [lr for t, lr, v in shown if _kind(t) == kind]
        ys = [v for t, lr, v in shown if _kind(t) == kind]
        if xs:
            ax.scatter(xs, ys, label=f"{kind} ({len(xs)})", **style)
    for t, lr, v in shown:
        if t.number == best:
            ax.scatter([lr], [v], s=160, facecolors="none", edgecolors="gold", linewidths=2,
                       label=f"best (trial {best})")
    if diverged:
        top = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(diverged, [0.97] * len(diverged), transform=top, color="red", marker="x",
                   label=f"diverged ({len(diverged)})", clip_on=False)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"final {metric}")
    ax.set_title(f"Learning rate vs final {metric}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def _curves(study: Any, trials: list[FrozenTrial], metric: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    drawn = [(t, *_curve(t)) for t in trials]
    drawn = [(t, xs, ys) for t, xs, ys in drawn if xs]
    if not drawn:
        raise PlotSkipped("no trial reported an epoch yet")
    styles = {
        "completed": dict(color="C0", linestyle="-", alpha=0.8),
        "pruned": dict(color="grey", linestyle="--", alpha=0.6),
        "diverged": dict(color="red", linestyle="-", alpha=0.8),
        "failed": dict(color="black", linestyle=":", alpha=0.7),
        "running": dict(color="C2", linestyle="-.", alpha=0.6),
    }
    ends = {"pruned": "o", "diverged": "x", "failed": "s"}
    fig, ax = plt.subplots(figsize=(9, 5.5))
    best = _best_number(study)
    counts: dict[str, int] = {}
    for t, xs, ys in drawn:
        kind = _kind(t)
        counts[kind] = counts.get(kind, 0) + 1
        width = 2.8 if t.number == best else 1.2
        ax.plot(xs, ys, linewidth=width, **styles[kind])
        if kind in ends:
            ax.plot(xs[-1:], ys[-1:], marker=ends[kind], color=styles[kind]["color"], markersize=6,
                    fillstyle="none" if kind == "pruned" else "full", linestyle="none")
    legend = [Line2D([], [], marker=ends.get(k), fillstyle="none" if k == "pruned" else "full",
                     label=f"{k} ({n})", **{**styles[k], "alpha": 1}) for k, n in counts.items()]
    if best is not None:
        legend.append(Line2D([], [], color="C0", linewidth=2.8, label=f"best (trial {best})"))
    ax.legend(handles=legend, loc="best", fontsize="small")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves: {metric} per epoch, all trials")
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def _parallel(study: Any, trials: list[FrozenTrial], metric: str, path: Path) -> None:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    done = _need_complete(trials, 1)
    if not any(t.params for t in done):
        raise PlotSkipped("the completed trials have no searched params")
    _save(plot_parallel_coordinate(study, target_name=metric), path)


def _importances(study: Any, trials: list[FrozenTrial], metric: str, path: Path) -> None:
    from optuna.visualization.matplotlib import plot_param_importances

    _importance_check(trials)
    _save(plot_param_importances(study, target_name=metric), path)


def warm_up() -> None:
    """Import the plotting libraries (seconds of imports) so the study's end does not wait on
    them; the recorder runs this in a background thread while the trials train."""
    try:
        _agg_backend()
        import matplotlib.pyplot  # noqa: F401
        import optuna.importance  # noqa: F401
        import optuna.visualization  # noqa: F401
        import optuna.visualization.matplotlib  # noqa: F401
        import plotly.graph_objects  # noqa: F401
    except Exception:  # noqa: BLE001 - the plots report what they miss when drawn
        logger.debug("plot libraries could not be imported ahead", exc_info=True)


def _importance_check(trials: list[FrozenTrial]) -> None:
    done = _need_complete(trials, 2)
    names = {name for t in done for name in t.params}
    if not names:
        raise PlotSkipped("the completed trials have no searched params")
    if len({t.value for t in done}) < 2:
        raise PlotSkipped("every completed trial has the same value")


_PNG_PLOTS: list[tuple[str, Callable[..., None]]] = [
    ("optimization_history", _history),
    ("lr_vs_final_loss", _lr_vs_loss),
    ("learning_curves", _curves),
    ("parallel_coordinates", _parallel),
    ("param_importances", _importances),
]


# -- plotly --------------------------------------------------------------------------------------
def _write_html(study: Any, trials: list[FrozenTrial], metric: str, path: Path, notes: list[str]) -> None:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise PlotSkipped("plotly is not installed (pip install plotly for interactive plots)") from None
    from optuna import visualization as vis

    figures: list[Any] = []

    def add(name: str, build: Callable[[], Any]) -> None:
        try:
            figures.append(build())
        except PlotSkipped as skip:
            notes.append(f"{name} (html): skipped, {skip}")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{name} (html): skipped, {type(exc).__name__}: {exc}")

    def history() -> Any:
        _need_complete(trials, 1)
        return vis.plot_optimization_history(study, target_name=metric)

    def lr_scatter() -> Any:
        fig = go.Figure()
        for kind in ("completed", "pruned"):
            pts = [(t, _lr(t), _final(t)) for t in trials if _kind(t) == kind]
            pts = [p for p in pts if p[1] is not None and p[2] is not None]
            if pts:
                fig.add_trace(go.Scatter(x=[p[1] for p in pts], y=[p[2] for p in pts], mode="markers", name=kind,
                                         text=[f"trial {p[0].number}" for p in pts],
                                         marker=dict(symbol="circle" if kind == "completed" else "circle-open")))
        if not fig.data:
            raise PlotSkipped("no trial with a learning rate has a final value yet")
        fig.update_xaxes(type="log", title="learning rate (log scale)")
        fig.update_yaxes(title=f"final {metric}")
        fig.update_layout(title=f"Learning rate vs final {metric}")
        return fig

    def curves() -> Any:
        fig = go.Figure()
        colors = {"completed": "#1f77b4", "pruned": "grey", "diverged": "red", "failed": "black", "running": "green"}
        for t in trials:
            xs, ys = _curve(t)
            if xs:
                kind = _kind(t)
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"trial {t.number} ({kind})",
                                         line=dict(color=colors[kind], dash="dash" if kind == "pruned" else "solid")))
        if not fig.data:
            raise PlotSkipped("no trial reported an epoch yet")
        fig.update_layout(title=f"Learning curves: {metric} per epoch", xaxis_title="epoch", yaxis_title=metric)
        return fig

    def parallel() -> Any:
        _need_complete(trials, 1)
        return vis.plot_parallel_coordinate(study, target_name=metric)

    def importances() -> Any:
        _importance_check(trials)
        return vis.plot_param_importances(study, target_name=metric)

    add("optimization_history", history)
    add("lr_vs_final_loss", lr_scatter)
    add("learning_curves", curves)
    add("parallel_coordinates", parallel)
    add("param_importances", importances)
    if not figures:
        raise PlotSkipped("no plot can be drawn yet")
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    title = f"Study {study.study_name}"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                    f"<body><h2>{title}</h2>{''.join(parts)}</body></html>", encoding="utf-8")


def lr_range_files(study: Any, study_name: str, folder: str | Path) -> list[Path]:
    """The LR range test's curve (plot and JSON) when ``lr_bounds: auto`` ran one."""
    import json

    from orchestrator.lr_range.plot import plot_lr_range
    from orchestrator.lr_range.result import LRRangeResult

    record = study.user_attrs.get(StudyAttr.LR_RANGE)
    if not record:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "lr_range_test.json"
    data.write_text(json.dumps(record, indent=1), encoding="utf-8")
    plot = Path(plot_lr_range(LRRangeResult.from_dict(record["result"]), folder / "lr_range_test.png",
                              title=f"LR range test: {study_name}"))
    return [plot, data]
