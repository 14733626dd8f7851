"""Every run ends, and people are told exactly once: fault injection against the handlers on moto.

Each test drives the handlers (and reconciler passes where a step was missed) through a fault, then checks the
run's final status, its reason, and that exactly one message tells its outcome."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from reviewtune.console import views
from reviewtune.core import (
    champion_rotation,
    dead_letters,
    job_stops,
    notify,
    outbox,
    queue_wait,
    reconciler,
    slots,
    states,
    stop_requests,
    tuning,
)
from reviewtune.core.errors import RunNotReadyError
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso, parse_iso, to_item, unsent
from tests.functional.pipeline import Pipeline, good_file, later
from tests.functional.test_record_results import EVALUATION
from tests.support.aws import REGION
from tests.support.faults import Failing, cancelled, client_error, failing_once
from tests.unit.test_console_text import rendered


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def assert_ended(pipeline: Pipeline, run_id: str, status: str, *reason_parts: str) -> dict:
    item = pipeline.run(run_id)
    assert item["status"] == status
    for part in reason_parts:
        assert part in item.get("failure_reason", ""), (part, item.get("failure_reason"))
    told = [s for s in pipeline.statuses_told(run_id) if s in states.FINAL_STATUSES]
    assert told == [status], told
    assert not item.get("notice_pending") and all(e.get("sent_at") or e.get("superseded_at") for e in item["outbox"].values())
    return item


# ------------------------------------------------------------------------------------------- notifications


def test_publish_failing_twice_is_retried_by_the_handler_and_sent_once(pipeline):
    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "KMSThrottlingException", failures=2))
    event = pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n")
    for _ in range(2):  # Lambda's retries of the event
        with pytest.raises(Exception, match="KMSThrottling"):
            pipeline.start_tuning(event)
    result = pipeline.start_tuning(event)
    assert result["status"] == "REJECTED" and result["duplicate"] is True
    item = assert_ended(pipeline, result["run_id"], "REJECTED", "no label column")
    assert item["notification_message_id"] == pipeline.messages(result["run_id"])[0]["MessageId"]
    pipeline.start_tuning(event)  # one more delivery tells nobody again
    assert len(pipeline.messages(result["run_id"])) == 1


def test_a_missing_topic_delays_the_message_until_a_reconciler_pass_finds_it_back(pipeline):
    run_id, _, missing = _failed_with_its_message_unsent(pipeline)
    first = pipeline.reconcile()
    assert first["errors"] and pipeline.messages(run_id) == []
    missing.heal()
    second = pipeline.reconcile()
    assert second["sent"] == 1 and not second["errors"]
    assert pipeline.reconcile()["sent"] == 0
    assert_ended(pipeline, run_id, "FAILED", "AccessDeniedException")


def _failed_with_its_message_unsent(pipeline: Pipeline) -> tuple[str, dict, Failing]:
    """A run that ended FAILED while SNS said the topic was missing: its message waits in the outbox. The run's
    id, its drop event, and the failing SNS client."""
    missing = Failing(pipeline.clients.sns, "publish", "NotFound", "Topic does not exist", failures=None)
    pipeline.use("sns", missing)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    event = pipeline.drop_event()
    with pytest.raises(Exception, match="NotFound"):
        pipeline.start_tuning(event)
    run_id = _run_id(pipeline)
    assert pipeline.run(run_id)["status"] == "FAILED" and pipeline.messages(run_id) == []
    return run_id, event, missing


def test_a_message_sns_keeps_refusing_is_counted_late_after_a_quarter_of_an_hour_until_it_goes_out(pipeline):
    run_id, _, missing = _failed_with_its_message_unsent(pipeline)

    soon = pipeline.reconcile(later(0.2))  # 12 minutes: SNS refused again, not late yet
    assert run_id in soon["errors"] and soon["late_messages"] == 0
    late = pipeline.reconcile(later(0.3))  # 18 minutes
    assert run_id in late["errors"] and late["late_messages"] == 1

    missing.heal()
    told = pipeline.reconcile(later(0.4))
    assert (told["sent"], told["late_messages"]) == (1, 0) and len(pipeline.messages(run_id)) == 1


@pytest.mark.parametrize("reread_refused", [False, True])
def test_a_pass_that_sends_one_message_and_is_refused_the_next_counts_one_sent_and_only_the_unsent_one_late(
        pipeline, reread_refused):
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-two", "dataset": "two.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-two", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: two", "waits"))
    assert runs.transition("reviewtune-two", RunStatus.QUEUED, RunStatus.FAILED, notice=("FAILED: two", "failed"))
    refused = Failing(pipeline.clients.sns, "publish", "AuthorizationError", failures=None,
                      when=lambda request: request["Subject"].startswith("FAILED"))
    pipeline.use("sns", refused)
    if reread_refused:  # DynamoDB refuses every read after SNS's refusal: the pass's earlier read is counted
        pipeline.use("runs_table", Failing(pipeline.clients.runs_table, "get_item",
                                           "ProvisionedThroughputExceededException", failures=None,
                                           when=lambda request: refused.failed > 0))

    result = pipeline.reconcile(later(0.3))  # both recorded 18 minutes before the pass

    assert (result["sent"], result["late_messages"]) == (1, 2 if reread_refused else 1)
    assert "reviewtune-two" in result["errors"]
    if reread_refused:
        pipeline.use("runs_table", runs.table)
    assert [m["Subject"] for m in pipeline.messages("reviewtune-two")] == ["QUEUED: two"]
    refused.heal()
    assert (pipeline.reconcile(later(0.4))["sent"], len(pipeline.messages("reviewtune-two"))) == (1, 2)


@pytest.mark.parametrize("late", [0, 1])
def test_the_reconcile_handler_publishes_the_late_messages_metric(pipeline, capsys, monkeypatch, late):
    _failed_with_its_message_unsent(pipeline)
    if late:  # the handler's own clock: the message counts as a quarter of an hour old at once
        monkeypatch.setattr(outbox, "LATE_SECONDS", 0)
    capsys.readouterr()

    result = pipeline.reconcile()

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [m for m in metrics if "LateMessages" in m]
    assert emf["LateMessages"] in ([float(late)], float(late)) and result["late_messages"] == late


def _during_the_first_publish(pipeline: Pipeline, action) -> list:
    """Run ``action`` once, while the first Publish call is still out (a second sender coming meanwhile); the list
    gets what it returned. Later Publish calls, the action's own included, go straight to SNS."""
    sns, during = pipeline.clients.sns, []

    class SlowPublish:
        def __getattr__(self, name):
            return getattr(sns, name)

        def publish(self, **request):
            if not during:
                during.append(None)
                during[0] = action()
            return sns.publish(**request)

    pipeline.use("sns", SlowPublish())
    return during


def test_a_second_sender_while_the_first_is_publishing_sends_nothing(pipeline):
    run_id, event, missing = _failed_with_its_message_unsent(pipeline)
    missing.heal()
    during = _during_the_first_publish(pipeline, pipeline.reconcile)  # the pass comes while the handler publishes
    pipeline.start_tuning(event)  # Lambda's retry of the event: the handler sends what the run owes
    assert during[0]["sent"] == 0 and not during[0]["errors"]  # the lease was taken: the pass left it
    assert_ended(pipeline, run_id, "FAILED", "AccessDeniedException")
    assert len(pipeline.messages(run_id)) == 1


@pytest.mark.parametrize("pass_seconds", [0, outbox.LEASE_SECONDS + 10])
def test_a_pass_that_reaches_its_outbox_late_still_holds_a_whole_lease(pipeline, pass_seconds):
    """A pass judges deadlines by the time it began; one that comes to its outbox loop after more than a lease's
    seconds (many dead letters or trials before it) still holds its lease while it publishes: Lambda's retry of the
    handler whose Publish had failed, coming meanwhile, sends nothing."""
    run_id, event, missing = _failed_with_its_message_unsent(pipeline)
    missing.heal()
    during = _during_the_first_publish(pipeline, lambda: pipeline.start_tuning(event))  # the handler's retry
    passed = pipeline.reconcile(later(0) - timedelta(seconds=pass_seconds))  # began pass_seconds ago
    assert passed["sent"] == 1 and during  # the pass published, and the retry came during its Publish
    assert pipeline.statuses_told(run_id) == ["FAILED"]
    assert_ended(pipeline, run_id, "FAILED", "AccessDeniedException")


def test_a_sender_that_died_holding_the_lease_delays_the_message_until_the_lease_is_over(pipeline):
    run_id, _, missing = _failed_with_its_message_unsent(pipeline)
    missing.heal()
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.lease_notice(run_id, "FAILED", outbox.LEASE_SECONDS)  # then died before its Publish
    assert pipeline.reconcile()["sent"] == 0
    over = later(0) + timedelta(seconds=outbox.LEASE_SECONDS + 1)
    assert pipeline.reconcile(over)["sent"] == 1
    assert pipeline.reconcile(over)["sent"] == 0
    assert_ended(pipeline, run_id, "FAILED", "AccessDeniedException")


class _Died(BaseException):
    """The invocation ends here (its timeout): no handler code runs after it."""


def test_a_message_leased_by_a_sender_that_died_keeps_the_later_outcome_behind_it(pipeline, monkeypatch):
    """The start that queued a run dies right after taking the QUEUED message's lease. A person stops the run and a
    pass ends it STOPPED within that lease: the STOPPED message waits, and both go out in order once it is over."""
    for i in range(2):
        pipeline.start_tuning(pipeline.drop_event(f"incoming/t{i}.tsv", good_file(i)))
    lease = RunsRepository.lease_notice

    def dies_after_the_lease(self, run_id, status, seconds, now=None):
        taken = lease(self, run_id, status, seconds, now)
        if status == "QUEUED":
            monkeypatch.setattr(RunsRepository, "lease_notice", lease)
            raise _Died("timed out right after leasing the QUEUED message")
        return taken

    monkeypatch.setattr(RunsRepository, "lease_notice", dies_after_the_lease)
    with pytest.raises(_Died):
        pipeline.start_tuning(pipeline.drop_event("incoming/q.tsv", good_file(7)))
    runs = RunsRepository(pipeline.clients.runs_table)
    [queued] = runs.by_status("QUEUED")
    run_id = queued["run_id"]
    stop_requests.request_stop(runs, run_id, why="wrong file", by="ops")
    assert pipeline.reconcile()["sent"] == 0  # ends it STOPPED; QUEUED is leased, so nothing goes out yet
    assert pipeline.run(run_id)["status"] == "STOPPED" and pipeline.statuses_told(run_id) == []
    over = later(0) + timedelta(seconds=outbox.LEASE_SECONDS + 1)
    assert pipeline.reconcile(over)["sent"] == 2
    assert pipeline.statuses_told(run_id) == ["QUEUED", "STOPPED"]
    assert not pipeline.run(run_id).get("notice_pending")


def test_a_message_added_while_a_sender_publishes_goes_out_after_it_from_that_sender(pipeline, monkeypatch):
    """Two live senders: the second finds the first's message leased and leaves its own later message to the first,
    which sends it after its own (in order, without waiting for a pass)."""
    run_id, _, missing = _failed_with_its_message_unsent(pipeline)
    missing.heal()
    runs = RunsRepository(pipeline.clients.runs_table)
    sns, topic = pipeline.clients.sns, pipeline.stack.topic_arn
    publish = outbox.publish
    order = []

    def another_sender_meanwhile(sns_, topic_, subject, body, run_id, status):
        order.append(status)
        if len(order) == 1:  # a message recorded meanwhile, whose own sender finds FAILED leased
            runs.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET outbox.#s = :m",
                ExpressionAttributeNames={"#s": "SUCCEEDED"},
                ExpressionAttributeValues={":m": {"status": "SUCCEEDED", "subject": "s", "body": "b",
                                                  "created_at": now_iso()}},
            )
            assert outbox.send_pending(runs, sns, topic, run_id) == []  # left to this sender, in order
        return publish(sns_, topic_, subject, body, run_id=run_id, status=status)

    monkeypatch.setattr(outbox, "publish", another_sender_meanwhile)
    assert len(outbox.send_pending(runs, sns, topic, run_id)) == 2
    assert order == ["FAILED", "SUCCEEDED"]


def _run_id(pipeline: Pipeline) -> str:
    runs = RunsRepository(pipeline.clients.runs_table)
    (item,) = [i for s in states.RunStatus for i in runs.by_status(s.value)]
    return item["run_id"]


def _evaluated(pipeline: Pipeline) -> str:
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    return run_id


def test_dynamodb_throttling_on_the_final_write_is_retried_and_tells_once(pipeline):
    run_id = _evaluated(pipeline)  # the dataset's first run: its final write moves the champion pointer too
    failing_once(pipeline, cancelled("ThrottlingError", "None"))
    with pytest.raises(Exception, match="TransactionCanceled"):
        pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    assert_ended(pipeline, run_id, "SUCCEEDED")


def test_dynamodb_throttling_right_after_the_final_write_is_retried_and_tells_once(pipeline):
    run_id = _evaluated(pipeline)
    table = pipeline.clients.runs_table

    def not_the_package_mark(request: dict) -> bool:  # the write before the approval, not the one after the end
        if request.get("Key", {}).get("run_id") == champion_rotation.CURSOR_KEY:
            return False  # nor the champion's mark for the reconciler (never raised: a mark not made waits its turn)
        return "model_package_arn" not in str(request.get("ExpressionAttributeNames"))

    pipeline.use("runs_table", Failing(table, "update_item", "ProvisionedThroughputExceededException", failures=1,
                                       when=not_the_package_mark))
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        pipeline.evaluation_ended(run_id)  # the outbox's lease, after the run's SUCCEEDED
    assert pipeline.run(run_id)["status"] == "SUCCEEDED" and pipeline.statuses_told(run_id) == []
    assert pipeline.evaluation_ended(run_id)["duplicate"] is True
    assert_ended(pipeline, run_id, "SUCCEEDED")


# ------------------------------------------------------------------------------------------- start errors


def test_resource_limit_exceeded_is_retried_with_back_off_then_the_run_starts(pipeline):
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ResourceLimitExceeded", "ThrottlingException"]
    result = pipeline.start_tuning(pipeline.drop_event())
    run_id = result["run_id"]
    assert result["status"] == "CLAIMED" and "retry_at" in result
    item = pipeline.run(run_id)
    assert item["tuning_start"]["attempts"] == 1 and "ResourceLimitExceeded" in item["tuning_start"]["last_error"]
    assert pipeline.reconcile()["steps"] == {}  # not due yet
    pipeline.reconcile(later(0.1))  # second try: throttled
    assert pipeline.run(run_id)["tuning_start"]["attempts"] == 2
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "TUNING"
    assert pipeline.sagemaker.calls.count("create_hyper_parameter_tuning_job") == 3
    assert pipeline.messages(run_id) == []
    pipeline.succeed(run_id)
    assert_ended(pipeline, run_id, "SUCCEEDED")


