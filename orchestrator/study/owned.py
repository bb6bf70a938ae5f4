"""The driver's view of the study it owns: its trials kept in memory, every write still committed.

Only the driver writes to its study while it runs (:mod:`~orchestrator.study.driver_lock` keeps a
second driver out; trials report to Ray Tune, never to the storage). Optuna's own cache
(``optuna.storages._CachedStorage``) cannot know that: it reads every unfinished trial again, with
its parameters, intermediate values and attributes, on every ``get_all_trials``, and ``ask`` and
TPE call that three times a trial. With 16 trials running on SQLite that was 19 ms a read, most of
a suggest (docs/benchmarks.md, "A driver that keeps up").

:class:`OwnedStudyStorage` sits in front of the study's storage for one run. Every write goes to
the storage first, through Optuna's public :class:`~optuna.storages.BaseStorage` interface, exactly
as before (so what is committed, and what ``stepsize status`` or a resume reads, is unchanged); only
once it returned is the same change applied to the in-memory copy. Reads of the owned study's
trials are answered from that copy. A trial's creation and its end are read back from the storage
once (the storage sets its number and timestamps). Everything else, other studies included, is
passed through.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any, Container, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState


class OwnedStudyStorage(optuna.storages.BaseStorage):
    """``inner`` with the trials of study ``study_id`` kept in memory (see the module docstring).

    Only valid while nothing but this object writes to that study: the driver's run, after
    :func:`~orchestrator.study.driver_lock.claim_driver`.
    """

    def __init__(self, inner: optuna.storages.BaseStorage, study_id: int):
        self.inner = inner
        self.study_id = study_id
        self._lock = threading.RLock()
        self._trials: list[FrozenTrial] | None = None  # index = trial number
        self._numbers: dict[int, int | None] = {}  # trial id -> number (None: another study's)
        self._unfinished: dict[int, FrozenTrial] = {}  # number -> the copy, for trials not finished

    def __getattr__(self, name: str) -> Any:  # engine, url, gave_up...: the wrapped storage's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "study_id": self.study_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"], state["study_id"])  # type: ignore[misc]

    # -- the copy ----------------------------------------------------------------------------
    def _loaded(self) -> list[FrozenTrial]:
        if self._trials is None:
            trials = sorted(self.inner.get_all_trials(self.study_id, deepcopy=False), key=lambda t: t.number)
            if any(t.number != i for i, t in enumerate(trials)):
                raise RuntimeError(f"study {self.study_id}: trial numbers are not 0..{len(trials) - 1}")
            # Finished trials never change; unfinished ones are this object's to update.
            self._trials = [t if t.state.is_finished() else copy.deepcopy(t) for t in trials]
            self._unfinished = {t.number: t for t in self._trials if not t.state.is_finished()}
        return self._trials

    def _owned(self, trial_id: int) -> FrozenTrial | None:
        """The copy of ``trial_id`` when it is a trial of the owned study, else None (a trial id
        first seen is looked up through the storage's public API, once)."""
        if self._trials is None:
            return None
        if trial_id not in self._numbers:
            number = self.inner.get_trial_number_from_id(trial_id)
            mine = number < len(self._trials) and (
                self.inner.get_trial_id_from_study_id_trial_number(self.study_id, number) == trial_id)
            self._numbers[trial_id] = number if mine else None
        number = self._numbers[trial_id]
        return None if number is None else self._trials[number]

    def _read_back(self, trial_id: int) -> None:
        trial = copy.deepcopy(self.inner.get_trial(trial_id))
        trials = self._loaded()
        if trial.number == len(trials):
            trials.append(trial)
        else:
            trials[trial.number] = trial
        self._numbers[trial_id] = trial.number
        if trial.state.is_finished():
            self._unfinished.pop(trial.number, None)
        else:
            self._unfinished[trial.number] = trial

    # -- trials of the owned study: written through, then applied to the copy ------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with self._lock:
            trial_id = self.inner.create_new_trial(study_id, template_trial)
            if study_id == self.study_id and self._trials is not None:
                self._read_back(trial_id)
            return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        with self._lock:
            self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            trial = self._owned(trial_id)
            if trial is not None:
                trial.params[param_name] = distribution.to_external_repr(param_value_internal)
                trial.distributions[param_name] = distribution

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        with self._lock:
            changed = self.inner.set_trial_state_values(trial_id, state, values)
            if self._owned(trial_id) is not None:
                self._read_back(trial_id)  # the storage sets the timestamps
            return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        with self._lock:
            self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)
            trial = self._owned(trial_id)
            if trial is not None:
                trial.intermediate_values[step] = intermediate_value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            self.inner.set_trial_user_attr(trial_id, key, value)
            trial = self._owned(trial_id)
            if trial is not None:
                trial.user_attrs[key] = json.loads(json.dumps(value))  # as the storage gives it back

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            self.inner.set_trial_system_attr(trial_id, key, value)
            trial = self._owned(trial_id)
            if trial is not None:
                trial.system_attrs[key] = json.loads(json.dumps(value))

    # -- reads of the owned study: from the copy ------------------------------------------------
    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if study_id != self.study_id:
            return self.inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        with self._lock:
            trials = self._loaded()
            if states is not None and all(not state.is_finished() for state in states):
                # Running and waiting trials only (TPE's constant liar asks at every trial).
                trials = [t for t in sorted(self._unfinished.values(), key=_number) if t.state in states]
            else:
                trials = list(trials) if states is None else [t for t in trials if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if self._trials is None:
                self._loaded()
            trial = self._owned(trial_id)
        if trial is None:
            return self.inner.get_trial(trial_id)
        # An unfinished trial is copied: Optuna's Trial updates the one it holds as it goes.
        return trial if trial.state.is_finished() else copy.deepcopy(trial)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        trial_id = self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        if study_id == self.study_id:
            with self._lock:
                self._numbers[trial_id] = trial_number
        return trial_id

    # -- everything else: the wrapped storage's ------------------------------------------------
    def create_new_study(self, directions: Sequence[Any], study_name: str | None = None) -> int:
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.inner.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[Any]:
        return self.inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[Any]:
        return self.inner.get_all_studies()

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self.inner.get_best_trial(study_id)

    def remove_session(self) -> None:
        self.inner.remove_session()


def own_study(study: optuna.Study) -> optuna.Study:
    """The same study (name, sampler, pruner) read through an :class:`OwnedStudyStorage`, for the
    run of the driver that claimed it (``study`` comes from :mod:`~orchestrator.study.storage`'s
    ``create_study`` or ``load_study``; the new object is registered with the same URL)."""
    from orchestrator.study.storage import make_storage, register_url, storage_url

    url = storage_url(study)
    if url is None:
        raise ValueError(f"study {study.study_name!r} was not created or loaded through orchestrator.study.storage")
    owned = owned_view(study.study_name, make_storage(url), study.sampler, study.pruner)
    register_url(owned, url)
    return owned


def owned_view(study_name: str, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Study ``study_name`` of ``storage`` read through an :class:`OwnedStudyStorage`."""
    inner = storage.inner if isinstance(storage, OwnedStudyStorage) else storage
    owned = OwnedStudyStorage(inner, inner.get_study_id_from_name(study_name))
    return optuna.Study(study_name, owned, sampler=sampler, pruner=pruner)


def _number(trial: FrozenTrial) -> int:
    return trial.number
