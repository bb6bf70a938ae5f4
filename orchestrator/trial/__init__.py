"""Everything inside a trial's worker process: the trainable Ray Tune runs, the context a
workload reports through, checkpoints, the divergence guard and DDP trials. Nothing here imports
the driver's side (``run/``, ``study/``, ``tracking/``)."""

from orchestrator.trial.context import TrialContext

__all__ = ["TrialContext"]