def test_a_tuning_job_request_that_got_no_answer_is_counted_as_an_attempt_and_tried_again(pipeline):
    """CreateHyperParameterTuningJob timed out or lost its connection: the try is counted with its error (so that
    a run whose tries all fail ends naming it, not its deadline), and the reconciler's next try starts the run."""
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = [
        EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com/")]
    result = pipeline.start_tuning(pipeline.drop_event())
    run_id = result["run_id"]

    assert result["status"] == "CLAIMED" and "retry_at" in result
    attempt = pipeline.run(run_id)["tuning_start"]
    assert attempt["attempts"] == 1 and attempt["last_error"].startswith("EndpointConnectionError: Could not connect")
    pipeline.reconcile(later(0.1))
    assert pipeline.run(run_id)["status"] == "TUNING" and pipeline.messages(run_id) == []


def test_tuning_job_requests_that_never_get_an_answer_end_the_run_failed_naming_the_error(stack, monkeypatch):
    monkeypatch.setenv("START_MAX_ATTEMPTS", "2")
    pipeline = Pipeline(stack)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = [ReadTimeoutError(endpoint_url="https://x")] * 3
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.reconcile(later(0.5))
    assert_ended(pipeline, run_id, "FAILED", "after 2 attempts", "ReadTimeoutError: Read timeout")
    assert slots.holders(pipeline.clients.runs_table) == set()


def test_a_quota_error_that_lasts_ends_the_run_failed_after_the_last_attempt(stack, monkeypatch):
    monkeypatch.setenv("START_MAX_ATTEMPTS", "3")
    pipeline = Pipeline(stack)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ResourceLimitExceeded"] * 5
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "CLAIMED"
    pipeline.reconcile(later(0.9))
    assert_ended(pipeline, run_id, "FAILED", "after 3 attempts", "ResourceLimitExceeded")
    assert slots.holders(pipeline.clients.runs_table) == set()


def test_a_single_allowed_attempt_is_named_as_one(stack, monkeypatch):
    monkeypatch.setenv("START_MAX_ATTEMPTS", "1")
    pipeline = Pipeline(stack)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ResourceLimitExceeded"]
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    assert_ended(pipeline, run_id, "FAILED", "did not start the tuning job after 1 attempt: ResourceLimitExceeded")


def test_access_denied_on_the_tuning_job_fails_the_run_at_once_with_aws_text(pipeline):
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    result = pipeline.start_tuning(pipeline.drop_event())
    assert result["status"] == "FAILED"
    item = assert_ended(pipeline, result["run_id"], "FAILED", "SageMaker refused the tuning job", "AccessDeniedException")
    assert "AccessDeniedException" in pipeline.messages(item["run_id"])[0]["Message"]
    assert pipeline.sagemaker.calls.count("create_hyper_parameter_tuning_job") == 1


def test_validation_error_on_the_evaluation_job_fails_the_run(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.sagemaker.fail["create_processing_job"] = ["ValidationException"]
    result = pipeline.tuning_ended(run_id)
    assert result["status"] == "FAILED"
    item = assert_ended(pipeline, run_id, "FAILED", "SageMaker refused the evaluation job", "ValidationException")
    assert item["failed_stage"] == "evaluation"
    assert "failed during evaluation" in pipeline.messages(run_id)[0]["Subject"]


def test_throttled_evaluation_job_is_started_by_a_later_reconciler_pass(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.sagemaker.fail["create_processing_job"] = ["ThrottlingException"]
    assert pipeline.tuning_ended(run_id)["status"] == "TUNING"
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    pipeline.reconcile()  # the completion event was lost: the reconciler reads the job
    assert_ended(pipeline, run_id, "SUCCEEDED")


def test_an_evaluation_job_sagemaker_keeps_throttling_ends_the_run_failed_after_the_last_attempt(stack, monkeypatch):
    monkeypatch.setenv("START_MAX_ATTEMPTS", "3")
    pipeline = Pipeline(stack)
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.sagemaker.fail["create_processing_job"] = ["ResourceLimitExceeded"] * 5
    assert pipeline.tuning_ended(run_id)["status"] == "TUNING"
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["evaluation_start"]["attempts"] == 2
    pipeline.reconcile(later(0.9))
    assert_ended(pipeline, run_id, "FAILED", "SageMaker did not start the evaluation job after 3 attempts",
                 "ResourceLimitExceeded")
    assert pipeline.sagemaker.calls.count("create_processing_job") == 3
    [message] = pipeline.messages(run_id)
    assert "ResourceLimitExceeded" in message["Message"], message
    assert "failed during evaluation" in message["Subject"], message["Subject"]
    assert slots.holders(pipeline.clients.runs_table) == set()


def _a_pass_starts_the_job_first(pipeline: Pipeline, monkeypatch, method: str, code: str = "ThrottlingException") -> None:
    """The function's call ``method`` is refused (``code``: throttled, or for good, as IAM denying the function for a
    moment), but only after a reconciler pass, in the meantime, made the same call for the run, and it succeeded."""
    create = getattr(pipeline.sagemaker, method)
    passing = []

    def the_pass_first(**request):
        if passing:  # the pass's own call
            return create(**request)
        passing.append(True)
        pipeline.reconcile(later(0.1))
        raise client_error(code, f"{code} (injected)", method)

    monkeypatch.setattr(pipeline.sagemaker, method, the_pass_first)


def test_a_last_throttled_attempt_does_not_end_a_run_whose_tuning_job_another_invocation_started(stack, monkeypatch):
    monkeypatch.setenv("START_MAX_ATTEMPTS", "1")
    pipeline = Pipeline(stack)
    _a_pass_starts_the_job_first(pipeline, monkeypatch, "create_hyper_parameter_tuning_job")
    result = pipeline.start_tuning(pipeline.drop_event())
    run_id = result["run_id"]
    assert pipeline.run(run_id)["status"] == "TUNING" and pipeline.messages(run_id) == [], result
    pipeline.succeed(run_id)
    assert_ended(pipeline, run_id, "SUCCEEDED")
    assert slots.holders(pipeline.clients.runs_table) == set()


def test_a_last_throttled_attempt_does_not_end_a_run_whose_evaluation_job_another_invocation_started(
    stack, monkeypatch
):
    """The event's start_evaluation is refused its last attempt while a reconciler pass starts the job: the run goes
    on EVALUATING with that job, and succeeds."""
    monkeypatch.setenv("START_MAX_ATTEMPTS", "1")
    pipeline = Pipeline(stack)
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    _a_pass_starts_the_job_first(pipeline, monkeypatch, "create_processing_job")
    result = pipeline.tuning_ended(run_id)
    assert result == {"run_id": run_id, "status": "EVALUATING", "moved_on": True}
    assert pipeline.run(run_id)["status"] == "EVALUATING" and pipeline.messages(run_id) == []
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    assert_ended(pipeline, run_id, "SUCCEEDED")


def test_a_stopped_evaluation_job_ends_the_run_stopped_and_registers_nothing(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", status="Stopped")
    assert pipeline.evaluation_ended(run_id, "Stopped")["status"] == "STOPPED"
    assert_ended(pipeline, run_id, "STOPPED")
    [message] = pipeline.messages(run_id)
    assert "stopped during evaluation" in message["Subject"]
    assert pipeline.sagemaker.packages() == []


# ------------------------------------------------------------------------------------------- evaluation output


def _with(path: list[str], value) -> dict:
    evaluation = json.loads(json.dumps(EVALUATION))
    node = evaluation
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return evaluation


@pytest.mark.parametrize(
    ("evaluation", "reason"),
    [
        (_with(["metrics", "accuracy", "value"], math.nan), "metrics.accuracy.value is not a finite number"),
        (_with(["metrics", "macro_f1", "value"], math.inf), "metrics.macro_f1.value is not a finite number"),
        (_with(["metrics", "per_class", "0", "precision"], -math.inf), "per_class.0.precision is not a finite"),
        (_with(["metrics", "accuracy"], KeyError), "no metrics.accuracy.value"),
        (_with(["metrics", "per_class", "1", "recall"], KeyError), "per_class.1.recall is missing"),
    ],
    ids=["nan-accuracy", "infinite-f1", "negative-infinity", "no-accuracy", "no-recall"],
)
def test_bad_numbers_or_missing_keys_in_evaluation_json_fail_the_run_clearly(pipeline, evaluation, reason):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", raw=json.dumps(evaluation).encode())  # NaN, Infinity
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    assert_ended(pipeline, run_id, "FAILED", "evaluation.json", reason)


# ------------------------------------------------------------------------------------------- order and replays


def test_a_completion_before_the_run_is_evaluating_is_not_dropped(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    # The evaluation job ran and ended before start_evaluation recorded EVALUATING (as if it had stalled).
    from reviewtune.core.code_bundle import ensure_uploaded
    from reviewtune.core.evaluation import processing_job_request

    code = ensure_uploaded(pipeline.clients.s3, pipeline.settings.bucket)
    request = processing_job_request(pipeline.settings, pipeline.run(run_id), "s3://b/model.tar.gz", code)
    pipeline.sagemaker.create_processing_job(**request)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    with pytest.raises(RunNotReadyError):
        pipeline.evaluation_ended(run_id)
    assert pipeline.tuning_ended(run_id)["status"] == "EVALUATING"  # ResourceInUse: the job exists
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    pipeline.reconcile()
    assert_ended(pipeline, run_id, "SUCCEEDED")
    # the redelivered completion event finds the run ended and tells nobody again
    assert pipeline.evaluation_ended(run_id)["duplicate"] is True
    assert len(pipeline.messages(run_id)) == 1


def test_an_early_stopped_best_job_that_reported_the_objective_is_evaluated(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id, best_status="Stopped")
    result = pipeline.tuning_ended(run_id)
    assert result == {"run_id": run_id, "status": "EVALUATING", "best_training_job": f"{run_id}-001-abcdef01"}
    best = pipeline.run(run_id)["tuning"]["best_training_job"]
    assert best["status"] == "Stopped" and best["objective"] == 74.0


def test_without_best_job_from_sagemaker_the_best_eligible_trial_is_chosen(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.sagemaker.finish_tuning(
        run_id,
        trials=[
            {"status": "Stopped", "objective": 90.0, "objective_status": "Failed"},  # no objective: not eligible
            {"status": "Stopped", "objective": 71.0, "objective_status": "Succeeded"},
            {"status": "Completed", "objective": 65.0, "objective_status": "Succeeded"},
        ],
    )
    assert pipeline.tuning_ended(run_id)["best_training_job"] == f"{run_id}-002-abcdef02"


def _ended_with_a_best_passed_over(pipeline: Pipeline, best: dict, *others: dict, key: str = "incoming/a.tsv",
                                   seed: int = 0) -> tuple[str, dict]:
    """A run whose tuning job ends with the trial ``best`` (objective 85, the one SageMaker names best) and then
    ``others``; its id and start_evaluation's answer."""
    run_id = pipeline.start_tuning(pipeline.drop_event(key, good_file(seed)))["run_id"]
    pipeline.sagemaker.finish_tuning(
        run_id, trials=[{"objective": 85.0, "objective_status": "Succeeded", **best}, *others],
        best=f"{run_id}-001-abcdef01",
    )
    return run_id, pipeline.tuning_ended(run_id)


def test_a_best_trial_stopped_before_it_saved_a_model_gives_way_to_the_next_best(pipeline):
    """SageMaker may name as best a trial stopped (the tuning job halted at its target) before it saved: it has
    an objective, and its description names the artifact's location as every one does, but no object is there. The
    next best trial with a model is evaluated; with none, the run fails once."""
    stopped = {"status": "Stopped", "no_model": True}
    run_id, started = _ended_with_a_best_passed_over(
        pipeline, stopped, {"status": "Completed", "objective": 80.0, "objective_status": "Succeeded"})
    assert started["best_training_job"] == f"{run_id}-002-abcdef02"
    assert pipeline.run(run_id)["tuning"]["best_training_job"]["objective"] == 80.0

    other, _ = _ended_with_a_best_passed_over(pipeline, stopped, key="incoming/b.tsv", seed=1)
    assert_ended(pipeline, other, "FAILED", "no training job that reported its objective left a model")


def test_a_deleted_training_job_is_recorded_as_deleted_and_the_best_left_gives_way_to_the_next(pipeline):
    """A person deleted trials of an ended tuning job (DeleteTrainingJob: SageMaker forgets the job, the tuning job's
    listing may still name it): the trials are recorded from the listing, marked deleted, and the best of those still
    described is evaluated; with none left, the run fails at once, naming why, not at its deadline."""
    deleted = {"status": "Completed", "deleted": True}
    run_id, started = _ended_with_a_best_passed_over(
        pipeline, deleted, {"status": "Completed", "objective": 80.0, "objective_status": "Succeeded"},
        {"status": "Failed", "objective_status": "Failed", "failure": "AlgorithmError: boom", "deleted": True})
    assert started["best_training_job"] == f"{run_id}-002-abcdef02"
    tuning = pipeline.run(run_id)["tuning"]
    assert [(t["name"][-2:], t["status"], t.get("deleted", False)) for t in tuning["trials"]] == [
        ("01", "Completed", True), ("02", "Completed", False), ("03", "Failed", True)]
    assert tuning["trials"][0]["objective"] == 85.0 and tuning["trials"][0]["billable_seconds"] is None
    assert tuning["trials"][2]["failure_reason"] == "AlgorithmError: boom"
    assert tuning["best_training_job"]["objective"] == 80.0 and tuning["total_billable_seconds"] == 600
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    pipeline.evaluation_ended(run_id)
    assert_ended(pipeline, run_id, "SUCCEEDED")

    other, _ = _ended_with_a_best_passed_over(pipeline, deleted, key="incoming/b.tsv", seed=1)
    item = assert_ended(pipeline, other, "FAILED", "no training job that reported its objective left a model",
                        f"{other}-001-abcdef01: SageMaker no longer knows the training job (deleted?)")
    assert pipeline.statuses_told(other) == ["FAILED"]
    assert item["tuning"]["trials"][0]["deleted"] is True


def test_s3_throttling_the_look_for_the_best_trial_s_model_is_tried_again_not_taken_for_no_model(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    best = pipeline.sagemaker.tuning[run_id]["best"]
    throttled = Failing(pipeline.clients.s3, "head_object", "SlowDown", failures=1, when=lambda kw: best in kw["Key"])
    pipeline.use("s3", throttled)
    with pytest.raises(ClientError, match="SlowDown"):
        pipeline.tuning_ended(run_id)
    assert pipeline.run(run_id)["status"] == "TUNING" and throttled.failed == 1

    assert pipeline.tuning_ended(run_id)["best_training_job"] == best  # the event delivered again


def _tuning_ended_two_hours_ago(pipeline: Pipeline, run_id: str) -> None:
    """The step taken past evaluation.CHAMPION_READ_RETRY_SECONDS after the tuning job ended (the reconciler's, after
    lost events): a denial of S3 is then no longer waited out."""
    pipeline.sagemaker.tuning[run_id]["ended_at"] = datetime.now(UTC) - timedelta(hours=2)


@pytest.mark.parametrize("waited_out", [False, True])
def test_s3_failing_the_look_for_the_best_model_with_a_server_error_is_tried_again_not_taken_for_no_model(
        pipeline, waited_out):
    # HeadObject has no body: its error code is the HTTP status alone ("503", not "SlowDown")
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    if waited_out:
        _tuning_ended_two_hours_ago(pipeline, run_id)
    best = pipeline.sagemaker.tuning[run_id]["best"]
    failing = Failing(pipeline.clients.s3, "head_object", "503", "Service Unavailable", failures=1,
                      when=lambda kw: best in kw["Key"])
    pipeline.use("s3", failing)
    with pytest.raises(ClientError, match="503"):
        pipeline.tuning_ended(run_id)
    assert pipeline.run(run_id)["status"] == "TUNING"

    assert pipeline.tuning_ended(run_id)["best_training_job"] == best


@pytest.mark.parametrize("waited_out", [False, True])
def test_a_denied_look_for_the_best_model_is_waited_out_then_the_trial_taken_not_called_unsaved(pipeline, waited_out):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    if waited_out:
        _tuning_ended_two_hours_ago(pipeline, run_id)
    best = pipeline.sagemaker.tuning[run_id]["best"]
    pipeline.use("s3", Failing(pipeline.clients.s3, "head_object", "403", "Forbidden", failures=None,
                               when=lambda kw: "/models/" in kw["Key"]))
    if not waited_out:  # IAM during a stack update may deny for a moment
        with pytest.raises(ClientError, match="403"):
            pipeline.tuning_ended(run_id)
        assert pipeline.run(run_id)["status"] == "TUNING"
        return
    # after that, the evaluation job (SageMaker's role) reads the model as it did before it was looked for
    assert pipeline.tuning_ended(run_id)["best_training_job"] == best
    assert pipeline.run(run_id)["status"] == "EVALUATING"


def _expire_idempotency_records(stack) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.idempotency_table)
    for item in table.scan()["Items"]:
        table.delete_item(Key={"id": item["id"]})


@pytest.mark.parametrize("outcome", ["REJECTED", "FAILED"])
def test_a_replay_after_the_idempotency_record_expired_does_nothing(pipeline, stack, outcome):
    if outcome == "FAILED":
        pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ValidationException"]
        event = pipeline.drop_event()
    else:
        event = pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n")
    run_id = pipeline.start_tuning(event)["run_id"]
    assert_ended(pipeline, run_id, outcome)
    calls = list(pipeline.sagemaker.calls)
    _expire_idempotency_records(stack)
    replay = pipeline.start_tuning(dict(event, id="replayed-much-later"))
    assert replay == {"run_id": run_id, "status": outcome, "duplicate": True}
    assert pipeline.sagemaker.calls == calls
    assert_ended(pipeline, run_id, outcome)


def test_every_event_of_a_succeeded_run_replayed_after_the_idempotency_records_expired_changes_nothing(
    pipeline, stack
):
    """The idempotency records are a first line only: past their expiry each handler meets the run's state."""
    event = pipeline.drop_event()
    run_id = pipeline.start_tuning(event)["run_id"]
    pipeline.succeed(run_id)
    item = assert_ended(pipeline, run_id, "SUCCEEDED")
    calls, packages = list(pipeline.sagemaker.calls), pipeline.sagemaker.packages()
    _expire_idempotency_records(stack)
    replayed = {"run_id": run_id, "status": "SUCCEEDED", "duplicate": True}  # each handler read the run's state
    assert pipeline.start_tuning(dict(event, id="replayed-much-later")) == replayed
    assert pipeline.tuning_ended(run_id) == replayed
    assert pipeline.evaluation_ended(run_id) == replayed
    made = [call for call in pipeline.sagemaker.calls[len(calls):] if not call.startswith(("describe", "list"))]
    assert made == []  # no job, package or approval
    assert pipeline.run(run_id) == item and pipeline.sagemaker.packages() == packages
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


# ------------------------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize("stage", ["TUNING", "EVALUATING"])
def test_a_run_past_its_deadline_ends_failed_and_counts_as_stuck(pipeline, stage, capsys):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    if stage == "EVALUATING":
        pipeline.finish_tuning_well(run_id)
        pipeline.tuning_ended(run_id)
    seconds = pipeline.settings.run_deadlines[RunStatus(stage)]
    assert pipeline.reconcile(later(seconds / 3600 - 0.1))["stuck"] == 0
    result = pipeline.reconcile(later(seconds / 3600 + 0.1))
    assert result["stuck"] == 1
    item = assert_ended(pipeline, run_id, "FAILED", f"stayed {stage} longer than its deadline")
    said = "tuning" if stage == "TUNING" else "evaluation"
    assert item["failed_stage"] == said and f"failed during {said}" in pipeline.messages(run_id)[0]["Subject"]
    stop = "stop_hyper_parameter_tuning_job" if stage == "TUNING" else "stop_processing_job"
    assert stop in pipeline.sagemaker.calls
    assert pipeline.reconcile(later(100))["stuck"] == 0


def _deadline_passed_after_its_job_ended(pipeline: Pipeline, run_id: str, job: dict, hours_before: float,
                                         deadline_hours_ago: float = 1) -> None:
    """The run's deadline ``deadline_hours_ago``, its job ended ``hours_before`` it (negative: after it); the passes in
    between were missed."""
    now = datetime.now(UTC)
    job["ended_at"] = now - timedelta(hours=deadline_hours_ago + hours_before)
    pipeline.clients.runs_table.update_item(
        Key={"run_id": run_id}, UpdateExpression="SET deadline_at = :at",
        ExpressionAttributeValues={":at": now_iso(now - timedelta(hours=deadline_hours_ago))})


@pytest.mark.parametrize("refusal", ["ThrottlingException", "AccessDeniedException"])
def test_a_tuning_job_that_ended_before_the_deadline_whose_event_was_lost_is_evaluated_after_the_deadline(
        pipeline, refusal):
    """Its state-change event lost (a dead-letter queue), no pass between its end and the run's deadline: the first
    pass after the deadline (here after a refused read of the job: throttled, or denied while a stack update settles)
    starts the evaluation, since the job ended in time: its trials are not thrown away."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)  # the tuning job's event lost
    _deadline_passed_after_its_job_ended(pipeline, run_id, pipeline.sagemaker.tuning[run_id], hours_before=2)
    pipeline.sagemaker.fail["describe_hyper_parameter_tuning_job"] = [refusal]  # once

    throttled = pipeline.reconcile(later(0))
    assert refusal in throttled["errors"][run_id] and pipeline.run(run_id)["status"] == "TUNING"
    result = pipeline.reconcile(later(0.1))

    assert result["stuck"] == 0 and run_id not in result["errors"]
    assert pipeline.run(run_id)["status"] == "EVALUATING" and pipeline.statuses_told(run_id) == []


@pytest.mark.parametrize(("stage", "hours_before", "deadline_hours_ago"), [
    ("TUNING", -0.5, 1), ("TUNING", 2, 25), ("EVALUATING", 2, 1),
], ids=["tuning job ended after the deadline", "past the late step's grace", "evaluation job ended in time"])
def test_a_run_past_its_deadline_whose_job_ended_late_or_long_ago_or_evaluated_ends_at_its_deadline(
        pipeline, stage, hours_before, deadline_hours_ago):
    """The late step is a TUNING run's only, within a day: record_results keeps clear of an EVALUATING run's
    deadline, so that no approval lands after the deadline's end withdrew it."""
    assert reconciler.LATE_STEP_GRACE_SECONDS == 24 * 3600
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    job = pipeline.sagemaker.tuning[run_id]
    if stage == "EVALUATING":
        pipeline.tuning_ended(run_id)
        pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)  # its event lost
        job = pipeline.sagemaker.processing[f"{run_id}-eval"]
    _deadline_passed_after_its_job_ended(pipeline, run_id, job, hours_before, deadline_hours_ago)

    assert pipeline.reconcile(later(0))["stuck"] == 1

    assert_ended(pipeline, run_id, "FAILED", f"stayed {stage} longer than its deadline")


@pytest.mark.parametrize("stage", ["TUNING", "EVALUATING"])
def test_a_run_past_its_deadline_whose_job_stop_is_throttled_ends_once_its_job_is_stopped(pipeline, stage):
    """Nothing looks at an ended run's job again: ending the run while its stop was throttled left the job running
    (and costing) for as long as it would have run."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    job, stop = run_id, "stop_hyper_parameter_tuning_job"
    if stage == "EVALUATING":
        pipeline.finish_tuning_well(run_id)
        pipeline.tuning_ended(run_id)
        job, stop = f"{run_id}-eval", "stop_processing_job"
    jobs = pipeline.sagemaker.tuning if stage == "TUNING" else pipeline.sagemaker.processing
    past = pipeline.settings.run_deadlines[RunStatus(stage)] / 3600 + 0.1
    pipeline.sagemaker.fail[stop] = ["ThrottlingException"]
    assert "ThrottlingException" in pipeline.reconcile(later(past))["errors"][run_id]
    assert pipeline.run(run_id)["status"] == stage and jobs[job]["status"] == "InProgress"
    assert pipeline.reconcile(later(past))["stuck"] == 1  # the next pass
    assert jobs[job]["status"] == "Stopping"
    assert_ended(pipeline, run_id, "FAILED", f"stayed {stage} longer than its deadline")


def test_a_run_that_waits_in_a_stopped_queue_past_its_deadline_ends_failed_told_it_never_tuned(pipeline):
    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")["run_id"]
    for other in {first["run_id"], *(r["run_id"] for r in queued)} - {late}:
        slots.release(pipeline.clients.runs_table, other)  # the queue stopped: no run at work holds a slot
    queued_hours = pipeline.settings.run_deadlines[RunStatus.QUEUED] / 3600
    # never shorter than tuning's and evaluating's together: the runs ahead are past their own deadlines by then
    result = pipeline.reconcile(later(queued_hours + 1))
    assert result["stuck"] == 3 and result["steps"][late] == "past deadline"
    item = assert_ended(pipeline, late, "FAILED", "stayed QUEUED longer than its deadline")
    assert item["failed_stage"] == "queue" and pipeline.statuses_told(late) == ["QUEUED", "FAILED"]
    message = pipeline.messages(late)[-1]
    assert message["Subject"].endswith("failed while queued"), message["Subject"]
    assert "ended FAILED while queued" in message["Message"]
    assert late not in pipeline.sagemaker.tuning


@pytest.mark.parametrize("broken_by", ["item of another shape", "request refused before it is sent"])
def test_a_queued_run_no_start_can_make_a_job_of_ends_at_once_and_leaves_its_slot_to_the_run_behind(
    pipeline, monkeypatch, broken_by
):
    """A queued run whose tuning job no try can make (its item of another shape, written by an earlier version; a
    request botocore refuses before sending it) is ended FAILED with the error when a slot frees for it, rather than
    hold that slot from the runs behind it until its queue deadline; the run behind starts in the same step."""
    from botocore.exceptions import ParamValidationError

    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i)))["run_id"] for i in range(4)]
    broken, behind = ids[2], ids[3]
    assert [pipeline.run(i)["status"] for i in ids] == ["TUNING", "TUNING", "QUEUED", "QUEUED"]
    if broken_by == "item of another shape":
        RunsRepository(pipeline.clients.runs_table).update_if(broken, RunStatus.QUEUED, code={"old_field": "x"})
        expected = "its tuning job could not be prepared: TypeError: "
    else:
        create = tuning._create

        def refused(clients, request):
            if request["HyperParameterTuningJobName"] == broken:
                raise ParamValidationError(report="Invalid length for parameter Tags[0].Value")
            return create(clients, request)

        monkeypatch.setattr(tuning, "_create", refused)
        expected = "the tuning job's request is not valid: Parameter validation failed:\nInvalid length"

    pipeline.succeed(ids[0])  # a slot frees

    assert_ended(pipeline, broken, "FAILED", expected)
    assert pipeline.statuses_told(broken) == ["QUEUED", "FAILED"] and broken not in pipeline.sagemaker.tuning
    assert pipeline.run(behind)["status"] == "TUNING"
    assert set(slots.holders(pipeline.clients.runs_table)) == {ids[1], behind}


@pytest.mark.parametrize(("ranges", "expected"), [
    ({f"h{i}": [1, 2] for i in range(31)}, "HYPERPARAMETER_RANGES names 31 hyperparameters; SageMaker tunes at most 30"),
    ({"learning_rate": {"min": 2, "max": 1}}, "range 'learning_rate': min 2 is greater than max 1"),
])
def test_ranges_sagemaker_refuses_for_every_job_end_the_run_at_once_and_leave_the_other_functions_working(
        pipeline, monkeypatch, ranges, expected):
    # set by a stack update while a run was being evaluated: that run still ends well, a new one fails with the reason
    evaluated = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(1)))["run_id"]
    handler = pipeline.handlers["start_tuning"]
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(
        handler.ctx, settings=dataclasses.replace(handler.ctx.settings, hyperparameter_ranges=ranges)))

    run_id = pipeline.start_tuning(pipeline.drop_event("incoming/b.tsv", good_file(2)))["run_id"]

    assert_ended(pipeline, run_id, "FAILED", f"the tuning job's request is not valid: {expected}")
    assert pipeline.statuses_told(run_id) == ["FAILED"] and run_id not in pipeline.sagemaker.tuning
    pipeline.succeed(evaluated)
    assert pipeline.run(evaluated)["status"] == "SUCCEEDED"


def test_a_run_queued_past_its_deadline_behind_runs_at_work_waits_on_and_starts_when_one_ends(pipeline):
    """A queue deeper than the slots: the runs ahead work within their own deadlines, so the queued run is not stuck;
    its deadline moves on, and the end of a run ahead starts it."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    late = ids[2]
    assert pipeline.run(late)["status"] == "QUEUED"
    queued_hours = pipeline.settings.run_deadlines[RunStatus.QUEUED] / 3600
    for ahead in ids[:2]:  # long tuning jobs: within their deadlines on the pass's clock
        pipeline.clients.runs_table.update_item(Key={"run_id": ahead}, UpdateExpression="SET deadline_at = :t",
                                                ExpressionAttributeValues={":t": now_iso(later(2 * queued_hours))})

    result = pipeline.reconcile(later(queued_hours + 1))

    assert result["stuck"] == 0 and result["steps"][late] == "queued past its deadline: waits behind runs at work"
    item = pipeline.run(late)
    assert item["status"] == "QUEUED" and sorted(item["queue_waited_for"]) == sorted(ids[:2])
    assert parse_iso(item["deadline_at"]) > later(2 * queued_hours)  # one QUEUED deadline on from the pass's clock
    assert pipeline.statuses_told(late) == ["QUEUED"]
    pipeline.succeed(ids[0])
    assert pipeline.run(late)["status"] == "TUNING"
    pipeline.succeed(late)
    assert_ended(pipeline, late, "SUCCEEDED")
    assert pipeline.statuses_told(late) == ["QUEUED", "SUCCEEDED"]


def test_a_queued_run_that_waited_behind_runs_at_work_ends_saying_how_long_it_was_queued(pipeline):
    """Its deadline moved on while runs ahead worked; once none works its deadline ends it, and the reason says so
    (the deadline ran from the last pass that saw them work) and how long it was queued in all, not only the
    deadline."""
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-late", "dataset": "late.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-late", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: late", "waits"))
    queued_at = parse_iso(runs.get("reviewtune-late")["status_history"]["QUEUED"])
    assert runs.update_if("reviewtune-late", RunStatus.QUEUED, queue_waited_for=["reviewtune-ahead"],
                          deadline_at=now_iso(queued_at + timedelta(days=2)))
    result = pipeline.reconcile(queued_at + timedelta(days=2, hours=5))  # the run ahead ended; nothing works
    assert result["steps"]["reviewtune-late"] == "past deadline"
    assert_ended(pipeline, "reviewtune-late", "FAILED", "stayed QUEUED longer than its deadline",
                 "after the runs ahead of it last worked (reviewtune-ahead), queued 53 h in all")


def test_a_run_ended_at_its_deadline_is_told_the_time_it_was_given_not_the_stack_s_setting_now(pipeline):
    """A run given 20 days in TUNING (the tuning budget of the deployment that started it: MaxJobs cut since) ends at
    that deadline: its reason names the 20 days, not the deadline a run entering TUNING gets today."""
    run_id = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file()))["run_id"]
    entered = parse_iso(pipeline.run(run_id)["status_history"]["TUNING"])
    deadline = entered + timedelta(days=20)
    pipeline.clients.runs_table.update_item(Key={"run_id": run_id}, UpdateExpression="SET deadline_at = :t",
                                            ExpressionAttributeValues={":t": now_iso(deadline)})
    assert pipeline.settings.run_deadlines[RunStatus.TUNING] != 20 * 86400

    result = pipeline.reconcile(deadline + timedelta(minutes=5))

    assert result["steps"][run_id] == "past deadline"
    assert_ended(pipeline, run_id, "FAILED", "the run stayed TUNING longer than its deadline (480 h, RUN_STATE_DEADLINES)")


def test_a_queued_run_holding_a_slot_ends_at_its_deadline_though_runs_work(pipeline):
    """Its start took a slot and keeps failing (it waits for no run): its deadline ends it, told once."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    late = ids[2]
    queued_hours = pipeline.settings.run_deadlines[RunStatus.QUEUED] / 3600
    for ahead in ids[:2]:  # at work within their deadlines on the pass's clock
        pipeline.clients.runs_table.update_item(Key={"run_id": ahead}, UpdateExpression="SET deadline_at = :t",
                                                ExpressionAttributeValues={":t": now_iso(later(2 * queued_hours))})
    assert slots.acquire(pipeline.clients.runs_table, late, 3)  # as a start that took the slot, then failed
    result = pipeline.reconcile(later(queued_hours + 1))
    assert result["steps"][late] == "past deadline"
    assert_ended(pipeline, late, "FAILED", "stayed QUEUED longer than its deadline")
    assert late not in slots.holders(pipeline.clients.runs_table)


def _queued_holding_a_slot_with_a_throttled_start(pipeline) -> tuple[str, datetime]:
    """Three files, two slots: the third waits; a slot frees, it takes it, and SageMaker throttles its start; its
    deadline has just passed. Returns its run id and the time of its start's next try."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    late = ids[2]
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")
    item = pipeline.run(late)
    assert item["status"] == "QUEUED" and late in slots.holders(pipeline.clients.runs_table)
    pipeline.clients.runs_table.update_item(Key={"run_id": late}, UpdateExpression="SET deadline_at = :t",
                                            ExpressionAttributeValues={":t": now_iso(later(-1 / 3600))})
    return late, parse_iso(item["tuning_start"]["next_attempt_at"])


@pytest.mark.parametrize("schedule", ["a pass soon after the try is due", "hourly passes"])
def test_a_queued_run_whose_throttled_start_is_due_after_its_deadline_gets_that_try(pipeline, schedule):
    """Its deadline falls before its start's next try: the deadline moves just past that try, which starts it; with
    passes further apart than that, the first pass after the try fell due moves it once more and makes the try."""
    late, retry = _queued_holding_a_slot_with_a_throttled_start(pipeline)
    grace = timedelta(seconds=queue_wait.RETRY_GRACE_SECONDS)

    result = pipeline.reconcile(later(0))  # past the deadline, before the next try

    assert result["steps"][late] == "queued past its deadline: waits for its start's next try"
    assert parse_iso(pipeline.run(late)["deadline_at"]) == retry + grace
    if schedule == "hourly passes":
        result = pipeline.reconcile(retry + grace + timedelta(minutes=30))
        assert result["steps"][late] == "queued past its deadline: waits for its start's next try"
    else:
        result = pipeline.reconcile(retry + timedelta(seconds=1))
    assert result["stuck"] == 0 and pipeline.run(late)["status"] == "TUNING"  # the pass's start of the queue made it
    pipeline.succeed(late)
    assert_ended(pipeline, late, "SUCCEEDED")


def test_a_queued_run_whose_start_tries_record_nothing_ends_at_its_moved_deadline(pipeline, monkeypatch):
    late, retry = _queued_holding_a_slot_with_a_throttled_start(pipeline)
    # it had waited behind runs at work before it took its slot: no longer what holds it up
    assert RunsRepository(pipeline.clients.runs_table).update_if(late, RunStatus.QUEUED, queue_waited_for=[late])
    assert pipeline.reconcile(later(0))["steps"][late].endswith("waits for its start's next try")
    assert pipeline.run(late)["queue_waited_for"] == []
    launch = tuning.launch

    def dies(run, settings, clients):  # every try of its start dies before recording anything
        if run["run_id"] == late:
            raise RuntimeError("the invocation died")
        return launch(run, settings, clients)

    def never_counted(runs, settings, clients, run, exc, making):  # a dead invocation counts no try either
        raise RuntimeError("the invocation died")

    monkeypatch.setattr(tuning, "launch", dies)
    monkeypatch.setattr(tuning, "_count_try", never_counted)
    grace = timedelta(seconds=queue_wait.RETRY_GRACE_SECONDS)
    pipeline.reconcile(retry + timedelta(seconds=1))  # the try, due: it dies
    assert pipeline.run(late)["status"] == "QUEUED"
    first_due = pipeline.reconcile(retry + grace + timedelta(seconds=1))  # past the moved deadline, the try due
    assert first_due["steps"][late].endswith("waits for its start's next try")  # once for this recorded try
    assert pipeline.run(late)["status"] == "QUEUED"
    assert pipeline.reconcile(retry + 3 * grace)["steps"][late] == "past deadline"
    item = assert_ended(pipeline, late, "FAILED", "stayed QUEUED longer than its deadline")
    assert "runs ahead of it" not in item["failure_reason"]


def test_queued_runs_holding_slots_are_not_counted_as_runs_at_work(pipeline):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    late = ids[2]
    for other in ids[:2]:  # the slots are held by a run whose start is refused again and again: no run at work
        slots.release(pipeline.clients.runs_table, other)
    runs = RunsRepository(pipeline.clients.runs_table)
    assert slots.acquire(pipeline.clients.runs_table, "reviewtune-stuckstart", 2)
    assert runs.create({"run_id": "reviewtune-stuckstart", "dataset": "s.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-stuckstart", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("q", "waits"))
    assert queue_wait.runs_working_ahead(runs, pipeline.clients.runs_table, late) == []
    queued_hours = pipeline.settings.run_deadlines[RunStatus.QUEUED] / 3600
    assert pipeline.reconcile(later(queued_hours + 1))["steps"][late] == "past deadline"


def _meanwhile(monkeypatch, run_id: str, step, *, before_the_deadline_is_recorded: bool) -> None:
    """Run ``step`` (another invocation moving the run on) inside the reconciler's deadline pass for ``run_id``: just
    before the pass records the deadline on the run, or just after it stopped the run's jobs."""
    if before_the_deadline_is_recorded:
        record = stop_requests.record_deadline

        def step_first(runs, run, **kwargs):
            if run["run_id"] == run_id:
                step()
            return record(runs, run, **kwargs)

        monkeypatch.setattr(stop_requests, "record_deadline", step_first)
        return
    stop_jobs = reconciler._stop_jobs

    def then_step(run, clients):
        stop_jobs(run, clients)
        if run["run_id"] == run_id:
            step()

    monkeypatch.setattr(reconciler, "_stop_jobs", then_step)


@pytest.mark.parametrize("before", [True, False], ids=["started before the pass records it", "started after"])
def test_a_queued_run_started_while_a_pass_ends_it_at_its_deadline(pipeline, monkeypatch, before):
    """Started before the pass records the deadline on the run: the record is refused and the run goes on tuning,
    its new job followed as any. Started after: the start's move to TUNING is refused, the job it made is stopped,
    and the run ends FAILED at its deadline, told once."""
    # The pass runs on a clock moved past the QUEUED deadline, the start on the real one: the start's TUNING deadline
    # is made longer than that clock's jump, as the start would enter TUNING at the pass's own time.
    pipeline.settings.run_deadlines[RunStatus.TUNING] *= 2
    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")["run_id"]
    others = [r["run_id"] for r in [first, *queued] if r["run_id"] != late]
    for other in others:  # the queue stopped (no run at work holds a slot), so the queued run's deadline holds
        slots.release(pipeline.clients.runs_table, other)
    runs = RunsRepository(pipeline.clients.runs_table, pipeline.settings.run_deadlines)
    started = []

    def start():  # a slot frees elsewhere and start_queued_runs starts the run right now
        for other in others:
            slots.release(pipeline.clients.runs_table, other)
        assert slots.acquire(pipeline.clients.runs_table, late, pipeline.settings.max_concurrent_runs)
        started.append(tuning.launch(runs.get(late), pipeline.settings, pipeline.clients)["status"])

    _meanwhile(monkeypatch, late, start, before_the_deadline_is_recorded=before)
    queued_hours = pipeline.settings.run_deadlines[RunStatus.QUEUED] / 3600
    result = pipeline.reconcile(later(queued_hours + 1))  # past the QUEUED deadline, not TUNING's
    if before:
        # the two runs ahead are past their own TUNING deadlines on that clock (a queued run waits for them)
        assert result["steps"][late] == "moved on" and result["stuck"] == 2 and started == ["TUNING"]
        assert pipeline.run(late)["status"] == "TUNING" and pipeline.statuses_told(late) == ["QUEUED"]
        assert pipeline.sagemaker.tuning[late]["status"] == "InProgress"  # followed by its run, as any tuning job
        return
    assert started == ["FAILED"] and result["steps"][late] == "past deadline"  # the start ended it first
    assert_ended(pipeline, late, "FAILED", "stayed QUEUED longer than its deadline")
    assert pipeline.sagemaker.tuning[late]["status"] == "Stopping"
    assert not slots.holders(pipeline.clients.runs_table) or late not in slots.holders(pipeline.clients.runs_table)


@pytest.mark.parametrize("before", [True, False], ids=["started before the pass records it", "started after"])
def test_a_run_whose_evaluation_starts_while_a_pass_ends_it_at_its_deadline(pipeline, monkeypatch, before):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)  # its completion event is on its way, in another invocation
    _meanwhile(monkeypatch, run_id, lambda: pipeline.tuning_ended(run_id), before_the_deadline_is_recorded=before)
    # its TUNING deadline passed a minute ago (the pass's own clock: the deadline of EVALUATING is hours away)
    pipeline.clients.runs_table.update_item(Key={"run_id": run_id}, UpdateExpression="SET deadline_at = :t",
                                            ExpressionAttributeValues={":t": now_iso(later(-1 / 60))})
    result = pipeline.reconcile(later(0))
    assert result["steps"][run_id] == ("moved on" if before else "past deadline")
    if before:
        assert result["stuck"] == 0 and pipeline.run(run_id)["status"] == "EVALUATING"
        pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=dict(EVALUATION))
        assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"  # its evaluation recorded, as any run's
        assert_ended(pipeline, run_id, "SUCCEEDED")
        return
    assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert f"{run_id}-eval" not in pipeline.sagemaker.processing  # the event found the deadline: no job made


