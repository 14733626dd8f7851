"""`reviewtune runs stop` against moto (the stack found through CloudFormation outputs as on AWS): the request is
recorded with the reason and who, the run's running job is stopped, the output says what happens next, and what
cannot be stopped gets a clear error with nothing written.
"""

from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.core import stop_requests
from reviewtune.core.runs import RunsRepository, RunStatus
from tests.cli.test_runs_commands import STACK, deployed, put_run, run_json  # noqa: F401  (deployed: a fixture)


@pytest.fixture
def stack(deployed):  # noqa: F811
    return deployed


def item(stack, run_id: str) -> dict:
    return RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).get(run_id)


def test_stop_records_who_and_why_and_says_the_reconciler_ends_a_queued_run(stack, capsys):
    put_run(stack, "reviewtune-q1", "team-a/r.tsv", "QUEUED", 1)

    [done] = run_json(capsys, "runs", "stop", "reviewtune-q1", "--reason", "wrong export")

    who = boto3.client("sts").get_caller_identity()["Arn"]
    assert done["status"] == "QUEUED" and done["job"] == "no job" and done["job_answer"] is None
    assert done["stop_request"]["by"] == who and done["stop_request"]["reason"] == "wrong export"
    assert item(stack, "reviewtune-q1")["stop_request"] == done["stop_request"]
    assert main(["runs", "show", "reviewtune-q1", "--stack", STACK]) == 0
    shown = capsys.readouterr().out
    assert "stop requested" in shown and f"by {who}: wrong export" in shown
    assert f"stop requested by {who}" in shown  # the timeline's row
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "QUEUED, stopping" in capsys.readouterr().out
    assert main(["runs", "stop", "reviewtune-q1", "--reason", "again", "--stack", STACK]) == 0  # the first one holds
    again = " ".join(capsys.readouterr().out.split())
    assert again.startswith("a stop of reviewtune-q1 (QUEUED) was asked already: 'wrong export' by ")
    assert "which holds" in again and "recorded" not in again and "'again'" not in again
    assert item(stack, "reviewtune-q1")["stop_request"] == done["stop_request"]
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).transition(  # as the reconciler's pass does
        "reviewtune-q1", RunStatus.QUEUED, RunStatus.STOPPED, notice=("stopped", "stopped"), failed_stage="tuning")
    assert main(["runs", "show", "reviewtune-q1", "--stack", STACK]) == 0
    shown = capsys.readouterr().out
    assert "stopped at" in shown and "failed at" not in shown
    assert main(["runs", "list", "--stack", STACK]) == 0
    listed = capsys.readouterr().out
    assert "STOPPED" in listed and "stopping" not in listed


def test_stop_of_an_evaluating_run_whose_job_is_gone_says_the_job_is_not_running(stack, capsys):
    put_run(stack, "reviewtune-e1", "team-a/r.tsv", "EVALUATING", 1)
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).update(
        "reviewtune-e1", evaluation_job_name="reviewtune-e1-eval")

    assert main(["runs", "stop", "reviewtune-e1", "--reason", "not needed", "--stack", STACK]) == 0

    out = " ".join(capsys.readouterr().out.split())
    assert "stop of reviewtune-e1 (EVALUATING) recorded: 'not needed'" in out
    assert "its evaluation job is not running (ValidationException: Could not find processing job" in out
    assert "the run ends at its next step: STOPPED, or FAILED if the job failed on its own" in out
    assert item(stack, "reviewtune-e1")["stop_request"]["reason"] == "not needed"


@pytest.mark.parametrize(("run_id", "reason", "error"), [
    ("reviewtune-s1", "late", "run reviewtune-s1 is SUCCEEDED already: there is nothing to stop"),
    ("reviewtune-zz", "typo", "no run 'reviewtune-zz' (stop, retry and promote take a run's whole id, as `reviewtune "
                              "runs list` or `reviewtune runs show reviewtune-zz` shows it)"),
    ("reviewtune-t1", " ", "a stop needs a reason (--reason TEXT)"),
])
def test_stop_refuses_what_cannot_be_stopped_and_writes_nothing(stack, capsys, run_id, reason, error):
    put_run(stack, "reviewtune-s1", "team-a/r.tsv", "SUCCEEDED", 1, 0.7)
    put_run(stack, "reviewtune-t1", "team-a/r.tsv", "TUNING", 2)

    assert main(["runs", "stop", run_id, "--reason", reason, "--stack", STACK]) == 1

    assert " ".join(capsys.readouterr().err.split()) == f"error: {error}"
    assert all("stop_request" not in item(stack, r) for r in ("reviewtune-s1", "reviewtune-t1"))


