"""A study is created with its spec or not at all, and a launch that loses the race to create a
study gets stepsize's StudyExistsError, not Optuna's DuplicatedStudyError; a study loaded only to
be read (status, best) gets no sampler built."""

from __future__ import annotations

import optuna
import pytest

from orchestrator.errors import StudyExistsError
from orchestrator.spec import spec_from_mapping
from orchestrator.study import storage
from orchestrator.study.storage import create_study, load_study, study_names


def test_a_failure_storing_the_spec_leaves_no_study_behind(tmp_path, monkeypatch):
    spec = spec_from_mapping({"name": "half", "storage": f"sqlite:///{tmp_path}/o.db"})

    def fails(study, spec):
        raise KeyboardInterrupt  # Ctrl-C between the two steps

    monkeypatch.setattr(storage, "store_spec", fails)
    with pytest.raises(KeyboardInterrupt):
        create_study(spec)
    assert "half" not in study_names(spec.storage)
    monkeypatch.undo()
    study = create_study(spec)  # the name is free again
    assert study.user_attrs["stepsize.spec"]["name"] == "half"


def test_the_loser_of_two_simultaneous_creations_gets_study_exists_error(tmp_path, monkeypatch):
    spec = spec_from_mapping({"name": "race", "storage": f"sqlite:///{tmp_path}/o.db"})
    create_study(spec)
    monkeypatch.setattr(storage, "refuse_existing_study", lambda spec: None)  # both passed the check
    with pytest.raises(StudyExistsError) as caught:
        create_study(spec)
    assert "--skip-if-exists" not in str(caught.value) and "stepsize resume race" in str(caught.value)
    assert not isinstance(caught.value, optuna.exceptions.DuplicatedStudyError)


def test_a_study_loaded_only_to_be_read_builds_no_sampler(tmp_path):
    spec = spec_from_mapping({"name": "read", "storage": f"sqlite:///{tmp_path}/o.db"})
    create_study(spec)
    study, loaded = load_study("read", spec.storage, sampler=False)
    assert type(study.sampler) is optuna.samplers.RandomSampler and loaded.name == "read"
    study, _ = load_study("read", spec.storage)  # to run trials: the spec's sampler (TPE)
    assert not isinstance(study.sampler, optuna.samplers.RandomSampler)