def test_an_evaluation_job_made_before_a_deadline_pass_and_moved_on_after_it_ends_failed_not_stopped(
    pipeline, monkeypatch
):
    """start_evaluation made the evaluation job and died before moving the run to EVALUATING; the run passed its
    TUNING deadline and a pass stopped that job; then Lambda's retry of the event came. The retry's move is refused
    (the pass recorded the deadline before stopping anything): the run ends FAILED at its deadline, told once. It
    never reaches EVALUATING with a job that ends Stopped, which would end it STOPPED though nobody stopped it."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_past_deadline(run_id)
    sagemaker, transition = pipeline.sagemaker, RunsRepository.transition
    seconds = pipeline.settings.run_deadlines[RunStatus.TUNING]

    def died_before(self, run_id_, sources, target, **kwargs):
        if target is RunStatus.EVALUATING:
            raise TimeoutError("the invocation died here")
        return transition(self, run_id_, sources, target, **kwargs)

    monkeypatch.setattr(RunsRepository, "transition", died_before)
    with pytest.raises(TimeoutError):
        pipeline.tuning_ended(run_id)
    monkeypatch.setattr(RunsRepository, "transition", transition)
    assert sagemaker.processing[f"{run_id}-eval"]["status"] == "InProgress"
    item = pipeline.run(run_id)
    assert item["status"] == "TUNING"

    # the pass, past the deadline, up to its jobs' stop; then the retry; then the pass's end of the run
    end_run = reconciler.end_run
    retried = []

    def retry_then_end(*args, **kwargs):
        retried.append(pipeline.tuning_ended(run_id)["status"])
        return end_run(*args, **kwargs)

    monkeypatch.setattr(reconciler, "end_run", retry_then_end)
    result = pipeline.reconcile(later(seconds / 3600 + 0.1))
    assert retried == ["FAILED"] and result["steps"][run_id] == "past deadline"
    assert sagemaker.processing[f"{run_id}-eval"]["status"] == "Stopping"
    item = assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert "EVALUATING" not in item["status_history"] and stop_requests.is_deadline(item)


def test_an_evaluation_job_made_as_its_run_reached_its_deadline_is_stopped(pipeline):
    """The reconciler ends a TUNING run at its deadline while start_evaluation, moments from the end, has just created
    the evaluation job: that job has no run to record it, so it is stopped, and the run is told once, FAILED."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_past_deadline(run_id)
    sagemaker, create = pipeline.sagemaker, pipeline.sagemaker.create_processing_job
    seconds = pipeline.settings.run_deadlines[RunStatus.TUNING]

    def then_the_deadline(**request):
        made = create(**request)
        pipeline.reconcile(later(seconds / 3600 + 0.1))  # ends the run before start_evaluation's transition
        return made

    sagemaker.create_processing_job = then_the_deadline
    pipeline.tuning_ended(run_id)
    assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert sagemaker.processing[f"{run_id}-eval"]["status"] == "Stopping"
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_run_throttled_once_at_its_start_then_overrunning_tuning_is_not_said_to_be_unstarted(pipeline):
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.reconcile(later(0.1))
    item = pipeline.run(run_id)
    assert item["status"] == "TUNING" and item["tuning_start"]["last_error"].startswith("ThrottlingException")
    seconds = pipeline.settings.run_deadlines[RunStatus.TUNING]
    pipeline.reconcile(later(seconds / 3600 + 0.2))
    item = assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert "had not started" not in item["failure_reason"]  # its tuning job ran: the job ran long


