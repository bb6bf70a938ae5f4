"""Optuna's TPE sampler with its per-suggest cost cut for studies of thousands of trials.

At 2,000 trials a stock ``TPESampler`` in its independent mode (stepsize's default) spends most
of a suggest on two things that do not change what it draws:

- it splits all trials into the good (below) and the rest (above) again for every parameter,
  though the split is the same for all parameters of one trial;
- on integer parameters it evaluates the Gaussian log-CDF one element at a time in Python behind
  a 1,000-entry cache (``optuna.samplers._tpe._truncnorm._log_ndtr``), for tens of thousands of
  elements per suggest.

:class:`StudyTPESampler` reuses a split while the set of trials and their states are unchanged
(finished trials never change; running ones always go above), and :func:`use_vectorized_log_ndtr`
swaps the log-CDF for SciPy's vectorized ``scipy.special.log_ndtr`` (the same function, computed
in C). Draws are those of ``TPESampler`` with the same arguments and seed; a test holds them equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe import sampler as _tpe_module
from optuna.trial import FrozenTrial, TrialState

_Split = tuple[list[FrozenTrial], list[FrozenTrial]]
_optuna_log_ndtr = _truncnorm._log_ndtr  # Optuna's own, kept for comparison


def _vectorized_log_ndtr(a: np.ndarray) -> np.ndarray:
    """log(Phi(a)) for an array, as ``_truncnorm._log_ndtr`` computes it, in one C call."""
    from scipy.special import log_ndtr

    return np.asarray(log_ndtr(np.asarray(a, dtype=float)), dtype=float)


def use_vectorized_log_ndtr() -> None:
    """Compute TPE's Gaussian log-CDF with SciPy (idempotent; process-wide, same values)."""
    if _truncnorm._log_ndtr is not _vectorized_log_ndtr:
        _truncnorm._log_ndtr = _vectorized_log_ndtr


class StudyTPESampler(optuna.samplers.TPESampler):
    """``optuna.samplers.TPESampler`` that splits the trials once per trial, not once per parameter.

    Takes the same arguments and draws the same values for the same seed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_split: tuple[tuple, _Split] | None = None
        use_vectorized_log_ndtr()

    def _sample(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # TPESampler._sample (optuna 5.0) with the split reused; everything else as it was.
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        if self._constant_liar:
            trials = [t for t in trials if trial.number != t.number]
        if self._gamma is None:
            self._gamma = _tpe_module.default_gamma if len(study.directions) <= 1 else _tpe_module.default_gamma_multiobjective
        n = sum(t.state != TrialState.RUNNING for t in trials)
        below_trials, above_trials = self._split(study, trials, self._gamma(n))

        mpe_below = self._build_parzen_estimator(study, search_space, below_trials, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above_trials, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _split(self, study: optuna.Study, trials: list[FrozenTrial], n_below: int) -> _Split:
        """Optuna's below/above split, reused while no trial was added or changed state."""
        if self._constraints_func is not None:  # constraint values can arrive after a trial ends
            return _tpe_module._split_trials(study, trials, n_below)
        key = (study._study_id, n_below, tuple((t.number, t.state) for t in trials))
        if self._last_split is not None and self._last_split[0] == key:
            return self._last_split[1]
        split = _tpe_module._split_trials(study, trials, n_below)
        self._last_split = (key, split)
        return split
