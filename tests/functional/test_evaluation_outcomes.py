"""After the evaluation job: what S3, SageMaker or a malformed evaluation.json can do to the run's one outcome.

A good run is never failed by a moment's trouble (S3 slowing down, IAM denying during a stack update); a file the
run record cannot hold fails the run at once, naming the file, before any champion moves; a retry after the
champion was written finds the run succeeded and tells it once; the champion pointer moves only with the run's
SUCCEEDED, so a run ended at its deadline never becomes champion."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from reviewtune.core import champion as champion_module
from reviewtune.core import reasons, registry, stop_requests, withdrawal
from reviewtune.core import results as results_module
from reviewtune.core.champion import get_champion
from reviewtune.core.runs import RunsRepository, now_iso
from tests.functional.pipeline import Pipeline, good_file, later
from tests.functional.test_record_results import EVALUATION
from tests.support.faults import Failing, TableWithClient, cancelled, client_error, failing_once


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def evaluated(pipeline: Pipeline) -> str:
    """A run whose evaluation job is running."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    return run_id


def test_s3_slowing_down_on_evaluation_json_is_retried_and_the_run_succeeds(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    s3 = pipeline.clients.s3
    pipeline.use("s3", Failing(s3, "get_object", "SlowDown", "Please reduce your request rate.", failures=1))
    with pytest.raises(Exception, match="SlowDown"):
        pipeline.evaluation_ended(run_id)  # Lambda delivers the event again
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "SUCCEEDED"
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def test_a_moment_of_access_denied_on_the_evaluation_job_does_not_fail_the_run(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.fail["describe_processing_job"] = ["AccessDeniedException"]  # IAM, during a stack update
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "SUCCEEDED"


def _many_classes(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    for index in range(10_000):  # every entry well formed; ~500 KB once stored, over DynamoDB's 400 KB item
        odd["metrics"]["per_class"][f"extra-{index:05d}"] = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1}
    return odd


def _tiny_number(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    odd["metrics"]["accuracy"]["ci95"] = [1e-300, 0.79]  # finite, but below DynamoDB's 1e-130
    return odd


def _many_digits(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    odd["metrics"]["per_class"]["-1"]["support"] = 10**40 + 1  # within range, but more digits than DynamoDB keeps
    return odd


def _deep(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    nested: dict = {}
    odd["metrics"]["extra"] = nested
    for _ in range(40):  # DynamoDB holds 32 levels
        nested["x"] = {}
        nested = nested["x"]
    return odd


def _empty_key(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    odd["metrics"]["label_counts"] = {"": 1, "1": 308}  # a map key is an attribute name: DynamoDB refuses ""
    return odd


def _nan_under_a_long_key(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    odd["extra"] = {"k" * 500_000: math.nan}  # the file under 1 MiB; the key alone larger than a run item may be
    return odd


@pytest.mark.parametrize(("mangle", "said"), [
    (_many_classes, "its metrics take"),
    (_nan_under_a_long_key, f"extra.{'k' * 77}... is not a finite number (NaN or Infinity)"),
    (_empty_key, 'metrics.label_counts has an empty key (""), which a run record cannot hold'),
    (_tiny_number, "metrics.accuracy.ci95.0 = 1e-300 is outside the range a run record can hold"),
    (_deep, "is nested more than 16 levels deep"),
    (_many_digits, "metrics.per_class.-1.support has more than the 38 digits a run record can hold"),
], ids=["too-large", "nan-under-a-long-key", "empty-key", "tiny-number", "too-deep", "too-many-digits"])
def test_an_evaluation_json_the_run_record_cannot_hold_fails_the_run_at_once_and_crowns_nobody(pipeline, mangle, said):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=mangle(EVALUATION))
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    item = pipeline.run(run_id)
    assert "evaluation.json" in item["failure_reason"] and said in item["failure_reason"]
    assert len(item["failure_reason"]) <= reasons.REASON_MAX_CHARS
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.sagemaker.packages() == []
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_results_dynamodb_refuses_to_store_fail_the_run_at_once_with_its_words_and_crown_nobody(pipeline):
    """A value the checks let through that DynamoDB refuses (ValidationException on every write of the results):
    tried again it fails again, so the run fails now with DynamoDB's words, not at its deadline 3 hours later
    with a reason that hides them; the approval given to the would-be champion is withdrawn."""
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    said = "One or more parameter values were invalid: Empty attribute name"
    table = pipeline.clients.runs_table
    transaction = Failing(table.meta.client, "transact_write_items", failures=None,
                          error=client_error("ValidationException", said, "TransactWriteItems"))
    writes = Failing(TableWithClient(table, transaction), "update_item", failures=None,
                     error=client_error("ValidationException", said, "UpdateItem"),
                     when=lambda call: "metrics" in json.dumps(call.get("ExpressionAttributeNames", {})))
    pipeline.use("runs_table", writes)

    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"

    item = pipeline.run(run_id)
    assert item["failure_reason"].endswith(f"evaluation.json: the run record refused its results (ValidationException: "
                                           f"{said})")
    assert transaction.failed >= 1 and writes.failed >= 1
    assert get_champion(table, item["dataset"]) is None
    assert [package["ModelApprovalStatus"] for package in pipeline.sagemaker.packages()] in ([], ["PendingManualApproval"])
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_stop_asked_while_dynamodb_refuses_the_results_ends_the_run_stopped_as_asked(pipeline):
    """DynamoDB refuses the values before it reads the write's conditions, so the stop is not seen there: the run is
    read again, and ends STOPPED with the person's reason, not FAILED with DynamoDB's."""
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    said = "One or more parameter values were invalid: Empty attribute name"
    table = pipeline.clients.runs_table
    asked = []

    def stop_then_refuse(call):
        if "metrics" not in json.dumps(call.get("ExpressionAttributeNames", {})) and "TransactItems" not in call:
            return False
        if not asked:
            stop_requests.request_stop(RunsRepository(table), run_id, why="wrong file, stop it", by="alice")
            asked.append(True)
        return True

    transaction = Failing(table.meta.client, "transact_write_items", failures=None, when=stop_then_refuse,
                          error=client_error("ValidationException", said, "TransactWriteItems"))
    pipeline.use("runs_table", Failing(TableWithClient(table, transaction), "update_item", failures=None,
                                       when=stop_then_refuse, error=client_error("ValidationException", said,
                                                                                 "UpdateItem")))

    assert pipeline.evaluation_ended(run_id)["status"] == "STOPPED"
    item = pipeline.run(run_id)
    assert asked and "wrong file, stop it" in item["failure_reason"] and said not in item["failure_reason"]
    assert get_champion(table, item["dataset"]) is None
    assert [package["ModelApprovalStatus"] for package in pipeline.sagemaker.packages()] in ([], ["PendingManualApproval"])
    assert pipeline.statuses_told(run_id) == ["STOPPED"]


def test_an_evaluation_json_over_a_megabyte_is_not_read(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", raw=b"[" * 10 + b" " * (1024 * 1024) + b"]" * 10)
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    assert "more than the 1,048,576 an evaluation.json may be" in pipeline.run(run_id)["failure_reason"]


def test_an_evaluation_json_nested_past_python_s_recursion_limit_fails_the_run_at_once(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", raw=b"[" * 100_000 + b"]" * 100_000)
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    assert "is not valid JSON: RecursionError" in pipeline.run(run_id)["failure_reason"]


def test_a_lost_answer_of_the_champion_write_is_retried_and_told_once(pipeline, monkeypatch):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    write = champion_module._put_with_run_update

    def committed_but_unanswered(*args, **kwargs):
        write(*args, **kwargs)
        raise client_error("InternalServerError", "the answer was lost", "TransactWriteItems")

    monkeypatch.setattr(champion_module, "_put_with_run_update", committed_but_unanswered)
    with pytest.raises(Exception, match="the answer was lost"):
        pipeline.evaluation_ended(run_id)  # Lambda delivers the event again
    monkeypatch.setattr(champion_module, "_put_with_run_update", write)
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and item["champion"]["decision"] == "first champion"
    assert get_champion(pipeline.clients.runs_table, item["dataset"]).run_id == run_id
    assert pipeline.evaluation_ended(run_id)["duplicate"] is True
    [message] = pipeline.messages(run_id)
    assert "Champion:            first champion" in message["Message"]


# The reconciler ends an EVALUATING run at its deadline (3 h) while record_results, seconds from the end, decides the
# champion: the champion pointer moves only in the same transaction as the run's SUCCEEDED.
PAST_THE_EVALUATION_DEADLINE = 4


def test_a_run_ended_at_its_deadline_just_before_the_champion_write_does_not_become_champion(pipeline, monkeypatch):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    write = champion_module._put_with_run_update

    def reconciler_first(*args, **kwargs):
        pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
        return write(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_with_run_update", reconciler_first)
    result = pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert (result["status"], item["status"]) == ("FAILED", "FAILED")
    assert "longer than its deadline" in item["failure_reason"]
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"  # approved for the move, then withdrawn
    # what people read in the registry is why the run ended, whichever side withdrew last
    assert f"run {run_id} ended FAILED" in pipeline.sagemaker.approval_descriptions[package["ModelPackageArn"]]
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_two_record_results_at_once_leave_the_winner_champion_with_its_package_approved(pipeline, monkeypatch):
    """The processing job's event and a reconciler pass record the same run at once; the pass's champion write
    lands first. The event's transaction then finds the run moved on: to SUCCEEDED, not ended otherwise, so its
    package stays approved (no withdrawal), and the run is told once."""
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    write, passes = champion_module._put_with_run_update, []

    def reconciler_first(*args, **kwargs):
        if not passes:  # once: the pass's own record_results comes through this same function
            passes.append(None)
            passes[0] = pipeline.reconcile(later(0))
        return write(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_with_run_update", reconciler_first)
    pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert passes[0]["steps"][run_id].startswith("evaluation Completed: SUCCEEDED")
    assert item["status"] == "SUCCEEDED" and item["champion"]["decision"] == "first champion"
    assert get_champion(pipeline.clients.runs_table, item["dataset"]).run_id == run_id
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "Approved"
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def _dies_at_the_champion_write(pipeline: Pipeline, monkeypatch) -> str:
    """A run whose record_results approved its package as the new champion, then died before its final write."""
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)

    def killed(*args, **kwargs):
        raise RuntimeError("Task timed out")  # the function's time ran out: no except clause of its own sees it

    monkeypatch.setattr(champion_module, "_put_with_run_update", killed)
    with pytest.raises(RuntimeError, match="Task timed out"):
        pipeline.evaluation_ended(run_id)
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "Approved" and pipeline.run(run_id)["status"] == "EVALUATING"
    return run_id


def test_a_run_ended_at_its_deadline_after_its_package_was_approved_gets_the_approval_withdrawn(pipeline, monkeypatch):
    run_id = _dies_at_the_champion_write(pipeline, monkeypatch)
    pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and "longer than its deadline" in item["failure_reason"]
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert f"run {run_id} ended FAILED" in pipeline.sagemaker.approval_descriptions[package["ModelPackageArn"]]
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_withdrawal_that_fails_still_ends_the_run_tells_it_once_and_is_tried_again_until_it_holds(pipeline, monkeypatch):
    run_id = _dies_at_the_champion_write(pipeline, monkeypatch)
    # end_run's withdrawal and the same pass's second try are both refused
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException", "ThrottlingException"]
    result = pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
    assert result["steps"] == {run_id: "past deadline"} and "ThrottlingException" in result["errors"][run_id]
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and pipeline.statuses_told(run_id) == ["FAILED"]  # the message did not wait
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "Approved" and item["notice_pending"]  # still owed: in the index
    result = pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE + 0.1))
    assert (result["withdrawn"], result["errors"]) == (1, {})
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "PendingManualApproval"
    item = pipeline.run(run_id)
    assert item["approval_settled_at"] and "notice_pending" not in item  # settled: out of the index
    assert pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE + 0.2))["withdrawn"] == 0
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_withdrawal_owed_on_a_package_a_person_rejected_meanwhile_leaves_it_rejected_and_settles(pipeline, monkeypatch):
    run_id = _dies_at_the_champion_write(pipeline, monkeypatch)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException", "ThrottlingException"]
    pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
    [package] = pipeline.sagemaker.packages()
    registry.set_approval(pipeline.sagemaker, package["ModelPackageArn"], registry.REJECTED, "not this one")

    assert pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE + 0.1))["errors"] == {}

    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "Rejected"  # not put back to pending
    item = pipeline.run(run_id)
    assert item["approval_settled_at"] and "notice_pending" not in item


def test_a_withdrawal_owed_on_a_package_deleted_since_is_settled_and_the_run_leaves_the_index(pipeline, monkeypatch):
    run_id = _dies_at_the_champion_write(pipeline, monkeypatch)
    [package] = pipeline.sagemaker.packages()
    pipeline.sagemaker.delete_model_package(ModelPackageName=package["ModelPackageArn"])  # a person cleaned up

    result = pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))

    assert result["errors"] == {} and pipeline.sagemaker.packages() == []
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and item["approval_settled_at"] and "notice_pending" not in item
    assert item["registry"]["error"].startswith("the model package no longer exists: ValidationException")
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_withdrawal_refused_for_good_is_tried_for_a_week_then_recorded_as_not_done(pipeline, monkeypatch):
    from reviewtune.core.registry import GIVE_UP_SECONDS

    run_id = _dies_at_the_champion_write(pipeline, monkeypatch)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"] * 4

    assert "AccessDeniedException" in pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))["errors"][run_id]
    assert "AccessDeniedException" in pipeline.reconcile(later(GIVE_UP_SECONDS / 3600 - 1))["errors"][run_id]
    assert withdrawal.owed(pipeline.run(run_id))  # still tried by every pass

    assert pipeline.reconcile(later(GIVE_UP_SECONDS / 3600 + 1))["errors"] == {}
    item = pipeline.run(run_id)
    assert item["approval_settled_at"] and "notice_pending" not in item and not withdrawal.owed(item)
    assert "not put back to pending, refused for 7 days: AccessDeniedException" in item["registry"]["error"]
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "Approved"  # what the run's record now says


