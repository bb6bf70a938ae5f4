"""The study file: its schema (:mod:`~orchestrator.spec.model`), loading and validation
(:mod:`~orchestrator.spec.load`), the components it names (:mod:`~orchestrator.spec.components`)
and the checks behind its error messages (:mod:`~orchestrator.spec.checks`). Names load on first
use."""

from orchestrator._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.spec.components": ("Choice", "Component"),
    "orchestrator.spec.load": ("load_spec", "spec_from_mapping", "with_overrides"),
    "orchestrator.spec.model": (
        "DEFAULT_RESULTS_DIR", "DEFAULT_STORAGE", "DEFAULT_TRACKING_URI", "Budget", "Divergence", "Failures",
        "LRScaling", "Objective", "Resources", "StudySpec",
    ),
})
