"""A changed JobNamePrefix makes no second run of a file version that has one (reviewtune/core/prefixes.py).

GIVEN a file whose run was made under the stack's prefix, WHEN the stack's JobNamePrefix changes and the file's start
event comes again (Lambda's retry of it, or the dead letter the reconciler takes back), THEN no run is made under the
new prefix: the event is a duplicate of the version's run, which keeps its one outcome and one message. A claim whose
start had not finished when the prefix changed (which README says not to do) is ended FAILED by the reconciler's
first restart of it, told once, instead of being started under the new name as a second run; `runs retry` then
tunes the file under the new prefix."""

from __future__ import annotations

import dataclasses

import pytest

from reviewtune.console import views
from reviewtune.core import prefixes, reconciler, retries, states, tuning
from reviewtune.core.runs import RunsRepository
from tests.functional.pipeline import Pipeline, later
from tests.support.faults import Failing
from tests.unit.test_console_text import rendered


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def _runs(pipeline: Pipeline) -> list[dict]:
    return [i for i in pipeline.clients.runs_table.scan()["Items"] if "source" in i and "status" in i]


def _renamed(pipeline: Pipeline, monkeypatch, prefix: str = "renamed"):
    """The stack's JobNamePrefix changes: the start function's settings, and the settings a reconciler pass gets."""
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix=prefix)
    handler = pipeline.handlers["start_tuning"]
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=renamed))
    return renamed


def test_each_start_records_the_stack_s_prefix_once(pipeline, monkeypatch):
    table = pipeline.clients.runs_table
    pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv"))
    pipeline.start_tuning(pipeline.drop_event("incoming/b.tsv"))
    assert prefixes.recorded(table) == {pipeline.settings.job_name_prefix}
    _renamed(pipeline, monkeypatch)
    pipeline.start_tuning(pipeline.drop_event("incoming/c.tsv"))
    assert prefixes.recorded(table) == {pipeline.settings.job_name_prefix, "renamed"}
    assert sorted(r["run_id"].split("-")[0] for r in _runs(pipeline)) == ["renamed", "reviewtune", "reviewtune"]


def _claimed_then_failing(pipeline: Pipeline, event: dict) -> dict:
    """The event's start claims the run, then reading the file fails: no result is kept for the event (its
    idempotency record goes with the error), so Lambda's next retry of it runs the start again."""
    healthy = pipeline.clients.s3
    pipeline.use("s3", Failing(healthy, "get_object", "InternalError", failures=None))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(event)
    pipeline.use("s3", healthy)
    [claimed] = _runs(pipeline)
    return claimed


def test_a_start_event_delivered_again_after_the_prefix_changed_is_a_duplicate_of_the_version_s_run(
    pipeline, monkeypatch
):
    event = pipeline.drop_event("incoming/team/seen.tsv")
    claimed = _claimed_then_failing(pipeline, event)
    _renamed(pipeline, monkeypatch)

    again = pipeline.start_tuning(event)  # Lambda's retry of it, under the new prefix

    assert again == {"run_id": claimed["run_id"], "status": "CLAIMED", "duplicate": True}
    assert [r["run_id"] for r in _runs(pipeline)] == [claimed["run_id"]]
    # a new file under the new prefix is a run as any
    other = pipeline.start_tuning(pipeline.drop_event("incoming/team/new.tsv"))
    assert other["run_id"].startswith("renamed-") and other["status"] == "TUNING"


def test_a_dead_letter_taken_back_after_the_prefix_changed_makes_no_second_run(pipeline, stack, monkeypatch):
    event = pipeline.drop_event("incoming/team/claimed.tsv")
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=None))
    for _ in range(3):
        with pytest.raises(Exception, match="InternalError"):
            pipeline.start_tuning(event)  # claimed, then the read fails each time
    [claimed] = _runs(pipeline)
    stack.dead_letter(event)
    pipeline.use("s3", pipeline.clients.s3._wrapped)
    renamed = _renamed(pipeline, monkeypatch)

    taken = reconciler.reconcile(renamed, pipeline.clients)["dead_letters"]

    assert taken["existing"] == 1 and taken["claimed"] == 0 and stack.dead_letters() == 0
    assert [r["run_id"] for r in _runs(pipeline)] == [claimed["run_id"]]


def test_a_version_with_runs_under_both_prefixes_goes_on_with_the_stack_s_own(pipeline, monkeypatch):
    """Runs made under both prefixes (before the prefixes were recorded): the event follows the run it names."""
    event = pipeline.drop_event("incoming/team/both.tsv")
    first = _claimed_then_failing(pipeline, event)
    renamed = _renamed(pipeline, monkeypatch)
    runs = RunsRepository(pipeline.clients.runs_table, renamed.run_deadlines)
    claimed, second = tuning.claim_run(tuning.dropped_object(first), runs, renamed)
    assert claimed

    again = pipeline.start_tuning(event)

    assert again["run_id"] == second["run_id"] != first["run_id"] and again["status"] == "TUNING"


