"""Tune a PyTorch Lightning module: stepsize's reporting, pruning, divergence guard and per-epoch
checkpoints as a Lightning callback (``pip install 'stepsize[lightning]'``).

A workload ``train(config, trial)`` builds its module and a Trainer with :func:`trainer_kwargs`,
adds a :class:`StepsizeCallback` and fits from :meth:`StepsizeCallback.resume_checkpoint`::

    callback = StepsizeCallback(trial, {"val/loss": "val_loss"})
    trainer = pl.Trainer(**trainer_kwargs(trial, callbacks=[callback]))  # seeds: build the model after
    model = MyModule(config)  # its configure_optimizers: return configure_optimizers(self, self.config)
    trainer.fit(model, train_loader, val_loader, ckpt_path=callback.resume_checkpoint())

See ``docs/lightning.md``.
"""

from __future__ import annotations

import logging
import math
import numbers
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from orchestrator.errors import LightningMissing, TrialConfigError
from orchestrator.keys import Result
from orchestrator.training.optimizers import build_optimizer
from orchestrator.training.schedules import build_scheduler
from orchestrator.trial.checkpoints import MODEL_FILE
from orchestrator.trial.context import TrialContext

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Checkpoint
except ImportError as exc:
    raise LightningMissing(
        f"orchestrator.integrations.lightning needs PyTorch Lightning, which cannot be imported here ({exc}). "
        "Install it with: pip install 'stepsize[lightning]'"
    ) from exc

__all__ = ["CHECKPOINT_FILE", "StepsizeCallback", "configure_optimizers", "trainer_kwargs"]

CHECKPOINT_FILE = "last.ckpt"  # the Lightning checkpoint in each epoch's checkpoint folder
LR_KEY = "lr"
_NOT_METRICS = frozenset({Result.EPOCH, "checkpoint_dir"})  # report()'s own arguments
_FORK_SUFFIXES = ("_step", "_epoch")  # self.log(on_step=True, on_epoch=True) adds both beside the name

logger = logging.getLogger(__name__)


