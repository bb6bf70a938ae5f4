"""One driver per study: a second live driver on this machine is refused; once the first is gone,
another process takes over."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest

from orchestrator.errors import StudyBusyError
from orchestrator.study.driver_lock import claim_driver
from orchestrator.study.storage import make_storage


def test_a_second_live_driver_on_the_same_study_is_refused(tmp_path):
    study = optuna.create_study(study_name="busy", storage=make_storage(f"sqlite:///{tmp_path}/o.db"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study.set_user_attr("stepsize.driver", {"host": os.uname().nodename, "pid": sleeper.pid})
        with pytest.raises(StudyBusyError, match=str(sleeper.pid)):
            claim_driver(study)
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.1)
    claim_driver(study)  # the process is gone: this one takes over
    assert study.user_attrs["stepsize.driver"]["pid"] == os.getpid()
