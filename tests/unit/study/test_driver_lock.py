"""One driver per study: of two processes claiming a study at the same moment exactly one wins
(200 races through one SQLite file); a live holder is refused with its host, pid and heartbeat; a
stale holder (a dead process on this host, or a heartbeat older than STALE_AFTER_S) is taken over
by exactly one of two takers; a release frees the study; the heartbeat keeps the claim fresh."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import optuna
import pytest

from orchestrator.errors import StudyBusyError
from orchestrator.study import driver_lock
from orchestrator.study.driver_lock import active_driver, claim, claim_driver, read_holder, release, release_driver
from orchestrator.study.storage import create_study, make_storage

RACES = 200


def _racer(url: str, names: list[str], barrier, out, host: str) -> None:
    won = []
    for name in names:
        barrier.wait(timeout=60)
        try:
            claim(url, name, host=host, heartbeat=False)
            won.append(name)
        except StudyBusyError:
            pass
    out.put(won)


def race(url: str, names: list[str], hosts: tuple[str, str]) -> list[list[str]]:
    """Two real processes claim each study of ``names`` at the same moment (a barrier per study);
    what each won. The storage's Optuna tables exist first (as the study does before any driver
    claims it); stepsize's own table is created by the racers."""
    make_storage(url)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(url, names, barrier, out, host)) for host in hosts]
    for proc in procs:
        proc.start()
    won = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return won


def test_of_two_processes_claiming_at_once_exactly_one_wins_200_races(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    names = [f"s{i}" for i in range(RACES)]
    first, second = race(url, names, (os.uname().nodename, "other-host"))
    assert not set(first) & set(second), f"both claimed {len(set(first) & set(second))} of {RACES} studies"
    assert set(first) | set(second) == set(names)


def test_a_live_holder_is_refused_with_its_host_pid_and_heartbeat(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    claim(url, "busy", host="gpu-7", pid=4242, heartbeat=False)
    with pytest.raises(StudyBusyError) as caught:
        claim(url, "busy")
    text = str(caught.value)
    assert "process 4242 on host gpu-7" in text and "last heartbeat 0 s ago" in text and "stop that process" in text
    assert caught.value.exit_code == 2


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    study = create_study_for(url, "busy")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim(url, "busy", pid=sleeper.pid, heartbeat=False)
        with pytest.raises(StudyBusyError, match=str(sleeper.pid)):
            claim_driver(study)
        assert active_driver(study)["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert active_driver(study) is None  # the holder is gone
    claim_driver(study)  # the process is gone: this one takes over
    assert read_holder(url, "busy").pid == os.getpid()
    assert active_driver(study) is None  # this process is not "another" driver
    release_driver(study)
    assert read_holder(url, "busy") is None


def test_a_holder_whose_heartbeat_is_old_is_taken_over_by_one_of_two_takers(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/o.db"
    claim(url, "old", host="gone-host", pid=1, heartbeat=False)
    table = driver_lock._table()
    with make_storage(url).engine.begin() as conn:
        conn.execute(table.update().values(heartbeat=time.time() - driver_lock.STALE_AFTER_S - 5))
    first = claim(url, "old", host="taker-1", heartbeat=False)
    with pytest.raises(StudyBusyError, match="taker-1"):
        claim(url, "old", host="taker-2", heartbeat=False)
    assert read_holder(url, "old").token == first.token


def test_the_heartbeat_keeps_the_claim_fresh_and_release_stops_it(tmp_path, monkeypatch):
    monkeypatch.setattr(driver_lock, "HEARTBEAT_S", 0.05)
    url = f"sqlite:///{tmp_path}/o.db"
    held = claim(url, "beat")
    time.sleep(0.5)
    assert read_holder(url, "beat").heartbeat > held.heartbeat
    release(url, "beat")
    assert read_holder(url, "beat") is None


def test_an_in_memory_study_keeps_the_holder_in_its_attributes():
    study = optuna.create_study(study_name="mem")
    claim_driver(study)
    assert study.user_attrs["stepsize.driver"]["pid"] == os.getpid()
    release_driver(study)
    assert study.user_attrs["stepsize.driver"] == {}


def create_study_for(url: str, name: str) -> optuna.Study:
    from orchestrator.spec import spec_from_mapping

    return create_study(spec_from_mapping({"name": name, "storage": url}))
