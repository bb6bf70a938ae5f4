"""The learning-rate range test: the ramp (:mod:`~orchestrator.lr_range.ramp`), the suggestion
rule (:mod:`~orchestrator.lr_range.suggest`), its plot, the test on a study's workload and the
``lr_bounds: auto`` narrowing of a study's LR range (:mod:`~orchestrator.lr_range.bounds`).
Names load on first use (the ramp imports torch)."""

from orchestrator._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.lr_range.result": ("LRRangeResult",),
    "orchestrator.lr_range.ramp": ("lr_range_test", "lr_schedule"),
    "orchestrator.lr_range.plot": ("plot_lr_range",),
    "orchestrator.lr_range.workload": ("run_lr_range_for_workload",),
    "orchestrator.lr_range.bounds": ("find_lr", "narrowed_spec"),
})