def test_a_file_s_event_delivered_again_leaves_a_throttled_start_to_its_next_try(pipeline, stack):
    """The event comes again (a replay once its idempotency record expired) while SageMaker's throttling has the
    start waiting for its next try: it makes no early try, which would count towards StartMaxAttempts."""
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    event = pipeline.drop_event()
    run_id = pipeline.start_tuning(event)["run_id"]
    attempt = pipeline.run(run_id)["tuning_start"]
    idempotency = boto3.resource("dynamodb", region_name=REGION).Table(stack.idempotency_table)
    for record in idempotency.scan()["Items"]:
        idempotency.delete_item(Key={"id": record["id"]})
    creates = pipeline.sagemaker.calls.count("create_hyper_parameter_tuning_job")

    result = pipeline.start_tuning(event)

    assert result == {"run_id": run_id, "status": "CLAIMED", "retry_at": attempt["next_attempt_at"]}
    assert pipeline.sagemaker.calls.count("create_hyper_parameter_tuning_job") == creates
    assert pipeline.run(run_id)["tuning_start"] == attempt
    pipeline.reconcile(later(0.1))  # the try when due
    assert pipeline.run(run_id)["status"] == "TUNING"


def test_a_tuned_run_whose_evaluation_job_sagemaker_kept_throttling_names_it_at_its_deadline(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.sagemaker.fail["create_processing_job"] = ["ThrottlingException"] * 20
    assert pipeline.tuning_ended(run_id)["status"] == "TUNING"
    pipeline.reconcile(later(0.1))  # the second try, throttled too
    seconds = pipeline.settings.run_deadlines[RunStatus.TUNING] + reconciler.LATE_STEP_GRACE_SECONDS
    pipeline.reconcile(later(seconds / 3600 + 0.2))  # no pass in between: past the late step's grace too
    item = assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline",
                        "SageMaker had not started its evaluation job after 2 attempts: ThrottlingException")
    assert item["failed_stage"] == "evaluation" and "failed during evaluation" in pipeline.messages(run_id)[0]["Subject"]


@pytest.mark.parametrize("stuck", [0, 1])
def test_the_reconcile_handler_publishes_the_stuck_runs_metric(pipeline, capsys, stuck):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    if stuck:  # the run's TUNING deadline has passed (the handler's own clock)
        pipeline.clients.runs_table.update_item(
            Key={"run_id": run_id}, UpdateExpression="SET deadline_at = :past",
            ExpressionAttributeValues={":past": "2020-01-01T00:00:00+00:00"},
        )
    capsys.readouterr()
    result = pipeline.reconcile()
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [m for m in metrics if "StuckRuns" in m]
    assert emf["StuckRuns"] in ([float(stuck)], float(stuck))
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "reviewtune"
    assert result["stuck"] == stuck
    assert pipeline.run(run_id)["status"] == ("FAILED" if stuck else "TUNING")


def _start_dying_after_its_claim(pipeline: Pipeline) -> tuple[dict, str]:
    """A drop whose start dies after its claim (S3 failing its read, and failing on); its event and run id."""
    event = pipeline.drop_event()
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=None))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(event)
    return event, _run_id(pipeline)


def test_a_claim_whose_start_died_is_started_over_by_the_reconciler(pipeline):
    _, run_id = _start_dying_after_its_claim(pipeline)
    assert pipeline.run(run_id)["status"] == "CLAIMED"
    pipeline.use("s3", pipeline.clients.s3._wrapped)
    assert pipeline.reconcile()["steps"] == {}  # a fresh claim may still be in progress
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "TUNING"


def test_lambda_s_retry_of_a_start_that_died_is_not_taken_for_dead_while_it_runs(pipeline):
    # a start that timed out is retried by Lambda about 6 and 13 minutes after the claim; the last retry may read the
    # file until 18 minutes after it, past STALE_CLAIM_SECONDS counted from the claim: it touches the claim first
    event, run_id = _start_dying_after_its_claim(pipeline)
    claimed_at = now_iso(datetime.now(UTC) - timedelta(minutes=13))
    pipeline.clients.runs_table.update_item(Key={"run_id": run_id}, UpdateExpression="SET updated_at = :t",
                                            ExpressionAttributeValues={":t": claimed_at})
    with pytest.raises(Exception, match="InternalError"):  # Lambda's retry, still reading (here: failing again)
        pipeline.start_tuning(event)
    assert pipeline.run(run_id)["updated_at"] > claimed_at
    pipeline.use("s3", pipeline.clients.s3._wrapped)

    assert pipeline.reconcile(later(5 / 60))["steps"] == {}  # 18 minutes after the claim: the retry's, not stale
    assert "restarts" not in pipeline.run(run_id)
    pipeline.reconcile(later(0.5))
    assert pipeline.run(run_id)["status"] == "TUNING"


