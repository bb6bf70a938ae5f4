"""stepsize: tune how a network learns (learning rate, batch size, momentum, optimizer and
schedule) with Optuna's samplers, Ray Tune's trials and schedulers, and MLflow's records.

Importing the package is cheap: each public name loads its module on first use.
"""

from orchestrator._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.api": ("best", "launch", "resume", "status"),
    "orchestrator.errors": ("SpecError", "StepsizeError", "StudyNotFoundError"),
    "orchestrator.spec": ("StudySpec", "load_spec", "spec_from_mapping"),
    "orchestrator.study.summary": ("StudySummary",),
    "orchestrator.trial.context": ("TrialContext",),
    "orchestrator.training.optimizers": ("build_optimizer",),
    "orchestrator.training.schedules": ("build_scheduler",),
    "orchestrator.training.lr_scaling": ("scaled_learning_rate",),
})
