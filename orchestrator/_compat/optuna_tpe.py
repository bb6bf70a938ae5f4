"""Adapter: Optuna's TPE sampler with its per-suggest cost cut for studies of thousands of trials.

This module reaches into private names of Optuna's TPE (``TPESampler._sample``, ``_split``,
``_get_internal_repr``, ``optuna.samplers._tpe``...). It is used only with the Optuna versions in
:data:`CHECKED_OPTUNA_VERSIONS` (listed again in ``pyproject.toml`` under ``[tool.stepsize.compat]``)
and only while every private name it needs is there; otherwise :func:`tpe_sampler` returns the
stock ``optuna.samplers.TPESampler`` with the same arguments and warns once. The contract test
``tests/unit/compat/test_optuna_tpe_contract.py`` fails loudly when Optuna changes under it.

At 2,000 trials a stock ``TPESampler`` in its independent mode (stepsize's default) spends most
of a suggest on work that does not change what it draws:

- for every parameter it reads all trials from the storage again and splits them into the good
  (below) and the rest (above), though both are the same for all parameters of one trial;
- for every parameter it converts every past trial's value to its internal representation,
  though a finished trial's values never change;
- on integer parameters it evaluates the Gaussian log-CDF one element at a time in Python behind
  a 1,000-entry cache (``optuna.samplers._tpe._truncnorm._log_ndtr``), for tens of thousands of
  elements per suggest.

:class:`StudyTPESampler` reads and splits the trials once per trial (again after any ask or tell)
and keeps finished trials' internal values; :func:`use_vectorized_log_ndtr` swaps the log-CDF for
SciPy's vectorized ``scipy.special.log_ndtr`` (the same function, computed in C). The draws are
those of ``TPESampler`` with the same arguments and seed; a test holds them equal.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

try:  # private modules: a release that moves them leaves the stock sampler in use (adapter_problem)
    from optuna.samplers._tpe import _truncnorm
    from optuna.samplers._tpe import sampler as _tpe_module
except ImportError as exc:  # pragma: no cover - only on an Optuna release that was not checked
    _truncnorm = _tpe_module = None
    _IMPORT_PROBLEM: str | None = f"Optuna {optuna.__version__} has no optuna.samplers._tpe ({exc})"
else:
    _IMPORT_PROBLEM = None

from orchestrator._compat.tpe_split import FinishedTrials
from orchestrator.credentials import protected_logger

logger = protected_logger(__name__)

#: The Optuna releases this adapter was checked against (draws equal to stock TPE, contract test).
CHECKED_OPTUNA_VERSIONS = ("5.0.0",)
#: The private names it relies on: (owner, attribute).
PRIVATE_NAMES = (
    (optuna.samplers.TPESampler, "_sample"),
    (optuna.samplers.TPESampler, "_build_parzen_estimator"),
    (optuna.samplers.TPESampler, "_compute_acquisition_func"),
    (optuna.samplers.TPESampler, "_compare"),
    (optuna.samplers.TPESampler, "_get_internal_repr"),
    (optuna.samplers.TPESampler, "_get_params"),
    (optuna.Study, "_get_trials"),
    *(((_tpe_module, "_split_trials"), (_tpe_module, "_get_pruned_trial_score"), (_tpe_module, "default_gamma"),
       (_tpe_module, "default_gamma_multiobjective"), (_truncnorm, "_log_ndtr")) if _IMPORT_PROBLEM is None else ()),
)

_optuna_log_ndtr = getattr(_truncnorm, "_log_ndtr", None)  # Optuna's own, kept for comparison
_warned = False


def adapter_problem() -> str | None:
    """Why the adapter cannot be used with the installed Optuna, or None when it can."""
    if _IMPORT_PROBLEM is not None:
        return _IMPORT_PROBLEM
    if optuna.__version__ not in CHECKED_OPTUNA_VERSIONS:
        return f"Optuna {optuna.__version__} is not one it was checked against ({', '.join(CHECKED_OPTUNA_VERSIONS)})"
    missing = [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name in PRIVATE_NAMES if not hasattr(owner, name)]
    if missing:
        return f"Optuna {optuna.__version__} lacks {', '.join(missing)}"
    return None


def tpe_sampler(history: int | None = None, **kwargs: Any) -> optuna.samplers.TPESampler:
    """A :class:`StudyTPESampler` with ``kwargs`` (and ``history``) where the installed Optuna was
    checked, else the stock ``TPESampler`` (same draws, slower on long studies, every trial
    modelled whatever ``history`` says) after one warning."""
    global _warned
    problem = adapter_problem()
    if problem is None:
        return StudyTPESampler(history=history, **kwargs)
    if not _warned:
        _warned = True
        logger.warning("stepsize uses Optuna's stock TPESampler: %s. Suggestions are the same; each "
                       "costs more on studies of thousands of trials (and sampler.history is not applied).", problem)
    return optuna.samplers.TPESampler(**kwargs)


def _vectorized_log_ndtr(a: np.ndarray) -> np.ndarray:
    """log(Phi(a)) for an array, as ``_truncnorm._log_ndtr`` computes it, in one C call."""
    from scipy.special import log_ndtr  # imported once by use_vectorized_log_ndtr

    return np.asarray(log_ndtr(np.asarray(a, dtype=float)), dtype=float)


def use_vectorized_log_ndtr() -> None:
    """Compute TPE's Gaussian log-CDF with SciPy (idempotent; process-wide, same values)."""
    if _truncnorm._log_ndtr is not _vectorized_log_ndtr:
        import scipy.special  # noqa: F401  (here, not in the first suggest)

        _truncnorm._log_ndtr = _vectorized_log_ndtr