def test_a_pass_restarts_at_most_its_share_of_stale_claims_and_the_next_pass_the_rest(pipeline):
    events = _stale_claims(pipeline, reconciler.MAX_RESTARTS_PER_PASS + 1)
    runs = RunsRepository(pipeline.clients.runs_table)
    assert len(runs.by_status("CLAIMED")) == len(events)
    first = pipeline.reconcile(later(0.5))
    restarted = [run_id for run_id, step in first["steps"].items() if step.startswith("claim restarted")]
    assert len(restarted) == reconciler.MAX_RESTARTS_PER_PASS
    [waiting] = runs.by_status("CLAIMED")
    assert waiting["run_id"] not in restarted
    second = pipeline.reconcile(later(0.6))
    assert second["steps"][waiting["run_id"]].startswith("claim restarted")
    assert runs.by_status("CLAIMED") == []


def _stale_claims(pipeline: Pipeline, count: int) -> list[dict]:
    """``count`` dropped files whose start died after the claim (S3 failing), as an S3 outage leaves them."""
    events = [pipeline.drop_event(f"incoming/{n}.tsv", good_file(n)) for n in range(count)]
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=None))
    for event in events:
        with pytest.raises(Exception, match="InternalError"):
            pipeline.start_tuning(event)
    pipeline.use("s3", pipeline.clients.s3._wrapped)
    return events


def test_a_pass_with_time_left_restarts_stale_claims_past_its_share_while_the_time_lasts(pipeline, monkeypatch):
    count = reconciler.MAX_RESTARTS_PER_PASS + 3
    _stale_claims(pipeline, count)
    reserved = reconciler.RESTART_SECONDS_RESERVED
    made, restart = [], reconciler.restart_claim

    def counted(*args, **kwargs):
        made.append(args[0]["run_id"])
        return restart(*args, **kwargs)

    monkeypatch.setattr(reconciler, "restart_claim", counted)
    first = reconciler.reconcile(  # the time for one restart more than a pass without a clock makes, then none
        pipeline.settings, pipeline.clients, later(0.5),
        seconds_left=lambda: reserved + 60 if len(made) <= reconciler.MAX_RESTARTS_PER_PASS else reserved - 1)
    restarted = [run_id for run_id, step in first["steps"].items() if step.startswith("claim restarted")]
    # one more than a pass without a clock, while the invocation had the time for each, then none
    assert len(restarted) == reconciler.MAX_RESTARTS_PER_PASS + 1
    runs = RunsRepository(pipeline.clients.runs_table)
    assert len(runs.by_status("CLAIMED")) == 2
    second = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.6), seconds_left=lambda: 300.0)
    assert sum(step.startswith("claim restarted") for step in second["steps"].values()) == 2
    assert runs.by_status("CLAIMED") == [] and len(runs.by_status("TUNING")) + len(runs.by_status("QUEUED")) == count


def test_a_pass_nearly_out_of_time_restarts_no_claim_and_counts_none(pipeline):
    """The pass's other steps took its time (a slow outbox): a restart now would be killed by the invocation's end,
    counted, and its claim's deadline would blame the file; the next pass restarts them."""
    _stale_claims(pipeline, 2)
    first = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.5),
                                 seconds_left=lambda: reconciler.RESTART_SECONDS_RESERVED - 1)
    assert not [step for step in first["steps"].values() if step.startswith("claim restarted")]
    claims = RunsRepository(pipeline.clients.runs_table).by_status("CLAIMED")
    assert len(claims) == 2 and not any(claim.get("restarts") for claim in claims)
    second = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.6), seconds_left=lambda: 300.0)
    assert sum(step.startswith("claim restarted") for step in second["steps"].values()) == 2


def test_the_reconcile_function_gives_the_pass_its_invocation_s_remaining_time(pipeline, monkeypatch):
    module, given = pipeline.handlers["reconcile"], []

    def recording(settings, clients, now=None, seconds_left=None, before_restarts=None):
        given.append(seconds_left())
        return reconciler.reconcile(settings, clients, now, seconds_left, before_restarts)

    monkeypatch.setattr(module, "reconcile", recording)
    pipeline.reconcile()
    assert given == [pipeline.context.get_remaining_time_in_millis() / 1000]


class _Killed(BaseException):
    """What no ``except Exception`` sees: Lambda ending an invocation out of time or memory."""


def test_a_restart_that_kills_the_pass_comes_after_every_other_step_and_the_deadline_still_ends_it(
    pipeline, stack, monkeypatch
):
    from reviewtune.core import reconciler

    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "InternalError", failures=1))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n"))
    [told_late] = RunsRepository(pipeline.clients.runs_table).by_status("REJECTED")
    assert pipeline.messages() == []  # its message waits in the outbox
    stale = pipeline.drop_event("incoming/huge.tsv")
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=1))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(stale)  # claimed; its start died
    [claim] = [i for i in RunsRepository(pipeline.clients.runs_table).by_status("CLAIMED")]

    def killed(*_args, **_kwargs):
        raise _Killed("Runtime exited with error: signal: killed")

    monkeypatch.setattr(reconciler, "start_tuning", killed)
    with pytest.raises(_Killed):
        pipeline.reconcile(later(0.5))

    assert pipeline.statuses_told(told_late["run_id"]) == ["REJECTED"]  # sent before the restart
    assert pipeline.run(claim["run_id"])["status"] == "CLAIMED"
    for _ in range(2):  # every later pass dies the same way until the claim's deadline, checked first, ends it
        with pytest.raises(_Killed):
            pipeline.reconcile(later(0.75))
    # the deadline the first restart gave (a claim's hour from it: claims.renewed_deadline), not moved by the others
    renewed = parse_iso(pipeline.run(claim["run_id"])["deadline_at"])
    assert abs(renewed - (later(0.5) + timedelta(hours=1))) < timedelta(minutes=1)
    pipeline.reconcile(later(1.6))
    assert_ended(pipeline, claim["run_id"], "FAILED", "stayed CLAIMED longer than its deadline",
                 "started over 3 time(s) and no start finished")


def test_a_claim_whose_restarts_keep_dying_goes_behind_the_other_stale_claims(pipeline, monkeypatch):
    from reviewtune.core import reconciler

    for key, seed in (("incoming/huge.tsv", 0), ("incoming/good.tsv", 3)):  # both claimed, both starts died
        pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=1))
        with pytest.raises(Exception, match="InternalError"):
            pipeline.start_tuning(pipeline.drop_event(key, good_file(seed)))
        pipeline.use("s3", pipeline.clients.s3._wrapped)
    claims = {c["dataset"]: c["run_id"] for c in RunsRepository(pipeline.clients.runs_table).by_status("CLAIMED")}
    real = reconciler.start_tuning

    def start(obj, settings, clients):
        if obj.key == "incoming/huge.tsv":
            raise _Killed("Runtime exited with error: signal: killed")  # out of memory, every time
        return real(obj, settings, clients)

    monkeypatch.setattr(reconciler, "start_tuning", start)
    with pytest.raises(_Killed):
        pipeline.reconcile(later(0.3))  # the older claim first: its restart dies
    assert pipeline.run(claims["huge.tsv"])["restarts"] == 1
    with pytest.raises(_Killed):
        pipeline.reconcile(later(0.45))  # the claim never restarted goes first now
    assert pipeline.run(claims["good.tsv"])["status"] == "TUNING"


# ------------------------------------------------------------------------------------------- spend guard


def _readme_outcomes_only_policy() -> dict:
    """The filter policy README.md gives for a subscription that receives outcomes (and the alarms) only."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (policy,) = re.findall(r"the filter policy `(\{.*?\})` receives outcomes", readme, flags=re.S)
    return json.loads(policy)


def test_the_readme_s_outcomes_only_subscription_receives_the_alarms_too(stack):
    outcomes_only = _subscriber(stack, "outcomes-and-alarms", _readme_outcomes_only_policy())
    sns = boto3.client("sns", region_name=REGION)
    for status in ("QUEUED", "FAILED"):
        notify.publish(sns, stack.topic_arn, f"run {status}", "body", run_id="r1", status=status)
    # what CloudWatch publishes to the topic for an alarm: a subject and a JSON body, no message attributes
    sns.publish(TopicArn=stack.topic_arn, Subject='ALARM: "reviewtune-StuckRunsAlarm-X" in US East (N. Virginia)',
                Message=json.dumps({"AlarmName": "reviewtune-StuckRunsAlarm-X", "NewStateValue": "ALARM"}))
    subjects = sorted(m["Subject"] for m in _received(outcomes_only))
    assert subjects == ['ALARM: "reviewtune-StuckRunsAlarm-X" in US East (N. Virginia)', "run FAILED"]


def test_runs_beyond_max_concurrent_runs_are_queued_and_start_when_a_slot_frees(pipeline, stack):
    outcomes_only = _subscriber(stack, "outcomes-only", _readme_outcomes_only_policy())
    results = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i))) for i in range(4)]
    assert [r["status"] for r in results] == ["TUNING", "TUNING", "QUEUED", "QUEUED"]
    ids = [r["run_id"] for r in results]
    for run_id in ids[2:]:
        (queued,) = pipeline.messages(run_id)
        assert "queued" in queued["Subject"] and "2 of at most 2" in queued["Message"]
    assert pipeline.reconcile()["started"] == 0

    def active() -> int:
        runs = RunsRepository(pipeline.clients.runs_table)
        return sum(len(runs.by_status(s)) for s in ("TUNING", "EVALUATING"))

    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")  # the end of run 0 starts the oldest queued run
    assert [pipeline.run(i)["status"] for i in ids] == ["FAILED", "TUNING", "TUNING", "QUEUED"]
    assert active() == 2
    pipeline.succeed(ids[1])
    assert pipeline.run(ids[3])["status"] == "TUNING" and active() == 2
    for run_id in ids[2:]:
        pipeline.succeed(run_id)
    assert_ended(pipeline, ids[0], "FAILED", "AlgorithmError")
    for run_id in ids[1:]:
        assert_ended(pipeline, run_id, "SUCCEEDED")
    assert [pipeline.statuses_told(i) for i in ids[2:]] == [["QUEUED", "SUCCEEDED"]] * 2
    assert slots.holders(pipeline.clients.runs_table) == set()
    received = _received(outcomes_only)  # one message per run: its outcome
    assert sorted((m["MessageAttributes"]["run_id"]["Value"], m["MessageAttributes"]["status"]["Value"]) for m in received) == sorted(
        [(ids[0], "FAILED")] + [(i, "SUCCEEDED") for i in ids[1:]]
    )


def _queued_while_sns_refuses(pipeline: Pipeline) -> tuple[list[str], str]:
    """Two runs tuning in both slots, and a third queued whose "queued" notice SNS refused: (the two, the third)."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(2)]
    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "ThrottlingException", failures=1))
    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.start_tuning(pipeline.drop_event("incoming/f2.tsv", good_file(2)))
    [queued] = RunsRepository(pipeline.clients.runs_table).by_status("QUEUED")
    late = queued["run_id"]
    return ids, late


def test_a_queued_notice_sns_refused_until_the_run_started_is_never_sent(pipeline):
    """SNS refuses a run's "queued" notice; a slot frees and the run starts before the notice went out: the notice,
    out of date, is dropped (its timeline says so), and the run's one message is its outcome."""
    ids, late = _queued_while_sns_refuses(pipeline)
    assert [entry["status"] for entry in unsent(pipeline.run(late))] == ["QUEUED"]

    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")  # frees a slot: the queued run starts
    assert pipeline.run(late)["status"] == "TUNING"
    assert unsent(pipeline.run(late)) == [] and pipeline.run(late)["outbox"]["QUEUED"]["superseded_at"]
    assert pipeline.reconcile()["sent"] == 0
    assert pipeline.messages(late) == []
    assert "not told, out of date: " in rendered(views.run_view(pipeline.run(late)))

    pipeline.succeed(late)
    assert_ended(pipeline, late, "SUCCEEDED")
    assert pipeline.statuses_told(late) == ["SUCCEEDED"]


def test_a_queued_notice_left_by_a_start_that_died_after_its_tuning_write_is_dropped_by_the_next_sender(
    pipeline, monkeypatch
):
    """The start that takes a queued run to TUNING dies before it drops the unsent "queued" notice: the next sender
    (the reconciler's pass here) drops it instead of sending it, and the run's one message is its outcome."""
    ids, late = _queued_while_sns_refuses(pipeline)

    def died(*args, **kwargs):
        raise RuntimeError("the function ran out of time")

    monkeypatch.setattr(tuning, "_drop_queued_notice", died)
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")  # the run that ended frees a slot; the queued run's start dies in it
    assert pipeline.run(late)["status"] == "TUNING"
    assert [entry["status"] for entry in unsent(pipeline.run(late))] == ["QUEUED"]  # left behind, still owed

    assert pipeline.reconcile()["sent"] == 0
    assert unsent(pipeline.run(late)) == [] and pipeline.run(late)["outbox"]["QUEUED"]["superseded_at"]
    assert pipeline.messages(late) == []
    pipeline.succeed(late)
    assert_ended(pipeline, late, "SUCCEEDED")
    assert pipeline.statuses_told(late) == ["SUCCEEDED"]


def test_a_sender_that_read_a_queued_notice_before_it_was_dropped_does_not_send_it(pipeline, monkeypatch):
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-two", "dataset": "two.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-two", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: two", "waits"))
    lease = runs.lease_notice

    def started_meanwhile(run_id, status, *args, **kwargs):  # the run starts between the sender's read and its lease
        assert runs.transition(run_id, RunStatus.QUEUED, RunStatus.TUNING)
        assert runs.supersede_notice(run_id, status)
        return lease(run_id, status, *args, **kwargs)

    monkeypatch.setattr(runs, "lease_notice", started_meanwhile)
    assert outbox.send_pending(runs, pipeline.clients.sns, pipeline.settings.topic_arn, "reviewtune-two") == []
    assert pipeline.messages("reviewtune-two") == []
    assert runs.supersede_notice("reviewtune-two", "QUEUED")  # not sent: still droppable
    assert not runs.get("reviewtune-two").get("notice_pending")  # nothing left to send: out of the index


def test_an_outcome_waits_for_a_queued_notice_dropped_while_a_sender_publishes_it(pipeline, monkeypatch):
    """Sender A is inside Publish with the "queued" notice when the run starts (the notice is dropped), ends, and
    sender B comes: B leaves the outcome to A, which sends it after the notice, in the order they were recorded."""
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-two", "dataset": "two.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-two", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: two", "waits"))
    sns, topic = pipeline.clients.sns, pipeline.settings.topic_arn
    publish = outbox.publish
    sent_by_b = []

    def publishing(client, arn, subject, body, *, run_id, status):
        if status == "QUEUED" and not sent_by_b:
            assert runs.transition(run_id, RunStatus.QUEUED, RunStatus.TUNING)
            assert runs.supersede_notice(run_id, status)  # the start drops it while A publishes it
            assert runs.transition(run_id, RunStatus.TUNING, RunStatus.FAILED, notice=("FAILED: two", "boom"))
            sent_by_b.append(outbox.send_pending(runs, sns, topic, run_id))
        return publish(client, arn, subject, body, run_id=run_id, status=status)

    monkeypatch.setattr(outbox, "publish", publishing)
    assert len(outbox.send_pending(runs, sns, topic, "reviewtune-two")) == 2  # A: the notice, then the outcome
    assert sent_by_b == [[]]
    assert pipeline.statuses_told("reviewtune-two") == ["QUEUED", "FAILED"]
    assert_ended(pipeline, "reviewtune-two", "FAILED")


@pytest.mark.parametrize("lease_seconds", [None, outbox.LEASE_SECONDS, 0], ids=["no sender", "held", "over"])
def test_runs_show_says_a_queued_notice_dropped_while_a_sender_held_it_may_have_gone_out(pipeline, lease_seconds):
    """A sender took the notice's lease (and died after SNS took it, or before: its lease may be over by the drop)
    when the run started and dropped it: nothing says whether it went out, and the timeline says so; dropped with no
    sender at it, it was not told."""
    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-two", "dataset": "two.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-two", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: two", "waits"))
    leased = lease_seconds is not None
    if leased:
        assert runs.lease_notice("reviewtune-two", "QUEUED", lease_seconds)  # 0: over by the drop
    assert runs.transition("reviewtune-two", RunStatus.QUEUED, RunStatus.TUNING)
    assert runs.supersede_notice("reviewtune-two", "QUEUED")

    text = rendered(views.run_view(runs.get("reviewtune-two")))

    assert ("dropped, out of date, after a sender took it to publish (it may have gone out): QUEUED: two" in text) is leased
    assert ("not told, out of date: QUEUED: two" in text) is not leased


