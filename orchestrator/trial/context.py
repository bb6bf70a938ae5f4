"""What a workload function receives besides its configuration: the trial's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from orchestrator.errors import TrialContextError
from orchestrator.keys import Result
from orchestrator.trial.divergence import DivergenceGuard


@dataclass
class TrialContext:
    """The running trial, as seen by a workload function ``fn(config, trial)``.

    Attributes:
        number: the Optuna trial number (stable across resumes).
        max_epochs: the most epochs this trial may train; the scheduler may stop it sooner.
        seed: a seed for this trial (the study seed plus the trial number).
        options: the study's ``workload_options``.
        cpus: CPUs reserved for the trial (torch's thread count is set to match).
        device: ``"cuda"`` when the trial was given a GPU, else ``"cpu"``.

    A workload that registers its state with :meth:`restore` is checkpointed after every epoch
    and continues where it stopped when its trial is resumed or retried.
    """

    number: int
    max_epochs: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    cpus: float = 1.0
    device: str = "cpu"
    _sink: Callable[[dict[str, Any]], None] | None = None
    epoch: int = 0
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)
    checkpointing: bool = False  # set by the trainable: report() then saves a checkpoint
    restore_from: str | None = None  # a checkpoint folder to continue from
    _objects: dict[str, Any] = field(default_factory=dict)
    _tune_exit: BaseException | None = None  # the SystemExit Ray Tune stopped the trial with

    def restore(self, **objects: Any) -> int:
        """Register what a checkpoint holds and load it when the trial continues; return the
        number of epochs already done (0 for a fresh trial).

        Pass the model, the optimizer, the LR schedule and any random generator the epoch loop
        uses, e.g. ``start = trial.restore(model=model, optimizer=opt, schedule=sched,
        generator=gen)``, then train epochs ``start + 1 .. max_epochs``. Every :meth:`report`
        saves them with the process's random-number generators; ``model`` is also kept whole, so
        the best trial's weights can be logged as an MLflow model.
        """
        from orchestrator.trial.checkpoints import read_checkpoint

        self._objects = dict(objects)
        if self.restore_from is None:
            return 0
        self.epoch = read_checkpoint(self.restore_from, self._checkpointed())
        return self.epoch

    def _checkpointed(self) -> dict[str, Any]:
        """What a checkpoint holds: the registered objects and the divergence guard."""
        return {**self._objects, "divergence_guard": self.guard}

    def check_loss(self, loss: Any) -> None:
        """Call with each batch's training loss (a float or a 0-d tensor).

        A NaN or infinite loss, or a smoothed loss above ``divergence.loss_factor`` times the
        first epoch's, stops the trial here, inside the epoch, and records it as diverged.
        """
        self.guard.check_batch(float(_plain(loss)), self.epoch + 1)

    def report(self, epoch: int | None = None, checkpoint_dir: str | None = None, **metrics: float) -> None:
        """Report one epoch's metrics (``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``...).

        Call once per epoch; ``epoch`` counts from 1 and defaults to the previous one plus one.
        The scheduler decides after each report whether the trial goes on; when it stops the
        trial this call does not return. A non-finite or exploding ``train_loss`` stops the trial
        as diverged.

        ``checkpoint_dir`` is for training code that writes its own checkpoint files (a training
        script, Lightning, Hugging Face): the folder's files are kept as this epoch's checkpoint,
        and :meth:`resume_dir` hands them back when the trial continues. Without it, the objects
        registered with :meth:`restore` are checkpointed.
        """
        epoch = self.epoch + 1 if epoch is None else int(epoch)
        clean: dict[str, Any] = {key: _plain(value) for key, value in metrics.items()}
        self.guard.check_epoch(clean.get("train_loss"), epoch)
        if self._sink is None:
            raise TrialContextError("TrialContext.report called outside a running trial")
        self.epoch = epoch
        if self.checkpointing and checkpoint_dir is not None:
            from orchestrator.trial.checkpoints import mark_files_checkpoint

            mark_files_checkpoint(checkpoint_dir, self.number, epoch)
            self._send({Result.EPOCH: epoch, **clean}, str(checkpoint_dir))
            return
        if not self.checkpointing or not self._objects:
            self._send({Result.EPOCH: epoch, **clean})
            return
        import tempfile

        from orchestrator.trial.checkpoints import write_checkpoint

        with tempfile.TemporaryDirectory(prefix="stepsize-ckpt-") as folder:
            write_checkpoint(folder, self._checkpointed(), self.number, epoch)
            self._send({Result.EPOCH: epoch, **clean}, folder)

    def _send(self, *report: Any) -> None:
        """Hand a report to the sink. Ray Tune stops a trial by raising ``SystemExit(0)`` inside
        its report call: that one is remembered (:meth:`stopped_by_tune`) and must reach Ray Tune,
        unlike a ``sys.exit()`` of the workload's own."""
        try:
            self._sink(*report)  # type: ignore[misc]
        except SystemExit as exc:
            self._tune_exit = exc
            raise

    def stopped_by_tune(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the ``SystemExit`` Ray Tune raised from a report to stop the trial."""
        return exc is self._tune_exit

    def resume_dir(self) -> str | None:
        """The checkpoint folder this trial continues from (files reported with
        ``report(checkpoint_dir=...)``), or None for a fresh trial; sets :attr:`epoch` to the
        epoch it was taken after, so the next report continues the count."""
        if self.restore_from is None:
            return None
        from orchestrator.trial.checkpoints import checkpoint_meta

        self.epoch = int(checkpoint_meta(self.restore_from)["epoch"])
        return self.restore_from


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to Python numbers; everything else as given."""
    return value.item() if hasattr(value, "item") else value
