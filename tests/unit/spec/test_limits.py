"""The ``limits:`` section: defaults, sizes and durations, null, round trip, and the errors."""

from __future__ import annotations

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import spec_from_mapping
from orchestrator.spec.model import Limits


def _limits(value) -> Limits:
    return spec_from_mapping({"name": "s", "limits": value}).limits


def test_default_is_80_percent_of_the_node_and_no_time_limit_with_workers_reused():
    limits = spec_from_mapping({"name": "s"}).limits
    assert limits == Limits(None, None, 0.8) and limits.reuse_workers


@pytest.mark.parametrize("value, expected", [
    ({"trial_time": "90s", "trial_memory": "512MiB"}, Limits(90.0, 512 * 2**20, None)),
    ({"trial_time": "30m"}, Limits(1800.0, None, 0.8)),
    ({"trial_memory": "4GiB"}, Limits(None, 4 * 2**30, None)),
    ({"trial_memory": "2GB"}, Limits(None, 2 * 10**9, None)),
    ({"trial_memory": "50%"}, Limits(None, None, 0.5)),
    ({"trial_memory": None}, Limits(None, None, None)),
    (None, Limits(None, None, None)),
])
def test_values(value, expected):
    assert _limits(value) == expected


def test_own_limits_end_workers_with_their_trials():
    assert not _limits({"trial_time": 60}).reuse_workers
    assert not _limits({"trial_memory": "1GiB"}).reuse_workers


def test_round_trip():
    for value in ({"trial_time": "90s", "trial_memory": "512MiB"}, {"trial_memory": "50%"}, None, {}):
        spec = spec_from_mapping({"name": "s", "limits": value})
        assert spec_from_mapping(spec.to_dict()).limits == spec.limits


@pytest.mark.parametrize("value, field, words", [
    (5, "limits", "a mapping with trial_time and trial_memory"),
    ({"trial_mem": "1GiB"}, "limits.trial_mem", "Did you mean `limits.trial_memory`?"),
    ({"trial_time": "soon"}, "limits.trial_time", "a duration such as '90s'"),
    ({"trial_time": 0}, "limits.trial_time", "a number of seconds above 0"),
    ({"trial_memory": "4 gigs"}, "limits.trial_memory", "a size such as '4GiB' or '512MiB'"),
    ({"trial_memory": "10MiB"}, "limits.trial_memory", "at least 64MiB"),
    ({"trial_memory": "150%"}, "limits.trial_memory", "above 0% and at most 100%"),
])
def test_bad_limits_are_named(value, field, words):
    with pytest.raises(SpecError) as caught:
        _limits(value)
    assert f"`{field}`" in str(caught.value) and words in str(caught.value)