def test_load_drop_expects_a_queued_notice_dropped_only_after_it_went_out(pipeline):
    from bench.load_drop import LoadReport, _tally

    runs = RunsRepository(pipeline.clients.runs_table)
    assert runs.create({"run_id": "reviewtune-two", "dataset": "two.tsv", "status": "CLAIMED"})
    assert runs.transition("reviewtune-two", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("QUEUED: two", "waits"))
    assert runs.transition("reviewtune-two", RunStatus.QUEUED, RunStatus.TUNING)
    assert runs.supersede_notice("reviewtune-two", "QUEUED")
    assert runs.transition("reviewtune-two", RunStatus.TUNING, RunStatus.FAILED, notice=("FAILED: two", "boom"))

    def problems(*statuses: str) -> list[str]:
        received = {status: {"MessageAttributes": {"run_id": {"Value": "reviewtune-two"}, "status": {"Value": status}}}
                    for status in statuses}
        report = LoadReport(files=1, max_concurrent_runs=1)
        _tally(report, {"reviewtune-two": runs.get("reviewtune-two")}, type("Subscriber", (), {"received": received}))
        return report.message_problems()

    assert problems("FAILED") == []  # dropped unsent: not owed
    assert runs.mark_sent("reviewtune-two", "QUEUED", "m1")  # a sender was publishing it as it was dropped
    assert problems("QUEUED", "FAILED") == []
    assert problems("FAILED") == ["reviewtune-two: expected ['FAILED', 'QUEUED'], received ['FAILED']"]


def test_a_queued_notice_sent_before_the_run_started_stays_sent(pipeline):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")
    assert pipeline.run(ids[2])["status"] == "TUNING"
    assert "superseded_at" not in pipeline.run(ids[2])["outbox"]["QUEUED"]
    assert pipeline.statuses_told(ids[2]) == ["QUEUED"]


def _subscriber(stack, name: str, filter_policy: dict) -> str:
    """An SQS queue subscribed to the topic with ``filter_policy`` on the message attributes; returns its URL."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns", region_name=REGION).subscribe(
        TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"FilterPolicy": json.dumps(filter_policy)}
    )
    return url


def _received(url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name=REGION)
    out: list[dict] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return out


def test_a_queued_run_missed_by_the_end_of_a_run_is_started_by_the_reconciler(pipeline):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    slots.release(pipeline.clients.runs_table, ids[0])  # as if run 0 ended and its promotion step was lost
    RunsRepository(pipeline.clients.runs_table).transition(
        ids[0], RunStatus.TUNING, RunStatus.STOPPED, notice=("s", "b")
    )
    assert pipeline.run(ids[2])["status"] == "QUEUED"
    assert pipeline.reconcile()["started"] == 1
    assert pipeline.run(ids[2])["status"] == "TUNING"


def test_a_new_file_waits_behind_a_queued_run_for_a_slot_the_queue_missed(pipeline):
    """A slot is free while a run is queued (the end of a run found no queued run, as this one was queued a moment
    later; or MaxConcurrentRuns was raised): the next file dropped queues behind it, and the older file starts."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    slots.release(pipeline.clients.runs_table, ids[0])  # run 0 ended; the queued run 2 was not started
    RunsRepository(pipeline.clients.runs_table).transition(ids[0], RunStatus.TUNING, RunStatus.STOPPED, notice=("s", "b"))

    later_file = pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))

    assert later_file["status"] == "QUEUED" and pipeline.run(ids[2])["status"] == "TUNING"
    assert slots.holders(pipeline.clients.runs_table) == {ids[1], ids[2]}
    (queued,) = pipeline.messages(later_file["run_id"])
    assert "1 of at most 2 runs hold a slot now (starting, tuning or evaluating: MaxConcurrentRuns), and 1 run is " \
           "queued before this one; this run starts when a slot is free after them." in " ".join(queued["Message"].split())


def test_a_run_the_status_index_still_lists_as_queued_keeps_no_new_file_from_a_free_slot(pipeline, monkeypatch):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    stale = pipeline.run(ids[2])  # as the index listed it, QUEUED
    pipeline.succeed(ids[0])  # run 2 starts in the freed slot
    pipeline.succeed(ids[1])  # a slot is free, no run is queued
    assert pipeline.run(ids[2])["status"] == "TUNING"
    by_status = RunsRepository.by_status
    monkeypatch.setattr(RunsRepository, "by_status", lambda self, status, limit=20: (
        [stale] if status == "QUEUED" else by_status(self, status, limit)))  # the index has not caught up

    result = pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))

    assert result["status"] == "TUNING" and pipeline.statuses_told(result["run_id"]) == []  # no "queued" notice


def test_a_new_file_takes_a_free_slot_a_queued_run_already_holding_one_does_not_need(pipeline):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    pipeline.succeed(ids[0])  # run 2 takes the slot; its start is throttled: QUEUED, holding it, not due yet
    assert pipeline.run(ids[2])["status"] == "QUEUED" and ids[2] in slots.holders(pipeline.clients.runs_table)
    pipeline.succeed(ids[1])  # a slot no queued run waits for

    result = pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))

    assert result["status"] == "TUNING" and pipeline.statuses_told(result["run_id"]) == []


def test_a_run_the_index_does_not_list_yet_starts_in_a_slot_free_once_it_is_queued(pipeline, monkeypatch):
    """The slot frees between the new run's look at the slots and its QUEUED write, and the status index does not
    list the run yet when the queue is read: the run starts itself."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(2)]
    queued = tuning.messages.queued

    def meanwhile(item, *args):  # the notice is made just before the QUEUED write
        slots.release(pipeline.clients.runs_table, ids[0])
        RunsRepository(pipeline.clients.runs_table).transition(ids[0], RunStatus.TUNING, RunStatus.STOPPED,
                                                               notice=("s", "b"))
        return queued(item, *args)

    monkeypatch.setattr(tuning.messages, "queued", meanwhile)
    monkeypatch.setattr(RunsRepository, "all_in_status", lambda self, status: iter(()))  # the index lags
    result = pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))

    assert result["status"] == "TUNING" and slots.holders(pipeline.clients.runs_table) == {ids[1], result["run_id"]}
    assert pipeline.statuses_told(result["run_id"]) == ["QUEUED"]  # told before it started


@pytest.mark.parametrize("listed", [True, False], ids=["the index lists the new run", "the index lags"])
def test_a_slot_freed_while_a_new_run_fills_the_queue_goes_to_the_older_queued_run(pipeline, monkeypatch, listed):
    """The older queued run O is refused a slot by the new run's start of the queue; then another run ends and its
    slot frees before that run's own start of the queue: the new run must not take it past O."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    older, table = ids[2], pipeline.clients.runs_table
    acquire, freed = slots.acquire, []

    def then_run_0_ends(tbl, run_id, limit):
        got = acquire(tbl, run_id, limit)
        if run_id == older and not got and not freed:
            freed.append(ids[0])  # run 0 ends in another invocation: its release lands now
            slots.release(table, ids[0])
            RunsRepository(table).transition(ids[0], RunStatus.TUNING, RunStatus.STOPPED, notice=("s", "b"))
        return got

    monkeypatch.setattr(slots, "acquire", then_run_0_ends)
    if not listed:
        all_in_status = RunsRepository.all_in_status
        monkeypatch.setattr(RunsRepository, "all_in_status", lambda self, status: iter(
            [r for r in all_in_status(self, status) if r["run_id"] == older]))
    new = pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))
    monkeypatch.setattr(slots, "acquire", acquire)
    tuning.start_queued_runs(pipeline.settings, pipeline.clients)  # run 0's own end: the queue in its freed slot

    assert freed and new["status"] == "QUEUED" and pipeline.run(older)["status"] == "TUNING"
    assert slots.holders(table) == {ids[1], older}


def test_a_slot_freed_while_the_end_s_message_is_refused_goes_to_the_oldest_queued_run(pipeline):
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "ThrottlingException", failures=1))
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.tuning_ended(ids[0], "Failed")  # ended; its message is refused and retried later

    assert pipeline.run(ids[0])["status"] == "FAILED" and pipeline.run(ids[2])["status"] == "TUNING"
    assert pipeline.start_tuning(pipeline.drop_event("incoming/f9.tsv", good_file(9)))["status"] == "QUEUED"


def test_a_queued_run_holding_a_slot_starts_though_an_older_queued_run_waits_for_one(pipeline, monkeypatch):
    """Q took the slot a run freed, but its tuning job was throttled, so it waits QUEUED for its next try; O, claimed
    before Q and queued after it (its first start died), sorts ahead of Q and finds no free slot. Q must still get its
    try: each waits on the other otherwise, until both end FAILED at the QUEUED deadline."""
    running = [pipeline.start_tuning(pipeline.drop_event(f"incoming/r{i}.tsv", good_file(i)))["run_id"] for i in range(2)]
    event_o = pipeline.drop_event("incoming/o.tsv", good_file(10))
    read, reads = tuning.read_dropped_file, []

    def dies_the_first_time(*args, **kwargs):
        reads.append(None)
        if len(reads) == 1:
            raise RuntimeError("Task timed out")
        return read(*args, **kwargs)

    monkeypatch.setattr(tuning, "read_dropped_file", dies_the_first_time)
    with pytest.raises(RuntimeError, match="Task timed out"):
        pipeline.start_tuning(event_o)
    q = pipeline.start_tuning(pipeline.drop_event("incoming/q.tsv", good_file(11)))["run_id"]
    assert pipeline.run(q)["status"] == "QUEUED"
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    pipeline.sagemaker.finish_tuning(running[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(running[0], "Failed")  # the freed slot goes to Q, whose start is throttled
    assert pipeline.run(q)["status"] == "QUEUED" and q in slots.holders(pipeline.clients.runs_table)
    o = pipeline.start_tuning(event_o)["run_id"]  # Lambda's retry: no slot free
    assert pipeline.run(o)["status"] == "QUEUED" and pipeline.run(o)["created_at"] < pipeline.run(q)["created_at"]
    pipeline.reconcile(later(1))  # Q's next try is due
    assert pipeline.run(q)["status"] == "TUNING" and pipeline.run(o)["status"] == "QUEUED"
    pipeline.succeed(q)
    assert pipeline.run(o)["status"] == "TUNING"  # the slot Q frees goes to O
    assert pipeline.statuses_told(q) == ["QUEUED", "SUCCEEDED"] and pipeline.statuses_told(o) == ["QUEUED"]


def _queued_before(pipeline: Pipeline, like: dict, count: int) -> list[str]:
    """``count`` QUEUED runs like ``like`` (a queued run's item), each created before it: ahead of it in the queue."""
    start = datetime.now(UTC) - timedelta(hours=2)
    ids = []
    with pipeline.clients.runs_table.batch_writer() as batch:
        for i in range(count):
            stamp = now_iso(start + timedelta(seconds=i))
            item = {**like, "run_id": f"reviewtune-q{i:014d}", "dataset": f"queued-{i}.tsv", "created_at": stamp,
                    "status_history": {"CLAIMED": stamp, "QUEUED": stamp}}
            item.pop("notice_pending", None)
            batch.put_item(Item=to_item(item))
            ids.append(item["run_id"])
    return ids


def _queued_behind_both_slots(pipeline: Pipeline) -> dict:
    for i in range(2):
        pipeline.start_tuning(pipeline.drop_event(f"incoming/r{i}.tsv", good_file(i)))
    queued = pipeline.start_tuning(pipeline.drop_event("incoming/q.tsv", good_file(2)))
    assert queued["status"] == "QUEUED"
    return pipeline.run(queued["run_id"])


def test_the_queued_message_counts_every_run_waiting_before_the_file(pipeline):
    """Past one page of the status index: a file behind 150 waiting runs is told 150 (a run asked to stop, or one
    not due for its next try, waits for no slot)."""
    first = _queued_behind_both_slots(pipeline)
    stopped, throttled, *_ = _queued_before(pipeline, first, 151)
    runs = RunsRepository(pipeline.clients.runs_table)
    runs.update(stopped, stop_request={"by": "ops", "why": "not this one", "at": now_iso()})
    runs.update(throttled, tuning_start={"attempts": 1, "next_attempt_at": now_iso(datetime.now(UTC) + timedelta(hours=1))})

    result = pipeline.start_tuning(pipeline.drop_event("incoming/z.tsv", good_file(9)))

    assert result["status"] == "QUEUED"
    (queued,) = pipeline.messages(result["run_id"])
    assert "and 150 runs are queued before this one;" in " ".join(queued["Message"].split())


def test_a_file_queued_behind_a_deep_queue_does_not_read_every_queued_run(pipeline):
    """Every slot taken and 300 runs queued: queuing one more file reads a few runs, not the whole queue, in its
    look for a run waiting before it and in its start of the queue (the oldest is refused a slot: none after it
    that holds none can get one)."""
    _queued_before(pipeline, _queued_behind_both_slots(pipeline), 300)
    reads = []
    for client in {id(h.ctx.clients.runs_table.meta.client): h.ctx.clients.runs_table.meta.client
                   for h in pipeline.handlers.values()}.values():
        client.meta.events.register("before-call.dynamodb.GetItem", lambda **_: reads.append(None))

    result = pipeline.start_tuning(pipeline.drop_event("incoming/z.tsv", good_file(9)))

    assert result["status"] == "QUEUED" and len(reads) < 20, len(reads)
    (queued,) = pipeline.messages(result["run_id"])
    assert "and 301 runs are queued before this one;" in " ".join(queued["Message"].split())


def test_slots_are_taken_once_per_run_and_never_beyond_the_limit(stack):
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)
    assert slots.acquire(table, "r1", 2) and slots.acquire(table, "r1", 2)  # idempotent
    assert slots.acquire(table, "r2", 2)
    assert not slots.acquire(table, "r3", 2)
    assert slots.acquire(table, "r2", 2)  # a holder keeps its slot
    slots.release(table, "r1")
    slots.release(table, "r1")
    assert slots.acquire(table, "r3", 2) and slots.holders(table) == {"r2", "r3"}


def test_an_item_written_before_the_outbox_existed_still_moves(stack):
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)
    table.put_item(Item={"run_id": "old", "status": "EVALUATING", "created_at": "2026-01-01T00:00:00.000Z"})
    runs = RunsRepository(table)
    moved = runs.transition("old", RunStatus.EVALUATING, RunStatus.FAILED, notice=("s", "b"), failure_reason="x")
    assert moved["status"] == "FAILED" and moved["outbox"]["FAILED"]["subject"] == "s"


def test_transitions_are_compare_and_set_and_final_states_are_final(stack):
    runs = RunsRepository(boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table))
    created, item = runs.claim({"run_id": "r", "dataset": "d", "source": {}})
    assert created and item["status"] == "CLAIMED" and item["deadline_at"]
    assert runs.claim({"run_id": "r", "dataset": "d", "source": {}})[0] is False
    assert runs.transition("r", RunStatus.CLAIMED, RunStatus.DUPLICATE, notice=("s", "b"))["status"] == "DUPLICATE"
    assert runs.transition("r", RunStatus.CLAIMED, RunStatus.REJECTED, notice=("s", "b")) is None
    with pytest.raises(states.TransitionError):
        runs.transition("r", RunStatus.DUPLICATE, RunStatus.TUNING)
    final = runs.get("r")
    assert final["status"] == "DUPLICATE" and "deadline_at" not in final
    assert final["notice_pending"] == "PENDING" and list(runs.with_pending_notice()) == ["r"]