def test_an_approval_given_after_the_run_ended_is_withdrawn_by_the_passes_until_no_record_results_can_approve(
    pipeline, monkeypatch
):
    """The reconciler ends the run at its deadline between record_results' mark and its approval; record_results
    then approves, finds the run ended, and its own withdrawal is refused."""
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    deadline = later(PAST_THE_EVALUATION_DEADLINE)
    # the mark is written at the reconciler's clock: moments before the deadline, as in the cloud
    monkeypatch.setattr(results_module, "now_iso", lambda: now_iso(deadline - timedelta(seconds=5)))
    approve = results_module.set_approval

    def reconciler_first(entry, champion, run_id_, clients, **options):
        if champion.get("champion_run_id") == run_id_:
            pipeline.reconcile(deadline)  # ends the run; its withdrawal finds nothing approved yet
        return approve(entry, champion, run_id_, clients, **options)

    monkeypatch.setattr(results_module, "set_approval", reconciler_first)
    updates = []
    real_update = pipeline.sagemaker.update_model_package

    def update(**request):
        updates.append(request["ModelApprovalStatus"])
        if updates[-2:] == ["Approved", "PendingManualApproval"]:  # record_results' own withdrawal
            raise client_error("ThrottlingException", "Rate exceeded", "UpdateModelPackage")
        return real_update(**request)

    monkeypatch.setattr(pipeline.sagemaker, "update_model_package", update)
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "Approved"
    assert pipeline.run(run_id)["notice_pending"]
    # a pass 6 minutes after the mark: withdrawn, but record_results could still be approving: not settled
    assert pipeline.reconcile(deadline + timedelta(minutes=6))["withdrawn"] == 1
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "PendingManualApproval"
    assert "approval_settled_at" not in pipeline.run(run_id)
    # past SETTLE_AFTER_SECONDS: withdrawn once more and settled
    assert pipeline.reconcile(deadline + timedelta(seconds=withdrawal.SETTLE_AFTER_SECONDS))["withdrawn"] == 1
    item = pipeline.run(run_id)
    assert item["approval_settled_at"] and "notice_pending" not in item
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.statuses_told(run_id) == ["FAILED"]
    assert updates[-2:] == ["PendingManualApproval", "PendingManualApproval"] and "Approved" in updates


