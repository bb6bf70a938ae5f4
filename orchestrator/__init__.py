"""stepsize: tune how a network learns (learning rate, batch size, momentum, optimizer and
schedule) with Optuna's samplers, Ray Tune's trials and schedulers, and MLflow's records."""

from orchestrator.api import best, launch, status
from orchestrator.context import TrialContext
from orchestrator.errors import SpecError, StudyNotFoundError
from orchestrator.spec import StudySpec, load_spec, spec_from_mapping
from orchestrator.study import StudySummary
from orchestrator.training import build_optimizer, build_scheduler, scaled_learning_rate

__version__ = "0.1.0"

__all__ = [
    "SpecError",
    "StudyNotFoundError",
    "StudySpec",
    "StudySummary",
    "TrialContext",
    "best",
    "build_optimizer",
    "build_scheduler",
    "launch",
    "load_spec",
    "scaled_learning_rate",
    "spec_from_mapping",
    "status",
]
