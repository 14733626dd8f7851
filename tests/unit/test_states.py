from __future__ import annotations

from pathlib import Path

import pytest

from reviewtune.core import config, states
from reviewtune.core.config import Settings
from reviewtune.core.errors import ConfigError
from reviewtune.core.states import RunStatus

ROOT = Path(__file__).resolve().parents[2]


def test_final_states_have_no_way_out_and_every_other_state_has_a_deadline():
    for status in states.FINAL_STATUSES:
        assert status not in states.TRANSITIONS
    assert set(states.NON_FINAL_STATUSES) == set(states.TRANSITIONS) == set(states.DEFAULT_DEADLINES)
    assert set(RunStatus) == set(states.FINAL_STATUSES) | set(states.NON_FINAL_STATUSES)


def test_every_state_is_reachable_from_the_initial_one():
    seen, frontier = {states.INITIAL}, [states.INITIAL]
    while frontier:
        for target in states.TRANSITIONS.get(frontier.pop(), ()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(RunStatus)


def test_duplicate_is_entered_only_from_the_initial_state():
    assert [s for s, targets in states.TRANSITIONS.items() if RunStatus.DUPLICATE in targets] == [states.INITIAL]


def test_disallowed_transitions_are_refused():
    assert states.allowed("TUNING", "EVALUATING") and not states.allowed("EVALUATING", "TUNING")
    with pytest.raises(states.TransitionError, match="SUCCEEDED to TUNING"):
        states.check((RunStatus.SUCCEEDED,), RunStatus.TUNING)


def test_the_architecture_page_shows_the_state_machine_of_the_code():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{states.mermaid()}\n```" in page


BASE = {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "a", "SAGEMAKER_ROLE_ARN": "r"}


def test_state_deadlines_merge_over_the_defaults():
    settings = Settings.from_env({**BASE, "RUN_STATE_DEADLINES": '{"tuning": 7200}', "MAX_CONCURRENT_RUNS": "3",
                                  "MAX_RUNTIME_SECONDS": "1200"})
    assert settings.run_deadlines[RunStatus.TUNING] == 7200  # 2 rounds of 20 min fit in it with the hour's slack
    assert settings.run_deadlines[RunStatus.QUEUED] == states.DEFAULT_DEADLINES[RunStatus.QUEUED]
    assert settings.max_concurrent_runs == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [('{"SUCCEEDED": 60}', "not a non-final run state"), ('{"TUNING": 5}', ">= 60"), ("[1]", "JSON object")],
)
def test_bad_state_deadlines_are_refused_clearly(value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, "RUN_STATE_DEADLINES": value})


@pytest.mark.parametrize(("env", "tuning_deadline"), [
    ({}, states.DEFAULT_DEADLINES[RunStatus.TUNING]),  # 2 rounds of a day at most: 48 h + 1 h, within the 72 h
    ({"USE_SPOT_TRAINING": "true"}, 2 * 2 * 86400 + 3600),  # each trial may wait for spot capacity: 2 x 48 h + 1 h
    ({"MAX_JOBS": "5", "MAX_PARALLEL_JOBS": "2", "RUN_STATE_DEADLINES": '{"TUNING": 7200}'}, 3 * 86400 + 3600),
    ({"MAX_JOBS": "2", "MAX_PARALLEL_JOBS": "2", "MAX_RUNTIME_SECONDS": "600",
      "RUN_STATE_DEADLINES": '{"TUNING": 4300}'}, 4300),  # 10 min + 1 h fit: a setting above that stays
    ({"MAX_JOBS": "2", "MAX_PARALLEL_JOBS": "2", "MAX_RUNTIME_SECONDS": "600",
      "RUN_STATE_DEADLINES": '{"TUNING": 3600}'}, 4200),
])
def test_a_tuning_deadline_is_never_shorter_than_the_tuning_budget_s_longest_run(env, tuning_deadline):
    """A tuning job still working within the limits the stack gave it (its trials in rounds of MaxParallelJobs, each
    up to MaxRuntimeInSeconds, or MaxWaitTimeInSeconds with spot) is not stuck: its run's deadline covers them."""
    settings = Settings.from_env({**BASE, **env})
    assert settings.run_deadlines[RunStatus.TUNING] == tuning_deadline
    assert settings.run_deadlines[RunStatus.TUNING] >= config.tuning_budget_seconds(settings)
    # a queued run waits for a run ahead that may tune and evaluate that long: not stuck before that
    assert settings.run_deadlines[RunStatus.QUEUED] == max(
        states.DEFAULT_DEADLINES[RunStatus.QUEUED], tuning_deadline + states.DEFAULT_DEADLINES[RunStatus.EVALUATING])


@pytest.mark.parametrize("env", [
    {},
    {"USE_SPOT_TRAINING": "true"},
    {"MAX_JOBS": "5", "MAX_PARALLEL_JOBS": "2", "MAX_RUNTIME_SECONDS": "600"},
])
def test_the_budget_a_run_records_is_that_of_the_settings_its_job_was_made_with(env):
    """A run's deadline in TUNING comes from the limits it recorded (the job's own): the same formula as the stack's."""
    from reviewtune.core.tuning import _config_summary

    settings = Settings.from_env({**BASE, **env})
    recorded = config.recorded_budget_seconds(_config_summary(settings))
    assert recorded == config.tuning_budget_seconds(settings)
    assert config.tuning_deadline_seconds(states.DEFAULT_DEADLINES[RunStatus.TUNING], recorded) == \
        settings.run_deadlines[RunStatus.TUNING]


def test_a_record_without_the_job_s_limits_has_no_budget():
    assert config.recorded_budget_seconds({"max_jobs": 4, "max_parallel_jobs": 2}) is None  # no MaxRuntime recorded


@pytest.mark.parametrize(("set_to", "deadline"), [(1800, config.MIN_EVALUATING_DEADLINE_SECONDS), (9000, 9000)])
def test_an_evaluating_deadline_is_never_shorter_than_the_evaluation_job_and_record_results_margin(set_to, deadline):
    """An evaluation job still within its own limit is not stuck, and record_results keeps its margin before the
    deadline: a shorter EVALUATING deadline is raised to the floor, a longer one stays."""
    from reviewtune.core.evaluation import EVALUATION_MAX_RUNTIME
    from reviewtune.core.registration import DEADLINE_MARGIN_SECONDS

    assert config.MIN_EVALUATING_DEADLINE_SECONDS >= EVALUATION_MAX_RUNTIME + DEADLINE_MARGIN_SECONDS
    settings = Settings.from_env({**BASE, "RUN_STATE_DEADLINES": f'{{"EVALUATING": {set_to}}}'})
    assert settings.run_deadlines[RunStatus.EVALUATING] == deadline