def test_stop_of_several_runs_stops_each_it_can_and_reports_the_others(stack, capsys):
    for minutes, (run_id, status) in enumerate(
            [("reviewtune-q1", "QUEUED"), ("reviewtune-s1", "SUCCEEDED"), ("reviewtune-q2", "QUEUED")]):
        put_run(stack, run_id, "team-a/r.tsv", status, minutes)
    capsys.readouterr()

    code = main(["runs", "stop", "reviewtune-q1", "reviewtune-s1", "reviewtune-q2", "reviewtune-q1",
                 "--reason", "bulk drop by mistake", "--stack", STACK, "--json"])

    assert code == 1
    done = json.loads(capsys.readouterr().out)
    assert [entry["run_id"] for entry in done] == ["reviewtune-q1", "reviewtune-s1", "reviewtune-q2"]
    assert done[1] == {"run_id": "reviewtune-s1",
                       "error": "run reviewtune-s1 is SUCCEEDED already: there is nothing to stop"}
    for run_id in ("reviewtune-q1", "reviewtune-q2"):
        assert item(stack, run_id)["stop_request"]["reason"] == "bulk drop by mistake"
    assert "stop_request" not in item(stack, "reviewtune-s1")


def test_an_empty_id_or_an_aws_refusal_for_one_run_is_reported_and_the_others_are_still_stopped(
    stack, capsys, monkeypatch
):
    from reviewtune.core.runs import RunsRepository
    from tests.support.faults import client_error, refused_for_one_run

    for minutes, run_id in enumerate(("reviewtune-q1", "reviewtune-q2", "reviewtune-q3")):
        put_run(stack, run_id, "team-a/r.tsv", "QUEUED", minutes)
    read = RunsRepository.get
    conflict = client_error("TransactionConflictException", "in a transaction", "GetItem")  # a transaction on q2
    monkeypatch.setattr(RunsRepository, "get", refused_for_one_run(read, "reviewtune-q2", conflict))
    capsys.readouterr()
    # `reviewtune runs stop "$UNSET" ...`: an empty argument
    code = main(["runs", "stop", "", "reviewtune-q1", "reviewtune-q2", "reviewtune-q3", "--reason", "bulk",
                 "--stack", STACK, "--json"])

    assert code == 1
    done = {entry["run_id"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert done[""]["error"] == "an empty run id"
    assert done["reviewtune-q2"]["error"] == "run reviewtune-q2: TransactionConflictException: in a transaction"
    monkeypatch.setattr(RunsRepository, "get", read)
    assert "stop_request" in item(stack, "reviewtune-q1") and "stop_request" in item(stack, "reviewtune-q3")


def test_a_run_being_ended_at_its_deadline_shows_so_and_is_not_stopped_again(stack, capsys):
    put_run(stack, "reviewtune-d1", "team-a/r.tsv", "TUNING", 1)
    runs = RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table))
    why = "the run stayed TUNING longer than its deadline (3 d, RUN_STATE_DEADLINES); reviewtune ended it"
    assert stop_requests.record_deadline(runs, runs.get("reviewtune-d1"), why=why) is not None

    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "TUNING, ending at its deadline" in capsys.readouterr().out
    assert main(["runs", "show", "reviewtune-d1", "--stack", STACK]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "deadline passed: reviewtune ends it" in shown and "stop requested" not in shown

    assert main(["runs", "stop", "reviewtune-d1", "--reason", "too long", "--stack", STACK]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "run reviewtune-d1 is past its deadline and being ended FAILED: the run stayed TUNING longer" in err
    assert item(stack, "reviewtune-d1")["stop_request"]["reason"] == why  # the deadline's record stays


def test_a_stop_someone_else_recorded_a_moment_before_is_said_to_hold(stack, capsys, monkeypatch):
    from reviewtune.console import commands

    put_run(stack, "reviewtune-q2", "team-a/r.tsv", "QUEUED", 1)
    record = commands.request_stop

    def after_someone_else(runs, run_id, **asked):  # their request lands between this command's reads
        record(runs, run_id, why="theirs", by="arn:aws:iam::123456789012:user/alice")
        return record(runs, run_id, **asked)

    monkeypatch.setattr(commands, "request_stop", after_someone_else)
    assert main(["runs", "stop", "reviewtune-q2", "--reason", "mine", "--stack", STACK]) == 0

    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith("a stop of reviewtune-q2 (QUEUED) was asked already: 'theirs' by "
                           "arn:aws:iam::123456789012:user/alice") and "recorded" not in said
    assert item(stack, "reviewtune-q2")["stop_request"]["reason"] == "theirs"