class StepsizeCallback(Checkpoint):
    """Reports each epoch to stepsize, lets the scheduler stop the fit, guards divergence per
    batch and checkpoints every epoch so a resumed or retried trial continues.

    Args:
        trial: the workload's :class:`~orchestrator.trial.context.TrialContext`.
        names: Lightning's metric names to stepsize's (``{"val/loss": "val_loss"}``); names not in
            it are reported as logged.
        only_named: report only the metrics in ``names`` (and ``lr``).
        checkpoint: save ``last.ckpt`` (and ``model.pt``) each epoch when the trial checkpoints.
        save_model: also keep the whole module as ``model.pt``, so the best trial's weights are
            logged as an MLflow model (skipped, with one warning, if the module cannot be pickled).

    At the end of every training epoch in which validation ran (every epoch when the fit has no
    validation), it calls ``trial.report(epoch=trainer.current_epoch + 1, ...)`` with the
    ``trainer.callback_metrics`` that are numbers, plus ``lr``: the learning rate of the epoch's
    last batch (first optimizer, first parameter group) unless a metric already has that name.
    When the scheduler stops the trial, ``report`` raises ``SystemExit``; Lightning tears the fit
    down and re-raises it, and the trial ends PRUNED. A non-finite or exploding batch loss (the
    ``loss`` ``training_step`` returns) raises :class:`~orchestrator.errors.TrialDiverged` the same
    way. It is a Lightning ``Checkpoint`` callback, so it runs after the module's own
    ``on_train_epoch_end`` (metrics logged there are reported) and Lightning adds no
    ``ModelCheckpoint`` of its own. Its state in a Lightning checkpoint is the process's random
    generators and the divergence guard's reference, so a resumed fit draws the batches the
    uninterrupted one would have and keeps its divergence threshold.
    """

    def __init__(
        self,
        trial: TrialContext,
        names: Mapping[str, str] | None = None,
        *,
        only_named: bool = False,
        checkpoint: bool = True,
        save_model: bool = True,
    ) -> None:
        super().__init__()
        self.trial = trial
        self.names = dict(names or {})
        self.only_named = only_named
        self.checkpoint = checkpoint
        self.save_model = save_model
        self._validated = False
        self._lr: float | None = None
        self._model_unpicklable = False

    def resume_checkpoint(self) -> str | None:
        """The Lightning checkpoint to continue from (``trainer.fit(..., ckpt_path=...)``): the
        ``last.ckpt`` of the trial's resume folder, or None for a fresh trial."""
        folder = self.trial.resume_dir()
        if folder is None:
            return None
        path = Path(folder) / CHECKPOINT_FILE
        if not path.is_file():  # not a checkpoint of this callback: start from epoch 1
            self.trial.epoch = 0
            return None
        return str(path)

    def metrics(self, trainer: "pl.Trainer") -> dict[str, float]:
        """What the next report holds: the trainer's numeric ``callback_metrics`` (renamed by
        ``names``, without the ``_step``/``_epoch`` copies of a metric logged both ways) and ``lr``."""
        logged = trainer.callback_metrics
        out: dict[str, float] = {}
        for name, value in logged.items():
            if name not in self.names and (self.only_named or _forked(name, logged)):
                continue
            number = _number(value)
            key = self.names.get(name, name)
            if number is not None and key not in _NOT_METRICS:
                out[key] = number
        if LR_KEY not in out and self._lr is not None:
            out[LR_KEY] = self._lr
        return out

    # -- Lightning hooks ----------------------------------------------------------------------

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if trainer.world_size > 1:
            raise TrialConfigError(
                f"StepsizeCallback reports from the trial's own process; this Trainer runs {trainer.world_size} "
                "processes. Give it one device (devices=1, as trainer_kwargs(trial) does)."
            )

    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any,
                             batch_idx: int) -> None:
        if trainer.optimizers:
            self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if (isinstance(loss, torch.Tensor) and loss.numel() == 1) or isinstance(loss, numbers.Real):
            self.trial.check_loss(loss)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not (self._validated or not trainer.enable_validation):
            return  # check_val_every_n_epoch > 1: report with the next validation
        self._validated = False
        metrics = self.metrics(trainer)
        epoch = trainer.current_epoch + 1
        if not (self.checkpoint and self.trial.checkpointing):
            self.trial.report(epoch=epoch, **metrics)
            return
        with tempfile.TemporaryDirectory(prefix="stepsize-lightning-") as folder:
            self._save(trainer, pl_module, Path(folder))
            self.trial.report(epoch=epoch, checkpoint_dir=folder, **metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(), "divergence_guard": self.trial.guard.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            _set_rng_state(state_dict["rng"])
        if "divergence_guard" in state_dict:
            self.trial.guard.load_state_dict(state_dict["divergence_guard"])

    def _save(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", folder: Path) -> None:
        trainer.save_checkpoint(folder / CHECKPOINT_FILE, weights_only=False)
        if not self.save_model or self._model_unpicklable:
            return
        try:
            torch.save(pl_module, folder / MODEL_FILE)
        except Exception as exc:  # noqa: BLE001 - a module that cannot be pickled only loses model.pt
            self._model_unpicklable = True
            (folder / MODEL_FILE).unlink(missing_ok=True)
            logger.warning("%s cannot be pickled (%s): the trial's checkpoints hold no model.pt, so its weights "
                           "will not be logged as an MLflow model", type(pl_module).__name__, exc)


def configure_optimizers(
    module: "pl.LightningModule",
    config: Mapping[str, Any],
    *,
    monitor: str = "val_loss",
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """What ``LightningModule.configure_optimizers`` returns for the trial's searched optimizer
    and LR schedule (:func:`~orchestrator.training.optimizers.build_optimizer`,
    :func:`~orchestrator.training.schedules.build_scheduler`).

    ``{"optimizer": ...}``, plus an ``lr_scheduler`` dict stepped each optimizer step
    (``interval: step``) or each epoch (``interval: epoch``); ``plateau`` watches ``monitor``, the
    name of the validation loss as the module logs it. ``steps_per_epoch`` (optimizer steps, after
    gradient accumulation) and ``epochs`` default to the attached Trainer's.
    """
    optimizer = build_optimizer(config, module)
    if epochs is None or steps_per_epoch is None:
        trainer = _attached_trainer(module)
        if epochs is None:
            epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        if steps_per_epoch is None:
            steps_per_epoch = _steps_per_epoch(trainer)
    schedule = build_scheduler(config, optimizer, steps_per_epoch, epochs)
    if schedule.scheduler is None or schedule.granularity == "none":
        return {"optimizer": optimizer}
    scheduler: dict[str, Any] = {
        "scheduler": schedule.scheduler,
        "interval": "step" if schedule.granularity == "batch" else "epoch",
        "frequency": 1,
        "name": f"{schedule.name}_schedule",
    }
    if isinstance(schedule.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.update(monitor=monitor, strict=True)
    return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _attached_trainer(module: "pl.LightningModule") -> "pl.Trainer":
    try:
        return module.trainer
    except RuntimeError:
        raise TrialConfigError(
            "configure_optimizers(module, config) outside Trainer.fit: pass steps_per_epoch= and epochs="
        ) from None


def _steps_per_epoch(trainer: "pl.Trainer") -> int:
    """Optimizer steps per epoch of ``trainer``'s training data (loads it when not loaded yet)."""
    _ = trainer.estimated_stepping_batches  # sets the training data up
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches < 1:
        raise TrialConfigError(
            f"the training data has {batches} batches per epoch; pass configure_optimizers(..., steps_per_epoch=N)"
        )
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def trainer_kwargs(
    trial: TrialContext,
    callbacks: Iterable["pl.Callback"] = (),
    *,
    quiet: bool = True,
    seed: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``lightning.pytorch.Trainer`` running this trial.

    ``max_epochs=trial.max_epochs``, one device of ``trial.device``, the given ``callbacks``, no
    Lightning logger (stepsize records the metrics in MLflow), no sanity-check validation and no
    checkpointing but the callbacks' own. With ``quiet`` no progress bar or model summary either,
    and Lightning's informational log lines and its "few dataloader workers" warnings are silenced
    in this worker process. With ``seed`` every random generator is seeded with ``trial.seed``
    (``seed_everything``): call it before building the model. ``overrides`` win.
    """
    if seed:
        pl.seed_everything(trial.seed, workers=True, verbose=False)
    if quiet:
        _quiet_lightning()
    callbacks = list(callbacks)
    kwargs: dict[str, Any] = {
        "max_epochs": trial.max_epochs,
        "accelerator": "gpu" if trial.device == "cuda" else "cpu",
        "devices": 1,
        "callbacks": callbacks,
        "logger": False,
        "enable_checkpointing": any(isinstance(c, Checkpoint) for c in callbacks),
        "enable_progress_bar": not quiet,
        "enable_model_summary": not quiet,
        "num_sanity_val_steps": 0,
    }
    kwargs.update(overrides)
    return kwargs


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def _rng_state() -> dict[str, Any]:
    """The process's random generators in types ``torch.load(weights_only=True)`` reads back
    (Lightning's default when ``fit(ckpt_path=...)`` loads a checkpoint)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _forked(name: str, logged: Mapping[str, Any]) -> bool:
    """``name`` is the ``_step`` or ``_epoch`` copy of a metric logged both ways."""
    return any(name.endswith(suffix) and name[: -len(suffix)] in logged for suffix in _FORK_SUFFIXES)


def _number(value: Any) -> float | None:
    """A scalar metric as a float; None for anything else (a vector, a string, a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None
