"""The best trial's weights as an MLflow model on its run.

Trials checkpoint their model every epoch (see :mod:`orchestrator.trial.checkpoints`); at the study's
end the driver loads the best trial's newest checkpoint and logs the model with MLflow's PyTorch
flavour on that trial's run, then tags the run and the study's parent run with the model's URI.
A workload that registers no model with ``trial.restore(model=...)``, or whose model cannot be
pickled, gets no logged model (a note on the parent run says so).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from orchestrator.credentials import connectable, protected_logger
from orchestrator.keys import Tag
from orchestrator.trial.checkpoints import (
    find_checkpoints,
    latest_checkpoint,
    load_model,
    local_study_folder,
)

logger = protected_logger("orchestrator.tracking")

ARTIFACT_NAME = "model"


_import_lock = threading.Lock()


def import_flavour() -> None:
    """Import ``mlflow.pytorch`` leaving the root logger as it was (its import calls
    ``logging.basicConfig(level=ERROR)``, which would change the process's logging behind its back)."""
    with _import_lock:
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        try:
            import mlflow.pytorch  # noqa: F401
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers


def best_checkpoint(spec: Any, number: int) -> str | None:
    """The newest checkpoint folder of trial ``number``, or None."""
    folder = local_study_folder(spec)
    if folder is None:
        return None
    found = latest_checkpoint(find_checkpoints(folder).get(number, []))
    return found[1] if found else None


def log_best_model(tracking_uri: str, run_id: str, checkpoint: str) -> str | None:
    """Log the model in ``checkpoint`` on run ``run_id``; return its model URI (None: no model)."""
    model = load_model(checkpoint)
    if model is None:
        return None
    import_flavour()
    import mlflow
    import mlflow.pytorch
    import torch

    version = torch.__version__.split("+")[0]
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its pickle-format notice
    previous = mlflow.get_tracking_uri()
    uri = connectable(tracking_uri, "tracking_uri")
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        run = client.get_run(run_id).info
        try:
            with mlflow.start_run(run_id=run_id):
                # Pickle keeps any nn.Module loadable without an input example to trace.
                info = mlflow.pytorch.log_model(model, name=ARTIFACT_NAME, serialization_format="pickle",
                                                pip_requirements=[f"torch=={version}"])
        finally:
            client.set_terminated(run_id, status=run.status, end_time=run.end_time)  # the trial's own end
        client.set_tag(run_id, Tag.MODEL_URI, info.model_uri)
        return info.model_uri
    finally:
        mlflow.set_tracking_uri(previous)


class BestModelLogging:
    """The best model being logged in a thread of its own; :meth:`join` gives its model URI."""

    def __init__(self, log: Callable[[], str | None], run_id: str):
        self.run_id = run_id
        self._log = log
        self._uri: str | None = None
        self._thread = threading.Thread(target=self._run, name="stepsize-best-model", daemon=True)

    def start(self) -> "BestModelLogging":
        self._thread.start()
        return self

    def join(self) -> str | None:
        self._thread.join()
        return self._uri

    def _run(self) -> None:
        try:
            self._uri = self._log()
        except Exception:  # noqa: BLE001 - recording never fails a study
            logger.warning("the best trial's model could not be logged to MLflow", exc_info=True)