def test_an_evaluation_job_sagemaker_does_not_know_ends_the_run_after_a_grace_period(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    del pipeline.sagemaker.processing[f"{run_id}-eval"]
    assert run_id in pipeline.reconcile()["errors"]  # maybe not visible yet: wait
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    pipeline.reconcile(later(0.5))
    assert_ended(pipeline, run_id, "FAILED", "cannot be read", "Could not find job")


def test_a_tuning_job_sagemaker_no_longer_knows_ends_the_run_after_a_grace_period_not_at_its_deadline(pipeline):
    """A person deleted the tuning job (DeleteHyperParameterTuningJob) before its event was handled: the run ends
    FAILED saying so at the next pass after the grace, and gives its slot back, instead of holding it for days."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    del pipeline.sagemaker.tuning[run_id]
    assert run_id in pipeline.reconcile()["errors"]  # maybe not visible yet: wait
    assert pipeline.run(run_id)["status"] == "TUNING"

    assert pipeline.reconcile(later(0.5))["steps"][run_id] == "tuning job missing"
    assert_ended(pipeline, run_id, "FAILED", f"the tuning job {run_id} cannot be read", "no tuning job")
    second = pipeline.start_tuning(pipeline.drop_event(body=good_file(seed=4)))
    assert second["status"] == "TUNING"  # the slot is free again


def test_a_pass_short_of_time_leaves_the_other_runs_steps_for_the_next_and_still_sends_the_messages(pipeline):
    failed, _, missing = _failed_with_its_message_unsent(pipeline)
    missing.heal()
    ended = [pipeline.start_tuning(pipeline.drop_event(f"incoming/{i}.tsv", good_file(seed=i)))["run_id"]
             for i in range(2)]
    for run_id in ended:  # their tuning jobs ended; the events were lost
        pipeline.finish_tuning_well(run_id)

    short = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.1),
                                 seconds_left=lambda: reconciler.RUNS_SECONDS_RESERVED - 1)

    assert len(short["steps"]) == 1 and "run(s) left for the next pass" in short["errors"]["runs"]
    assert sorted(pipeline.run(run_id)["status"] for run_id in ended) == ["EVALUATING", "TUNING"]
    assert short["sent"] >= 1 and len(pipeline.messages(failed)) == 1  # the outbox still had its turn
    after = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.2), seconds_left=lambda: 300)
    assert "runs" not in after["errors"]
    assert [pipeline.run(run_id)["status"] for run_id in ended] == ["EVALUATING", "EVALUATING"]


def test_a_pass_short_of_time_among_many_queued_runs_still_steps_the_runs_at_work(pipeline, monkeypatch):
    """A burst of files queued behind the two slots, the tuning jobs of the two runs at work ended and their events
    lost, and each step slow (10 s on the pass's clock): the queued runs, listed first, leave their last steps for the
    next pass rather than take the whole pass, so the runs at work are stepped (their evaluations start) in this pass,
    and the queued runs left differ from one pass to the next."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/b{i}.tsv", good_file(seed=i)))["run_id"]
           for i in range(26)]
    at_work, queued = ids[:2], ids[2:]
    assert [pipeline.run(run_id)["status"] for run_id in ids] == ["TUNING"] * 2 + ["QUEUED"] * 24
    for run_id in at_work:
        pipeline.finish_tuning_well(run_id)
    spent, stepped = [0.0], []
    step = reconciler.reconcile_run

    def slow_step(run, *args, **kwargs):
        spent[0] += 10
        stepped.append(run["run_id"])
        return step(run, *args, **kwargs)

    monkeypatch.setattr(reconciler, "reconcile_run", slow_step)

    def short_pass(now: datetime) -> list[str]:
        stepped.clear()
        spent[0] = 0.0
        result = reconciler.reconcile(pipeline.settings, pipeline.clients, now, seconds_left=lambda: 300 - spent[0])
        assert "run(s) left for the next pass" in result["errors"]["runs"]
        return [run_id for run_id in stepped if run_id in queued]

    first = short_pass(later(0.1))
    # before: all 21 steps the pass had went to the queued runs, the runs at work left for every pass
    assert 0 < len(first) < len(queued)
    assert [pipeline.run(run_id)["status"] for run_id in at_work] == ["EVALUATING", "EVALUATING"]
    second = short_pass(later(0.2))
    assert set(second) != set(first)
    assert [pipeline.run(run_id)["status"] for run_id in queued] == ["QUEUED"] * 24


# ------------------------------------------------------------------------------------------- dead letters


def _runs(pipeline: Pipeline) -> list[dict]:
    """Every run item (slot and content-marker items left out)."""
    return [i for i in pipeline.clients.runs_table.scan()["Items"] if "source" in i and "status" in i]


def _dead_lettered_before_its_claim(pipeline: Pipeline, stack, event: dict, code: str = "SlowDown") -> Failing:
    """HeadObject fails on every delivery, before the run is claimed; the event ends in the dead-letter queue."""
    failing = Failing(pipeline.clients.s3, "head_object", code, failures=None)
    pipeline.use("s3", failing)
    for _ in range(3):  # the invocation and Lambda's two retries
        with pytest.raises(Exception, match=code):
            pipeline.start_tuning(event)
    stack.dead_letter(event, f"ClientError: An error occurred ({code}) when calling the HeadObject operation")
    assert _runs(pipeline) == [] and pipeline.messages() == [] and stack.dead_letters() == 1
    return failing


def test_an_event_dead_lettered_before_its_claim_gets_its_run_from_the_next_reconciler_pass(pipeline, stack, capsys):
    event = pipeline.drop_event("incoming/team/late (1).tsv")  # URL-encoded in the event: the lookup decodes it
    failing = _dead_lettered_before_its_claim(pipeline, stack, event)
    pipeline.use("s3", failing._wrapped)  # S3 answers again
    capsys.readouterr()

    taken = pipeline.reconcile()["dead_letters"]  # the reconcile function's handler

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [m for m in metrics if "DeadLettersTakenBack" in m]
    assert emf["DeadLettersTakenBack"] in ([1.0], 1.0)

    [run] = _runs(pipeline)
    assert taken["received"] == 1 and taken["claimed"] == 1
    assert run["status"] == "CLAIMED" and run["source"]["key"] == "incoming/team/late (1).tsv"
    assert stack.dead_letters() == 0 and pipeline.reconcile()["dead_letters"]["received"] == 0
    pipeline.reconcile(later(0.5))  # the stale-claim restart starts it
    assert pipeline.run(run["run_id"])["status"] == "TUNING"
    pipeline.succeed(run["run_id"])
    assert_ended(pipeline, run["run_id"], "SUCCEEDED")
    again = pipeline.start_tuning(event)  # the same event delivered once more finds the run
    assert again == {"run_id": run["run_id"], "status": "SUCCEEDED", "duplicate": True}
    assert len(_runs(pipeline)) == 1 and len(pipeline.messages(run["run_id"])) == 1


@pytest.mark.parametrize("s3_comes_back", [True, False])
def test_a_dead_lettered_event_while_s3_still_fails_is_claimed_then_started_or_ended_at_its_deadline(
    pipeline, stack, s3_comes_back
):
    event = pipeline.drop_event("incoming/team/late.tsv")
    event["detail"]["object"]["key"] = "incoming/team/late.tsv"  # raw, as EventBridge sends it
    failing = _dead_lettered_before_its_claim(pipeline, stack, event, code="ServiceUnavailable")

    taken = pipeline.reconcile()["dead_letters"]

    [run] = _runs(pipeline)
    assert taken["claimed"] == 1 and run["status"] == "CLAIMED" and stack.dead_letters() == 0
    assert pipeline.messages() == []
    if s3_comes_back:
        pipeline.use("s3", failing._wrapped)
        pipeline.reconcile(later(0.5))  # the stale-claim restart
        assert pipeline.run(run["run_id"])["status"] == "TUNING"
        pipeline.succeed(run["run_id"])
        assert_ended(pipeline, run["run_id"], "SUCCEEDED")
    else:
        pipeline.reconcile(later(0.5))  # the restart fails too: its error is kept for the reason
        pipeline.reconcile(later(2))  # past the CLAIMED deadline (1 h)
        assert_ended(pipeline, run["run_id"], "FAILED", "stayed CLAIMED longer than its deadline",
                     "its last start failed with ServiceUnavailable")
    assert len(_runs(pipeline)) == 1


@pytest.mark.parametrize("resolved_by", ["s3", "sweep", "time"])
def test_a_dead_lettered_encoded_key_is_not_guessed_while_s3_fails_and_its_version_ends_in_one_run(
    pipeline, stack, monkeypatch, resolved_by
):
    """The event's key (URL-encoded) stands for itself or its decoded form, and S3 cannot say which: the message
    waits rather than name a run after a key that may not exist (whose start would reject the file as deleted, and
    whose version the listing of incoming/ would then claim a second run for). It is taken back once S3 answers, or
    finds the run the listing claimed for the stored key, or, twice the sweep's grace after the event with neither,
    is claimed under the key as given (whose start then finds no object there)."""
    key = "incoming/team/late (1).tsv"
    event = pipeline.drop_event(key)  # its key: incoming/team/late+%281%29.tsv
    event["time"] = now_iso()
    failing = _dead_lettered_before_its_claim(pipeline, stack, event, code="ServiceUnavailable")
    monkeypatch.setattr(dead_letters, "VISIBILITY_TIMEOUT_SECONDS", 0)  # a message left is there for the next pass

    taken = pipeline.reconcile(later(0.1))["dead_letters"]

    assert (taken["received"], taken["left"], taken["claimed"]) == (1, 1, 0) and _runs(pipeline) == []
    if resolved_by == "s3":
        pipeline.use("s3", failing._wrapped)
        assert pipeline.reconcile(later(0.2))["dead_letters"]["claimed"] == 1
    elif resolved_by == "sweep":  # HeadObject still refused; the listing works
        swept = pipeline.reconcile(later(1.5))
        assert swept["dead_letters"]["left"] == 1 and swept["missed_drops"]["claimed"] == 1
        assert pipeline.reconcile(later(1.6))["dead_letters"]["existing"] == 1
        pipeline.use("s3", failing._wrapped)
    else:  # nothing answers for long: a run named by the key as given is better than none
        pipeline.use("s3", Failing(failing, "list_object_versions", "ServiceUnavailable", failures=None))
        assert pipeline.reconcile(later(1.9))["dead_letters"]["left"] == 1
        assert pipeline.reconcile(later(2.1))["dead_letters"]["claimed"] == 1
    assert stack.dead_letters() == 0
    [run] = _runs(pipeline)
    if resolved_by == "time":
        assert run["source"]["key"] == event["detail"]["object"]["key"]  # the guess
        # past its deadline, restarted once first (as a pass 15 minutes after the claim would have): that key holds
        # no object, and the run says so, its one outcome
        pipeline.reconcile(later(3.5))
        assert_ended(pipeline, run["run_id"], "REJECTED", "the object was deleted before it could be read")
    else:
        assert run["source"]["key"] == key
        pipeline.reconcile(later(0.5 if resolved_by == "s3" else 1.9))  # the stale-claim restart starts it
        assert pipeline.run(run["run_id"])["status"] == "TUNING"
        pipeline.succeed(run["run_id"])
        assert_ended(pipeline, run["run_id"], "SUCCEEDED")
        assert pipeline.reconcile(later(2.5))["missed_drops"]["claimed"] == 0
    assert len(_runs(pipeline)) == 1 and len(pipeline.messages()) == 1


def test_a_dead_lettered_event_whose_encoded_key_is_too_long_for_s3_is_claimed_under_the_stored_key(pipeline, stack):
    key = "incoming/" + "\u00e9" * 300 + ".tsv"  # 613 bytes as stored
    event = pipeline.drop_event(key)
    event["detail"]["object"]["key"] = quote_plus(key, safe="/")  # 1,813 bytes: never a key
    failing = _dead_lettered_before_its_claim(pipeline, stack, event, code="ServiceUnavailable")

    taken = pipeline.reconcile()["dead_letters"]  # S3 still failing: the run is named without a lookup

    [run] = _runs(pipeline)
    assert taken["claimed"] == 1 and run["source"]["key"] == key
    pipeline.use("s3", failing._wrapped)
    pipeline.reconcile(later(0.5))  # the stale-claim restart reads the stored key
    assert pipeline.run(run["run_id"])["status"] == "TUNING" and len(_runs(pipeline)) == 1


def test_a_dead_lettered_event_whose_run_was_claimed_before_the_failure_makes_no_second_run(pipeline, stack):
    event = pipeline.drop_event("incoming/team/claimed (2).tsv")
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=None))
    for _ in range(3):
        with pytest.raises(Exception, match="InternalError"):
            pipeline.start_tuning(event)  # claimed, then the read fails
    [claimed] = _runs(pipeline)
    stack.dead_letter(event)
    # S3 fails entirely now: the lookup falls back to the event's key, whose decoded form has the run
    pipeline.use("s3", Failing(pipeline.clients.s3._wrapped, "head_object", "InternalError", failures=None))

    taken = pipeline.reconcile()["dead_letters"]

    assert taken["existing"] == 1 and taken["claimed"] == 0 and stack.dead_letters() == 0
    assert [r["run_id"] for r in _runs(pipeline)] == [claimed["run_id"]]


def test_a_dead_letter_whose_claim_cannot_be_written_stays_for_a_later_pass(pipeline, stack, monkeypatch):
    monkeypatch.setattr(dead_letters, "VISIBILITY_TIMEOUT_SECONDS", 0)  # the next pass sees it at once
    event = pipeline.drop_event()
    failing_s3 = _dead_lettered_before_its_claim(pipeline, stack, event)
    pipeline.use("s3", failing_s3._wrapped)
    table = Failing(pipeline.clients.runs_table, "put_item", "ProvisionedThroughputExceededException", failures=None)
    pipeline.use("runs_table", table)

    taken = pipeline.reconcile()["dead_letters"]
    assert taken["received"] == 1 and taken["left"] == 1 and stack.dead_letters() == 1 and _runs(pipeline) == []

    pipeline.use("runs_table", table._wrapped)
    taken = pipeline.reconcile()["dead_letters"]
    [run] = _runs(pipeline)
    assert taken["claimed"] == 1 and run["status"] == "CLAIMED" and stack.dead_letters() == 0


def test_dead_letters_that_are_no_object_event_stay_and_keys_outside_incoming_are_dropped(pipeline, stack):
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(QueueUrl=stack.start_dead_letter_queue_url, MessageBody="not json {")
    sqs.send_message(QueueUrl=stack.start_dead_letter_queue_url, MessageBody=json.dumps({"detail-type": "Other"}))
    elsewhere = pipeline.drop_event("runs/x/notes.tsv")
    stack.dead_letter(elsewhere)

    taken = pipeline.reconcile()["dead_letters"]

    assert taken["received"] == 3 and taken["left"] == 2 and taken["ignored"] == 1
    assert _runs(pipeline) == [] and pipeline.messages() == [] and stack.dead_letters() == 2


# ------------------------------------------------------------------------------------------- item size


def _many_trials(count: int, failed: int) -> list[dict]:
    """``failed`` trials with SageMaker-sized failure reasons (~1 KB), the rest completed with an objective."""
    reason = "AlgorithmError: " + "Traceback (most recent call last): CUDA out of memory. " * 18
    return [
        {"status": "Failed", "objective_status": "Failed", "failure": f"{reason} (trial {i})"} if i < failed
        else {"status": "Completed", "objective": 60 + (i % 37) / 2, "objective_status": "Succeeded"}
        for i in range(count)
    ]


def test_a_tuning_job_of_500_trials_with_long_failures_still_fits_the_run_item_and_tells_every_count(pipeline, stack):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    trials = _many_trials(500, failed=400)
    trials[450]["objective"] = 99.0
    best = f"{run_id}-451-abcdef451"
    pipeline.sagemaker.finish_tuning(run_id, "Completed", trials=trials, best=best)

    assert pipeline.tuning_ended(run_id)["status"] == "EVALUATING"  # the item could be written

    tuning = pipeline.run(run_id)["tuning"]
    assert tuning["trials_total"] == 500 and len(tuning["trials"]) == 50
    assert tuning["best_training_job"]["name"] == best and best in {t["name"] for t in tuning["trials"]}
    assert all(len(t.get("failure_reason") or "") <= 300 for t in tuning["trials"])
    others = sorted((t["objective"] for i, t in enumerate(trials) if i >= 400 and i != 450), reverse=True)
    kept = sorted((t["objective"] for t in tuning["trials"] if t["name"] != best), reverse=True)
    assert kept == others[:49]  # the best 49 of the rest
    uri = tuning["trials_uri"]
    stored = json.loads(boto3.client("s3", region_name=REGION).get_object(
        Bucket=stack.bucket, Key=uri.removeprefix(f"s3://{stack.bucket}/"))["Body"].read())
    assert len(stored["trials"]) == 500 and stored["trials"][0]["failure_reason"].endswith("(trial 0)")

    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    pipeline.evaluation_ended(run_id)
    item = assert_ended(pipeline, run_id, "SUCCEEDED")
    [message] = pipeline.messages(run_id)
    assert " of 500 trials completed" in message["Message"]  # not of the 50 the item keeps
    assert f"  ... and 450 more (every trial: {uri})" in message["Message"]  # the cost lines: 50 listed
    assert item["tuning"]["cost"]["billable_seconds"] == 500 * 600


