"""What a trial's statuses say: stopped early by the tuner, or by its own time limit."""

from __future__ import annotations

import pytest

from reviewtune.core.trial_facts import early_stopped


@pytest.mark.parametrize(("training", "tuning", "secondary", "early"), [
    ("Stopped", "InProgress", "Stopped", True),  # the tuner stopped it while the search went on
    ("Stopped", "Completed", None, True),
    ("Stopped", "InProgress", "MaxRuntimeExceeded", False),  # its MaxRuntimeInSeconds: a hung trial, no early stop
    ("Stopped", "InProgress", "MaxWaitTimeExceeded", False),  # a spot trial past its MaxWaitTimeInSeconds
    ("Stopped", "Stopped", "Stopped", False),  # the whole tuning job was stopped
    ("Completed", "Completed", "Completed", False),
])
def test_a_trial_stopped_by_its_time_limit_is_not_said_to_be_stopped_early(training, tuning, secondary, early):
    assert early_stopped(training, tuning, secondary) is early
