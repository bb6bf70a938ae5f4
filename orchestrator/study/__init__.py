"""The Optuna side of a study (driver): its storage, the one-driver lock, summaries and the
samplers a study file can name. Names load on first use."""

from orchestrator._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.study.storage": ("create_study", "load_study", "make_storage"),
    "orchestrator.study.summary": ("StudySummary", "summarize"),
    "orchestrator.study.samplers": ("SAMPLERS", "build_sampler"),
})