def test_a_succeeded_run_with_its_package_owes_no_withdrawal(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and item["model_package_arn"] and "notice_pending" not in item
    assert pipeline.reconcile(later(0.5))["withdrawn"] == 0
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "Approved"


def test_a_champion_write_that_met_another_transaction_is_decided_again_at_once(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    transaction = failing_once(pipeline, cancelled("TransactionConflict", "None"))
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED" and transaction.calls == 2
    item = pipeline.run(run_id)
    assert item["champion"]["decision"] == "first champion"
    assert get_champion(pipeline.clients.runs_table, item["dataset"]).run_id == run_id
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def test_a_throttled_champion_write_writes_nothing_and_the_retry_succeeds(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    failing_once(pipeline, cancelled("ThrottlingError", "None"))
    with pytest.raises(Exception, match="TransactionCanceled"):
        pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert item["status"] == "EVALUATING" and get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    assert get_champion(pipeline.clients.runs_table, item["dataset"]).run_id == run_id
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def test_a_refused_champion_write_still_succeeds_the_run_with_the_decision_not_made(pipeline, caplog):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    failing_once(pipeline, client_error("AccessDeniedException", "not allowed", "TransactWriteItems"))
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    # the log line names the run (a reconciler pass records several)
    (logged,) = [r for r in caplog.records if r.getMessage() == "champion decision failed"]
    assert logged.run_id == run_id and "AccessDenied" in logged.error
    item = pipeline.run(run_id)
    assert item["champion"]["decision"] == "not decided" and "AccessDenied" in item["champion"]["error"]
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert item["registry"]["approval"] == "PendingManualApproval"
    [package] = pipeline.sagemaker.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def _recorded_test_rows(pipeline: Pipeline, run_id: str, rows: int) -> None:
    """The test split's size as the start recorded it (a file of a few hundred thousand reviews)."""
    pipeline.clients.runs_table.update_item(Key={"run_id": run_id}, UpdateExpression="SET #d.summary.#r.test = :n",
                                            ExpressionAttributeNames={"#d": "data", "#r": "rows"},
                                            ExpressionAttributeValues={":n": rows})


@pytest.mark.parametrize(("test_rows", "champion"), [(40, False), (20_000, False), (20_000, True)])
def test_the_evaluation_job_of_a_large_test_split_gets_the_time_it_needs_and_its_run_the_deadline(
    pipeline, test_rows, champion
):
    from reviewtune.core import evaluation
    from reviewtune.core.config import MIN_EVALUATING_DEADLINE_SECONDS
    from reviewtune.core.runs import parse_iso
    from reviewtune.core.states import RunStatus

    if champion:  # a first run of the dataset succeeds: the second is evaluated beside its champion
        pipeline.succeed(pipeline.start_tuning(pipeline.drop_event())["run_id"])
    run_id = pipeline.start_tuning(pipeline.drop_event(body=good_file(seed=3)))["run_id"]
    _recorded_test_rows(pipeline, run_id, test_rows)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    item = pipeline.run(run_id)
    assert item["status"] == "EVALUATING"
    request = pipeline.processing_request(run_id)
    assert ("--champion-model" in request["AppSpecification"]["ContainerArguments"]) is champion
    runtime = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    scored = test_rows * (2 if champion else 1)
    given = (parse_iso(item["deadline_at"]) - parse_iso(item["status_history"]["EVALUATING"])).total_seconds()
    stack_deadline = pipeline.settings.run_deadlines[RunStatus.EVALUATING]
    if scored / evaluation.EVALUATION_ROWS_PER_SECOND < evaluation.EVALUATION_MAX_RUNTIME / 2:
        assert runtime == evaluation.EVALUATION_MAX_RUNTIME
        assert abs(given - stack_deadline) < 5
    else:  # at the slowest scoring allowed for, after the job's start; the run's deadline a margin past the job's
        assert runtime == evaluation.EVALUATION_START_SECONDS + scored / evaluation.EVALUATION_ROWS_PER_SECOND
        assert runtime > evaluation.EVALUATION_MAX_RUNTIME
        margin = MIN_EVALUATING_DEADLINE_SECONDS - evaluation.EVALUATION_MAX_RUNTIME
        assert abs(given - max(stack_deadline, runtime + margin)) < 5 and given >= runtime + margin - 5
    # the reconciler does not end it as stuck while its job is within its limit
    pipeline.reconcile(later(hours=(runtime - 60) / 3600))
    assert pipeline.run(run_id)["status"] == "EVALUATING"


def test_the_evaluation_job_s_limit_is_sagemaker_s_most_at_worst():
    from reviewtune.core import evaluation

    run = {"data": {"summary": {"rows": {"test": 10_000_000}}}}
    assert evaluation.evaluation_max_runtime(run, 2) == evaluation.SAGEMAKER_MAX_PROCESSING_RUNTIME == 777_600
    assert evaluation.evaluation_max_runtime({}, 1) == evaluation.EVALUATION_MAX_RUNTIME  # a run without a summary


def test_a_retried_evaluation_start_that_finds_its_job_made_gives_the_run_the_deadline_of_that_job(pipeline, monkeypatch):
    # the first attempt made the job beside the champion (two models scored), then died before its EVALUATING write;
    # the retry can no longer read the champion (its model gone): the run's deadline is still that of the job made
    from reviewtune.core import names
    from reviewtune.core.runs import RunStatus, parse_iso

    champion = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.succeed(champion)
    run_id = pipeline.start_tuning(pipeline.drop_event(body=good_file(seed=3)))["run_id"]
    _recorded_test_rows(pipeline, run_id, 20_000)
    pipeline.finish_tuning_well(run_id)
    transition, died = RunsRepository.transition, []

    def dies_once(self, rid, sources, target, **fields):
        if target == RunStatus.EVALUATING and not died:
            died.append(rid)
            raise TimeoutError("the invocation ended after CreateProcessingJob")
        return transition(self, rid, sources, target, **fields)

    monkeypatch.setattr(RunsRepository, "transition", dies_once)
    with pytest.raises(TimeoutError):
        pipeline.tuning_ended(run_id)
    job = pipeline.processing_request(run_id)
    assert "--champion-model" in job["AppSpecification"]["ContainerArguments"]
    runtime = job["StoppingCondition"]["MaxRuntimeInSeconds"]
    bucket, key = names.parse_s3_uri(pipeline.run(champion)["tuning"]["best_training_job"]["model_uri"])
    pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)

    assert pipeline.tuning_ended(run_id)["status"] == "EVALUATING"  # ResourceInUse
    item = pipeline.run(run_id)
    entered = parse_iso(item["status_history"]["EVALUATING"])
    assert (parse_iso(item["deadline_at"]) - entered).total_seconds() >= runtime
    pipeline.reconcile(entered + timedelta(seconds=runtime - 600))  # the job within its limit is not ended as stuck
    assert pipeline.run(run_id)["status"] == "EVALUATING"