class StudyTPESampler(optuna.samplers.TPESampler):
    """``optuna.samplers.TPESampler`` that reads and splits the trials once per trial, not once
    per parameter, and remembers finished trials' internal values.

    Takes the same arguments and draws the same values for the same seed. The per-trial split is
    dropped at every ask and tell; between them only the driver's own suggests run (one driver
    per study), so no trial changes state while it is kept.

    ``history`` (stepsize's own argument; None: all trials, as stock TPE) bounds what TPE models
    on long studies: the good trials (below) are always chosen from every trial, the rest (above)
    are the ``history`` most recent ones, so a suggest costs the same at trial 10,000 as at
    ``history``. Stock TPE already weighs the older trials of ``above`` down (a linear ramp).
    """

    def __init__(self, *args: Any, history: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history = history
        self._past_startup: set[int] = set()  # studies with n_startup_trials finished trials (stays so)
        self._trial_split: tuple[tuple[int, int], list[FrozenTrial], list[FrozenTrial]] | None = None
        self._internal: dict[tuple, _InternalTable] = {}
        self._indexed: list[tuple[list[FrozenTrial], np.ndarray, np.ndarray]] = []  # kept lists, indexed
        self._finished: dict[int, FinishedTrials] = {}  # study id -> its finished trials, sorted for the split
        use_vectorized_log_ndtr()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._trial_split = None
        super().before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._trial_split = None
        finished = self._finished.get(study._study_id)
        if finished is not None:
            finished.told(trial)
        super().after_trial(study, trial, state, values)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # TPESampler.sample_independent counts the finished trials (a pass over all of them) for
        # every parameter; once there are n_startup_trials there always are.
        if self._multivariate is not False:
            return super().sample_independent(study, trial, param_name, param_distribution)
        if study._study_id not in self._past_startup:
            finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
            if len(finished) < self._n_startup_trials:
                return super().sample_independent(study, trial, param_name, param_distribution)
            self._past_startup.add(study._study_id)
        return self._sample(study, trial, {param_name: param_distribution})[param_name]

    def _sample(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # TPESampler._sample (optuna 5.0) with the trials and their split kept per trial.
        below_trials, above_trials = self._split(study, trial)
        mpe_below = self._build_parzen_estimator(study, search_space, below_trials, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above_trials, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _split(self, study: optuna.Study, trial: FrozenTrial) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Optuna's below/above split of the other trials, computed once per trial; for one
        objective without constraints from the finished trials kept sorted as they finish
        (:mod:`orchestrator._compat.tpe_split`), so only the running trials are read."""
        key = (study._study_id, trial.number)
        if self._trial_split is not None and self._trial_split[0] == key and self._constraints_func is None:
            return self._trial_split[1], self._trial_split[2]
        if self._gamma is None:
            self._gamma = _tpe_module.default_gamma if len(study.directions) <= 1 else _tpe_module.default_gamma_multiobjective
        if self._constraints_func is None and len(study.directions) == 1:
            finished = self._finished.get(study._study_id)
            if finished is None:
                finished = self._finished[study._study_id] = FinishedTrials(
                    study.direction == optuna.study.StudyDirection.MINIMIZE)
            finished.sync(study)
            running = []
            if self._constant_liar:
                running = [t for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False)
                           if t.number != trial.number]
            below, above = finished.split(self._gamma(len(finished.trials)), running, self._history)
        else:
            states = [TrialState.COMPLETE, TrialState.PRUNED]
            if self._constant_liar:
                states.append(TrialState.RUNNING)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
            if self._constant_liar:
                trials = [t for t in trials if trial.number != t.number]
            n = sum(t.state != TrialState.RUNNING for t in trials)  # running trials are not counted
            below, above = _tpe_module._split_trials(study, trials, self._gamma(n))
            if self._history is not None and len(above) > self._history:
                above = above[-self._history:]  # in number order: the most recent
        self._trial_split = (key, below, above)
        self._indexed = [(below, *_index(below)), (above, *_index(above))]
        return below, above

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: optuna.Study
    ) -> dict[str, np.ndarray]:
        # TPESampler._get_internal_repr with finished trials' values converted once and gathered
        # as arrays by trial number; unfinished (running) trials are converted each time.
        names = list(search_space)
        table = self._internal.setdefault((study._study_id, tuple(search_space.items())), _InternalTable(len(names)))
        numbers, finished = next(((n, f) for kept, n, f in self._indexed if kept is trials), None) or _index(trials)
        table.reserve(int(numbers.max()) + 1 if len(numbers) else 0)
        unknown = np.flatnonzero(finished & (table.status[numbers] == _UNKNOWN))
        for i in unknown:
            table.put(int(numbers[i]), self._row(trials[i], search_space, names, study))
        values = table.values[numbers]
        keep = finished & (table.status[numbers] == _HAS)
        for i in np.flatnonzero(~finished):
            row = self._row(trials[i], search_space, names, study)
            if row is not None:
                values[i], keep[i] = row, True
        values = values[keep]
        return {name: values[:, j].astype(np.int64) if isinstance(search_space[name], CategoricalDistribution)
                else values[:, j] for j, name in enumerate(names)}

    def _row(self, trial: FrozenTrial, search_space: dict[str, BaseDistribution], names: list[str],
             study: optuna.Study) -> tuple[float, ...] | None:
        params = self._get_params(trial, study)
        if not search_space.keys() <= params.keys():
            return None
        return tuple(search_space[name].to_internal_repr(params[name]) for name in names)


_UNKNOWN, _HAS, _MISSING_PARAM = 0, 1, 2


class _InternalTable:
    """Finished trials' internal values for one search space, one row per trial number."""

    def __init__(self, width: int):
        self.values = np.zeros((0, width))
        self.status = np.zeros(0, dtype=np.int8)

    def reserve(self, rows: int) -> None:
        if rows > len(self.status):
            size = max(rows, 2 * len(self.status), 64)
            values = np.zeros((size, self.values.shape[1]))
            values[: len(self.values)] = self.values
            status = np.zeros(size, dtype=np.int8)
            status[: len(self.status)] = self.status
            self.values, self.status = values, status

    def put(self, number: int, row: tuple[float, ...] | None) -> None:
        if row is None:
            self.status[number] = _MISSING_PARAM
        else:
            self.values[number], self.status[number] = row, _HAS


def _index(trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
    """The trials' numbers and which of them are finished, as arrays."""
    numbers = np.fromiter((t.number for t in trials), dtype=np.int64, count=len(trials))
    finished = np.fromiter((t.state.is_finished() for t in trials), dtype=bool, count=len(trials))
    return numbers, finished

