"""A model fitted per rung: under an early-stopping scheduler, TPE also learns from the trials'
values at the highest well-filled rung, as BOHB fits its model per budget.

Under ASHA most trials end at a low rung, so Optuna's TPE on the study itself ranks trials that
stopped at different epochs by the epoch they reached. :class:`RungModelSampler` adds a second
TPE (multivariate) fitted on a *rung view* of the study: every trial that reported the objective at
epoch ``s``, with its value there, where ``s`` is the highest epoch at least ``min_trials`` trials
reached; trials still running and short of ``s`` are in the view as running, so the view's
constant liar spreads concurrent proposals. Until the view has ``min_trials`` trials at any epoch
(and before ``after`` of the budget is spent), the study's own TPE proposes. A share
``local_moves`` of the rung model's proposals are instead local moves from the view's best trials
(:mod:`~orchestrator.study.samplers.local_moves`), as SMAC's local search steps from its
incumbents: they reach the edges of the space, where TPE's truncated kernels seldom sample.

Everything goes through Optuna's public API: the view is an in-memory study filled with
``optuna.trial.create_trial``; the study's own sampler keeps seeing every trial (its hooks are
always called), so it resumes cleanly and answers every parameter while the view is too thin.
Evidence: docs/search_quality.md, "A model per rung".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from orchestrator.study.samplers.local_moves import LOCAL_SCALE, local_move

if TYPE_CHECKING:
    from optuna import Study

#: ``study -> share of its budget spent`` (0 at the start, 1 when the budget is gone).
Progress = Callable[["Study"], float]
_VIEW = "rung-view"


def epochs_reported(study: "Study") -> int:
    """The epochs the study's trials reported (one intermediate value each)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def rung_view(study: "Study", min_trials: int, recent: int | None = None) -> tuple["Study", int] | None:
    """An in-memory copy of ``study`` at the highest epoch ``s`` that ``min_trials`` of its trials
    (the ``recent`` latest ones; None: all) reported: those trials COMPLETE with their value at
    ``s``, running trials short of ``s`` RUNNING with their parameters; None while no epoch has
    ``min_trials`` trials."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL and t.params]
    if recent is not None:
        trials = trials[-recent:]
    reached: dict[int, int] = {}
    for t in trials:
        for step, value in t.intermediate_values.items():
            if math.isfinite(value):
                reached[step] = reached.get(step, 0) + 1
    steps = [s for s, n in reached.items() if n >= min_trials]
    if not steps:
        return None
    step = max(steps)
    frozen = []
    for t in trials:
        value = t.intermediate_values.get(step)
        if value is not None and math.isfinite(value):
            frozen.append(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value))
        elif t.state == TrialState.RUNNING:
            frozen.append(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                    state=TrialState.RUNNING))
    storage = optuna.storages.InMemoryStorage()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per view otherwise
    try:
        storage.create_new_study(study.directions, _VIEW)
    finally:
        optuna.logging.set_verbosity(verbosity)
    view = optuna.Study(_VIEW, storage, sampler=optuna.samplers.RandomSampler())
    view.add_trials(frozen)
    return view, step


class RungModelSampler(BaseSampler):
    """``start`` (the study's TPE) until ``progress(study)`` reaches ``after`` and the rung view
    (:func:`rung_view`) has ``min_trials`` trials; then ``rung_model`` fitted on that view proposes
    every parameter (jointly where the view's trials share them), or, for a share ``local_moves``
    of its proposals (drawn with ``seed``), a local move from the view's best trials."""

    def __init__(self, start: BaseSampler, rung_model: BaseSampler, *, min_trials: int, after: float = 0.0,
                 progress: Progress | None = None, recent: int | None = None, local_moves: float = 0.0,
                 seed: int | None = None) -> None:
        self.start = start
        self.rung_model = rung_model
        self.min_trials = min_trials
        self.after = after
        self._progress = progress
        self.recent = recent
        self.local_moves = local_moves
        self._rng = np.random.default_rng(seed)
        self._space = IntersectionSearchSpace(include_pruned=True)
        self._reached = False  # the budget's share ``after`` is spent
        self._modelled: set[int] = set()  # numbers of the running trials the rung model may propose
        # trial number -> its view, the trial in it, and the view's epoch, while the trial runs
        self._views: dict[int, tuple["Study", FrozenTrial, int]] = {}
        self.rung_proposals = 0  # trials whose parameters came from the rung model
        self.local_proposals = 0  # of those, the local moves
        self.last_rung: int | None = None  # the epoch of the last view the rung model was fitted on

    def proposing_rung(self, number: int) -> int | None:
        """The epoch of the rung whose results the rung model was fitted on to propose running
        trial ``number``; None when the study's TPE proposed it."""
        entry = self._views.get(number)
        return entry[2] if entry is not None else None

    def reseed_rng(self) -> None:
        self.start.reseed_rng()
        self.rung_model.reseed_rng()
        self._rng = np.random.default_rng()

    def before_trial(self, study: "Study", trial: FrozenTrial) -> None:
        self.start.before_trial(study, trial)
        if not self._reached:  # the share spent only grows: once reached, stop recounting it per trial
            self._reached = self.after <= 0 or self._progress is None or self._progress(study) >= self.after
        if self._reached:
            self._modelled.add(trial.number)

    def infer_relative_search_space(self, study: "Study", trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial.number not in self._modelled:
            return self.start.infer_relative_search_space(study, trial)
        return {n: d for n, d in self._space.calculate(study).items() if not d.single()}

    def sample_relative(self, study: "Study", trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number not in self._modelled:
            return self.start.sample_relative(study, trial, search_space)
        built = rung_view(study, self.min_trials, self.recent) if search_space else None
        if built is None:  # no rung has enough trials yet: the study's TPE answers, as before
            return self.start.sample_relative(study, trial, self.start.infer_relative_search_space(study, trial))
        view, self.last_rung = built
        view.ask()  # the trial being sampled, for the rung model to attach its draws to
        self._views[trial.number] = (view, view.get_trials(deepcopy=False)[-1], self.last_rung)
        self.rung_proposals += 1
        if self.local_moves > 0 and self._rng.random() < self.local_moves:
            moved = local_move(view, search_space, self._rng, LOCAL_SCALE)
            if moved is not None:
                self.local_proposals += 1
                return moved
        return self.rung_model.sample_relative(view, self._views[trial.number][1], search_space)

    def sample_independent(self, study: "Study", trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if trial.number in self._views:  # a parameter outside the joint space (conditional): from the view too
            view, current, _ = self._views[trial.number]
            return self.rung_model.sample_independent(view, current, param_name, param_distribution)
        return self.start.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: "Study", trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._modelled.discard(trial.number)
        self._views.pop(trial.number, None)
        self.start.after_trial(study, trial, state, values)