def test_a_failed_tuning_job_of_500_long_failures_ends_failed_at_once_with_every_trial_in_s3(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.sagemaker.finish_tuning(run_id, "Failed", trials=_many_trials(500, failed=500), failure="every trial failed")

    pipeline.tuning_ended(run_id, "Failed")

    item = assert_ended(pipeline, run_id, "FAILED", "every trial failed")
    assert item["tuning"]["trials_total"] == 500
    [message] = pipeline.messages(run_id)
    assert f"  ... and 450 more (every trial: {item['tuning']['trials_uri']})" in message["Message"]


def test_a_job_created_for_a_run_that_ended_meanwhile_is_stopped(pipeline, monkeypatch):
    """A queued run's start takes a slot while a reconciler pass ends the run at its deadline: the job created
    then has no run to follow it, so it is stopped (and the run still tells its one outcome)."""
    from reviewtune.core.failures import end_run, repository

    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")
    runs = repository(pipeline.settings, pipeline.clients)
    create = pipeline.sagemaker.create_hyper_parameter_tuning_job

    def ended_meanwhile(**request):
        if request["HyperParameterTuningJobName"] == late["run_id"]:
            end_run(runs, pipeline.settings, pipeline.clients, late["run_id"], stage="queued",
                    status=RunStatus.FAILED, reason="the run stayed QUEUED longer than its deadline")
        return create(**request)

    monkeypatch.setattr(pipeline.sagemaker, "create_hyper_parameter_tuning_job", ended_meanwhile)
    pipeline.sagemaker.finish_tuning(first["run_id"], "Failed", failure="x")
    pipeline.tuning_ended(first["run_id"], "Failed")  # a slot frees: the queued run starts
    assert_ended(pipeline, late["run_id"], "FAILED", "stayed QUEUED longer than its deadline")
    assert pipeline.sagemaker.tuning[late["run_id"]]["status"] == "Stopping"
    assert late["run_id"] not in slots.holders(pipeline.clients.runs_table)


def test_a_claim_ended_at_its_deadline_stops_a_job_its_lost_start_created(pipeline, monkeypatch):
    from tests.support.faults import client_error

    create = pipeline.sagemaker.create_hyper_parameter_tuning_job

    def created_but_answer_lost(**request):
        create(**request)
        raise client_error("ThrottlingException", "Rate exceeded", "CreateHyperParameterTuningJob")

    monkeypatch.setattr(pipeline.sagemaker, "create_hyper_parameter_tuning_job", created_but_answer_lost)
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    assert pipeline.run(run_id)["status"] == "CLAIMED" and pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"
    pipeline.reconcile(later(1.1))  # past the claim's deadline before its next try
    assert_ended(pipeline, run_id, "FAILED", "stayed CLAIMED longer than its deadline",
                 "SageMaker had not started its tuning job after 1 attempt: ThrottlingException")
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"


def four_files_two_queued(pipeline: Pipeline) -> list[str]:
    """Two runs tuning in the stack's two slots, two queued behind them; the first queued one's item of an older
    shape (its code record without source_uri), so its start raises."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(4)]
    assert [pipeline.run(i)["status"] for i in ids] == ["TUNING", "TUNING", "QUEUED", "QUEUED"]
    pipeline.clients.runs_table.update_item(Key={"run_id": ids[2]}, UpdateExpression="REMOVE code.source_uri")
    return ids


def test_a_queued_run_that_cannot_start_holds_back_none_of_the_runs_queued_behind_it(pipeline):
    ids = four_files_two_queued(pipeline)
    broken, behind = ids[2], ids[3]
    for run_id in ids[:2]:  # both tuning runs end: two slots free; their handlers end, tell and conclude
        pipeline.sagemaker.finish_tuning(run_id, "Failed", failure="AlgorithmError: boom")
        assert pipeline.tuning_ended(run_id, "Failed")["status"] == "FAILED"

    result = pipeline.reconcile(later(0.2))

    assert pipeline.run(behind)["status"] == "TUNING"
    # no try can make its job: ended with the error, its slot not kept (see also the one-slot case above)
    assert_ended(pipeline, broken, "FAILED", "its tuning job could not be prepared: TypeError")
    assert broken not in result["errors"] and broken not in slots.holders(pipeline.clients.runs_table)
    for run_id in ids[:2]:
        assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_queued_run_whose_start_keeps_raising_gives_its_slot_up_after_its_tries_not_at_its_queue_deadline(pipeline):
    """A queued run takes the one free slot, and its start raises where launch records nothing: an earlier try made
    its tuning job and lost the answer (ResourceInUse), and SageMaker denies describing that job. Each such try is
    counted like a throttled one; after START_MAX_ATTEMPTS the run ends FAILED with the error, told once, the job that
    lost answer made is stopped, and the run queued behind it gets the slot: hours, not the queue's days."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(4)]
    assert [pipeline.run(i)["status"] for i in ids] == ["TUNING", "TUNING", "QUEUED", "QUEUED"]
    stuck, behind = ids[2], ids[3]
    made = pipeline.sagemaker.tuning[ids[0]]
    pipeline.sagemaker.tuning[stuck] = {**made, "status": "InProgress"}  # the try whose answer was lost
    denied = Failing(pipeline.sagemaker, "describe_hyper_parameter_tuning_job", "AccessDeniedException",
                     "not authorized to perform sagemaker:DescribeHyperParameterTuningJob", failures=None,
                     when=lambda call: call["HyperParameterTuningJobName"] == stuck)
    pipeline.use("sagemaker", denied)
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")  # one slot frees: the stuck run takes it, its start raises
    attempts = pipeline.run(stuck)["tuning_start"]
    assert attempts["attempts"] == 1 and "AccessDeniedException" in attempts["last_error"]
    assert stuck in slots.holders(pipeline.clients.runs_table) and pipeline.run(behind)["status"] == "QUEUED"

    passes = 0
    while pipeline.run(stuck)["status"] == "QUEUED":
        passes += 1
        assert passes < pipeline.settings.start_max_attempts, "the start kept the slot past its tries"
        pipeline.reconcile(parse_iso(pipeline.run(stuck)["tuning_start"]["next_attempt_at"]) + timedelta(seconds=1))

    assert passes == pipeline.settings.start_max_attempts - 1
    assert pipeline.run(behind)["status"] == "TUNING"  # in the slot the stuck run gave back, in the same pass
    assert pipeline.sagemaker.tuning[stuck]["status"] == "Stopping"  # the job the lost answer made
    ended_at = parse_iso(pipeline.run(stuck)["updated_at"])
    # its record of making a job settles once no try can still be making one (job_stops.MAKING_SETTLE_SECONDS)
    pipeline.reconcile(ended_at + timedelta(seconds=job_stops.MAKING_SETTLE_SECONDS + 60))
    assert_ended(pipeline, stuck, "FAILED", f"after {pipeline.settings.start_max_attempts} attempts",
                 "AccessDeniedException")
    assert pipeline.statuses_told(stuck) == ["QUEUED", "FAILED"]


def test_a_queued_run_whose_start_lost_its_answer_is_started_by_the_next_end_with_the_job_that_start_made(pipeline):
    """A slot frees and the queued run's start makes its tuning job, but the answer is lost (a read timeout): the try
    is counted. When the next run ends (record_results) the try is due: its create finds the job made
    (ResourceInUse), and the run goes on with that job, described, not a second one."""
    ids = [pipeline.start_tuning(pipeline.drop_event(f"incoming/f{i}.tsv", good_file(i)))["run_id"] for i in range(3)]
    late = ids[2]
    create = pipeline.sagemaker.create_hyper_parameter_tuning_job

    def made_then_lost(**request):
        create(**request)
        raise ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")

    pipeline.sagemaker.create_hyper_parameter_tuning_job = made_then_lost
    pipeline.sagemaker.finish_tuning(ids[0], "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(ids[0], "Failed")  # a slot frees: the queued run's start makes its job, the answer is lost
    assert pipeline.run(late)["status"] == "QUEUED" and late in pipeline.sagemaker.tuning
    assert "ReadTimeoutError" in pipeline.run(late)["tuning_start"]["last_error"]
    pipeline.sagemaker.create_hyper_parameter_tuning_job = create
    pipeline.clients.runs_table.update_item(  # a minute later: its next try is due
        Key={"run_id": late}, UpdateExpression="SET tuning_start.next_attempt_at = :t",
        ExpressionAttributeValues={":t": now_iso(later(-1 / 60))})

    pipeline.succeed(ids[1])  # record_results ends it and starts the queue

    item = pipeline.run(late)
    assert item["status"] == "TUNING" and item["tuning_job_arn"].endswith(f"hyper-parameter-tuning-job/{late}")
    assert pipeline.sagemaker.calls.count("create_hyper_parameter_tuning_job") == 4  # 3 runs, one try found its job
    pipeline.succeed(late)
    assert_ended(pipeline, late, "SUCCEEDED")


def test_an_index_that_cannot_be_read_for_a_moment_stops_no_other_part_of_a_pass(pipeline):
    """The by_status query of one state throttled: that listing's error is counted, and the pass still sends the
    messages owed, frees slots and starts queued runs."""
    unpublished = Failing(pipeline.clients.sns, "publish", "NotFound", "Topic does not exist", failures=None)
    pipeline.use("sns", unpublished)
    with pytest.raises(Exception, match="NotFound"):
        pipeline.start_tuning(pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n"))
    pipeline.use("sns", unpublished._wrapped)
    table = pipeline.clients.runs_table
    pipeline.use("runs_table", Failing(
        table, "query", "ProvisionedThroughputExceededException", failures=None,
        when=lambda query: query.get("IndexName") == "by_status"
        and "EVALUATING" in str(query["KeyConditionExpression"].get_expression()["values"])))

    result = pipeline.reconcile(later(0.1))

    [rejected] = RunsRepository(table).by_status("REJECTED")
    assert pipeline.statuses_told(rejected["run_id"]) == ["REJECTED"]
    assert result["errors"]["list:EVALUATING"].startswith("ClientError: An error occurred "
                                                          "(ProvisionedThroughputExceededException)")


def test_a_reason_of_any_length_ends_the_run_cut_to_what_its_record_holds(pipeline):
    from reviewtune.core.failures import end_run, repository
    from reviewtune.core.reasons import REASON_MAX_CHARS

    run_id = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))["run_id"]
    end_run(repository(pipeline.settings, pipeline.clients), pipeline.settings, pipeline.clients, run_id,
            stage="tuning", status=RunStatus.FAILED, reason="why " * 100_000)  # 400 KB: over an item's size

    item = assert_ended(pipeline, run_id, "FAILED", "why why", "(reason shortened)")
    assert len(item["failure_reason"]) <= REASON_MAX_CHARS


def _rejected_while_sns_fails(pipeline: Pipeline, *names: str) -> None:
    """Bad files dropped while SNS refuses: each run REJECTED, its message left in its outbox."""
    unpublished = Failing(pipeline.clients.sns, "publish", "NotFound", "Topic does not exist", failures=None)
    pipeline.use("sns", unpublished)
    for name in names:
        with pytest.raises(Exception, match="NotFound"):
            pipeline.start_tuning(pipeline.drop_event(f"incoming/{name}.csv", b"text,score\nhello,5\n"))
    pipeline.use("sns", unpublished._wrapped)


class _OneRunPerPage:
    """The runs table, its index queries one item a page, every page after the first refused by ``index``."""

    def __init__(self, table, index: str):
        self._table = table
        self._index = index

    def query(self, **query):
        if query.get("IndexName") == self._index and "ExclusiveStartKey" in query:
            raise client_error("ProvisionedThroughputExceededException", "Rate exceeded", "Query")
        return self._table.query(**query, Limit=1) if query.get("IndexName") == self._index else self._table.query(**query)

    def __getattr__(self, name):
        return getattr(self._table, name)


def test_a_listing_whose_later_page_fails_still_steps_the_runs_of_the_pages_read(pipeline):
    """Two runs whose tuning ended without an event; the by_status listing refuses its second page: the run on the
    first page is still moved on in that pass, the refusal counted, and the next pass moves the other."""
    first, second = (pipeline.start_tuning(pipeline.drop_event(f"incoming/{name}.tsv", good_file(seed)))["run_id"]
                     for seed, name in enumerate(("a", "b")))
    for run_id in (first, second):
        pipeline.finish_tuning_well(run_id)
    table = pipeline.clients.runs_table
    pipeline.use("runs_table", _OneRunPerPage(table, "by_status"))

    result = pipeline.reconcile(later(0.1))

    moved = [run_id for run_id in (first, second) if pipeline.run(run_id)["status"] == "EVALUATING"]
    assert len(moved) == 1 and result["steps"][moved[0]].startswith("tuning Completed")
    assert result["errors"]["list:TUNING"].startswith("ClientError: An error occurred (ProvisionedThroughputExceeded")
    pipeline.use("runs_table", table)
    pipeline.reconcile(later(0.2))
    assert {pipeline.run(run_id)["status"] for run_id in (first, second)} == {"EVALUATING"}


def test_a_pending_message_listing_whose_later_page_fails_still_sends_the_messages_read(pipeline):
    _rejected_while_sns_fails(pipeline, "a", "b")
    table = pipeline.clients.runs_table
    pipeline.use("runs_table", _OneRunPerPage(table, "by_pending_notice"))

    result = pipeline.reconcile(later(0.1))

    rejected = RunsRepository(table).by_status("REJECTED")
    assert sorted(len(pipeline.statuses_told(r["run_id"])) for r in rejected) == [0, 1] and result["sent"] == 1
    assert result["errors"]["list:pending"].startswith("ClientError: An error occurred (ProvisionedThroughput")
    pipeline.use("runs_table", table)
    pipeline.reconcile(later(0.2))
    for run in rejected:
        assert_ended(pipeline, run["run_id"], "REJECTED")


def test_a_pass_whose_outbox_spends_its_time_leaves_the_other_messages_for_the_next_pass(pipeline):
    """SNS stalling (each Publish up to its timeouts) must not spend every pass in the outbox: past the reserve the
    other messages wait, counted, and the slots, the queue and the restarts still get their turn."""
    _rejected_while_sns_fails(pipeline, "a", "b", "c")
    spent = reconciler.TAIL_SECONDS_RESERVED - 1  # no claim waits for a restart: only the tail's time is kept

    result = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.1), seconds_left=lambda: spent)

    # the first run's messages always go out, so that no pass, however slow before its outbox, sends none
    assert result["sent"] == 1 and result["errors"]["outbox"].startswith("2 run(s) with messages to send left")
    assert reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.15),
                                seconds_left=lambda: reconciler.TAIL_SECONDS_RESERVED + 1)["sent"] == 2
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.2), seconds_left=lambda: 300.0)
    for run in RunsRepository(pipeline.clients.runs_table).by_status("REJECTED"):
        assert_ended(pipeline, run["run_id"], "REJECTED")


def test_a_pass_with_a_claim_to_restart_keeps_the_restart_s_time_from_its_outbox(pipeline):
    _rejected_while_sns_fails(pipeline, "a", "b")
    _stale_claims(pipeline, 1)

    result = reconciler.reconcile(pipeline.settings, pipeline.clients, later(0.5),
                                  seconds_left=lambda: reconciler.OUTBOX_SECONDS_RESERVED - 1)

    assert result["sent"] == 1 and result["errors"]["outbox"].startswith("1 run(s) with messages to send left")
    assert [step for step in result["steps"].values() if step.startswith("claim restarted")]