def test_a_replay_of_an_encoded_key_after_the_prefix_changed_and_the_version_went_away_is_a_duplicate(
        pipeline, stack, monkeypatch):
    """An "Object Created" with the key URL-encoded (`old+file.tsv` for `old file.tsv`), its run SUCCEEDED; then
    JobNamePrefix changes, the version is deleted and the idempotency records expire, and the event comes again (an
    archive replay, a redrive): the run under the earlier prefix is found for the decoded key, no second run."""
    import boto3

    from tests.functional.test_guarantees import _expire_idempotency_records
    from tests.support.aws import REGION

    key = "incoming/team/old file.tsv"
    event = pipeline.drop_event(key)
    assert event["detail"]["object"]["key"] == "incoming/team/old+file.tsv"
    first = pipeline.start_tuning(event)
    pipeline.succeed(first["run_id"])
    _renamed(pipeline, monkeypatch)
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=stack.bucket, Key=key, VersionId=event["detail"]["object"]["version-id"])
    _expire_idempotency_records(stack)

    replay = pipeline.start_tuning(dict(event, id="replayed", **{"replay-name": "archive-replay"}))

    assert replay == {"run_id": first["run_id"], "status": "SUCCEEDED", "duplicate": True}
    assert [run["run_id"] for run in _runs(pipeline)] == [first["run_id"]]
    assert pipeline.statuses_told(first["run_id"]) == ["SUCCEEDED"]


def _redeployed(pipeline: Pipeline, monkeypatch, prefix: str = "renamed"):
    """The stack deployed again with another JobNamePrefix: every function's settings, the reconciler's passes too."""
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix=prefix)
    for handler in pipeline.handlers.values():
        monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=renamed))
    return renamed


def _final_told(pipeline: Pipeline, run_id: str) -> list[str]:
    return [status for status in pipeline.statuses_told(run_id) if status in states.FINAL_STATUSES]


@pytest.mark.parametrize("recorded", [True, False], ids=["prefix recorded", "claim older than the record"])
def test_a_claim_whose_start_died_before_the_prefix_changed_ends_failed_at_its_first_restart_and_is_retried(
        pipeline, monkeypatch, recorded):
    event = pipeline.drop_event("incoming/team/inflight.tsv")
    claimed = _claimed_then_failing(pipeline, event)["run_id"]
    if not recorded:  # written by a version before the prefixes were recorded: only the run's own name tells
        pipeline.clients.runs_table.delete_item(Key={"run_id": prefixes.PREFIXES_KEY})
    renamed = _redeployed(pipeline, monkeypatch)
    if recorded:
        assert pipeline.start_tuning(event)["duplicate"] is True  # Lambda's retry of the event, under the new prefix

    steps = [pipeline.reconcile(later(hours))["steps"].get(claimed) for hours in (0.1, 0.5)]

    assert steps == [None, "claim named under another prefix ended: FAILED"]  # stale after 15 minutes, not before
    run = pipeline.run(claimed)
    assert run["status"] == "FAILED" and "JobNamePrefix changed" in run["failure_reason"]
    assert "'renamed'" in run["failure_reason"] and "restarts" not in run
    shown = " ".join(rendered(views.run_view(run)).split())  # runs show
    assert "JobNamePrefix changed during its start: reviewtune ends it" in shown and "deadline passed" not in shown
    assert [r["run_id"] for r in _runs(pipeline)] == [claimed]  # no second run of the version
    pipeline.reconcile(later(0.9))
    assert _final_told(pipeline, claimed) == ["FAILED"]
    [told] = pipeline.messages(claimed)
    assert f"reviewtune runs retry {claimed}" in told["Message"]

    retry = retries.retry_run(RunsRepository(pipeline.clients.runs_table, renamed.run_deadlines), pipeline.clients.s3,
                              claimed, why="the prefix changed", by="ops", prefix="renamed")
    copy = pipeline.clients.s3.head_object(Bucket=retry.bucket, Key=retry.key, VersionId=retry.version_id)
    again = dict(event, id="the retry's event")
    again["detail"] = {**event["detail"], "object": {**event["detail"]["object"], "version-id": retry.version_id,
                                                     "etag": copy["ETag"].strip('"')}}
    started = pipeline.start_tuning(again)
    assert started["run_id"] == retry.new_run_id and started["run_id"].startswith("renamed-")
    assert started["status"] == "TUNING"
    pipeline.succeed(started["run_id"])
    assert _final_told(pipeline, started["run_id"]) == ["SUCCEEDED"] and _final_told(pipeline, claimed) == ["FAILED"]


def test_a_stop_asked_while_the_pass_ends_a_claim_named_under_an_earlier_prefix_holds(pipeline, monkeypatch):
    from reviewtune.core.stop_requests import request_stop

    claimed = _claimed_then_failing(pipeline, pipeline.drop_event("incoming/team/stopped.tsv"))
    renamed = _redeployed(pipeline, monkeypatch)
    runs = RunsRepository(pipeline.clients.runs_table, renamed.run_deadlines)
    as_read = runs.get(claimed["run_id"])  # the pass read the claim; then a person asks for a stop
    request_stop(runs, claimed["run_id"], why="wrong file", by="ops")

    step = reconciler.restart_claim(as_read, runs, renamed, pipeline.clients, later(0.5))
    pipeline.reconcile(later(0.6))

    assert step == "moved on"
    run = pipeline.run(claimed["run_id"])
    assert run["status"] == "STOPPED" and run["failure_reason"].startswith("stopped by ops")
    assert _final_told(pipeline, claimed["run_id"]) == ["STOPPED"]
