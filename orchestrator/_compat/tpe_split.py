"""TPE's below/above split of a study's trials, kept up to date trial by trial instead of rebuilt
from every trial at every suggest (part of the TPE adapter, :mod:`orchestrator._compat.optuna_tpe`).

Optuna 5.0's ``_split_trials`` for one objective without constraints puts below the best
``n_below`` COMPLETE trials (by value) and, if there are fewer, the best PRUNED ones (by the step
they reached, then their last intermediate value: ``_get_pruned_trial_score``), ties in trial
order; everything else, running trials included with constant liar, is above, in trial order.
:class:`FinishedTrials` keeps the finished trials' sort keys in sorted lists as trials finish, so
the split costs the size of ``above`` it hands out (``history``) rather than the study's length.
"""

from __future__ import annotations

from bisect import insort
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

try:  # private module: the adapter falls back to stock TPE when it moves (optuna_tpe.adapter_problem)
    from optuna.samplers._tpe import sampler as _tpe_module
except ImportError:  # pragma: no cover - only on an Optuna release that was not checked
    _tpe_module = None

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class FinishedTrials:
    """A study's COMPLETE and PRUNED trials with TPE's sort keys, in sorted lists.

    Filled from the storage once (:meth:`sync` the first time), then from the trials the sampler
    was told about (:meth:`told`, from ``after_trial``), read back once finished.
    """

    def __init__(self, minimize: bool):
        self.minimize = minimize
        self.trials: dict[int, FrozenTrial] = {}  # number -> the finished trial
        self.numbers: list[int] = []  # finished trial numbers, ascending
        self.complete: list[tuple[float, int]] = []  # (value, or -value when maximising; number)
        self.pruned: list[tuple[tuple[float, float], int]] = []  # (_get_pruned_trial_score; number)
        self.synced = False
        self._told: list[int] = []  # trial ids told since the last sync

    def told(self, trial: FrozenTrial) -> None:
        """``trial`` is being told (its new state is written after this)."""
        if self.synced:
            self._told.append(trial._trial_id)

    def sync(self, study: optuna.Study) -> None:
        """Take in the trials that finished since the last call."""
        if not self.synced:
            for trial in study._get_trials(deepcopy=False, states=_FINISHED, use_cache=False):
                self._add(trial, study)
            self.synced = True
            return
        waiting = []
        for trial_id in self._told:
            trial = study._storage.get_trial(trial_id)
            if trial.state in _FINISHED:
                self._add(trial, study)
            elif not trial.state.is_finished():
                waiting.append(trial_id)  # its state is not written yet: look again next time
        self._told = waiting

    def _add(self, trial: FrozenTrial, study: optuna.Study) -> None:
        number = trial.number
        if number in self.trials:
            return
        self.trials[number] = trial
        insort(self.numbers, number)
        if trial.state == TrialState.COMPLETE:
            value = float(trial.value)  # type: ignore[arg-type]
            insort(self.complete, (value if self.minimize else -value, number))
        else:
            insort(self.pruned, (_tpe_module._get_pruned_trial_score(trial, study), number))

    def split(self, n_below: int, running: list[FrozenTrial],
              history: int | None) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Below and above, as ``_split_trials`` gives them for these finished trials and
        ``running``; above keeps only its ``history`` most recent trials (None: all)."""
        best = [number for _, number in self.complete[:n_below]]
        best += [number for _, number in self.pruned[:max(0, n_below - len(best))]]
        chosen = set(best)
        below = [self.trials[number] for number in sorted(best)]
        by_number: dict[int, Any] = {t.number: t for t in running}
        finished = self.numbers if history is None else self.numbers[-(history + len(chosen)):]
        above_numbers = sorted([n for n in finished if n not in chosen] + list(by_number))
        if history is not None:
            above_numbers = above_numbers[-history:]
        above = [by_number[n] if n in by_number else self.trials[n] for n in above_numbers]
        return below, above
