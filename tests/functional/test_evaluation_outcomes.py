"""After the evaluation job: what S3, SageMaker or a malformed evaluation.json can do to the run's one outcome.

A good run is never failed by a moment's trouble (S3 slowing down, IAM denying during a stack update); a file the
run record cannot hold fails the run at once, naming the file, before any champion moves; a retry after the
champion was written tells the decision made, not "already champion"; a run ended at its deadline never becomes
champion, and one that became champion is finished, never failed."""

from __future__ import annotations

import json

import pytest

from reviewtune.core import champion as champion_module
from reviewtune.core.champion import get_champion
from reviewtune.core.failures import CHAMPION_NOT_ENDED, end_run
from reviewtune.core.runs import RunsRepository, RunStatus
from tests.functional.pipeline import Pipeline, later
from tests.functional.test_record_results import EVALUATION
from tests.support.faults import Failing


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


def _deep(evaluation: dict) -> dict:
    odd = json.loads(json.dumps(evaluation))
    nested: dict = {}
    odd["metrics"]["extra"] = nested
    for _ in range(40):  # DynamoDB holds 32 levels
        nested["x"] = {}
        nested = nested["x"]
    return odd


@pytest.mark.parametrize(("mangle", "said"), [
    (_many_classes, "its metrics take"),
    (_tiny_number, "metrics.accuracy.ci95.0 = 1e-300 is outside the range a run record can hold"),
    (_deep, "is nested more than 16 levels deep"),
], ids=["too-large", "tiny-number", "too-deep"])
def test_an_evaluation_json_the_run_record_cannot_hold_fails_the_run_at_once_and_crowns_nobody(pipeline, mangle, said):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=mangle(EVALUATION))
    assert pipeline.evaluation_ended(run_id)["status"] == "FAILED"
    item = pipeline.run(run_id)
    assert "evaluation.json" in item["failure_reason"] and said in item["failure_reason"]
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.sagemaker.packages() == []
    assert pipeline.statuses_told(run_id) == ["FAILED"]


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


def test_a_retry_after_the_champion_was_written_tells_the_decision_made(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    table = pipeline.clients.runs_table
    # the final transition (the write that carries the outbox) is throttled once, after the champion's put
    pipeline.use("runs_table", Failing(table, "update_item", "ProvisionedThroughputExceededException", failures=1,
                                       when=lambda kw: "outbox" in kw.get("ExpressionAttributeNames", {}).values()))
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        pipeline.evaluation_ended(run_id)
    assert get_champion(table, pipeline.run(run_id)["dataset"]).run_id == run_id
    pipeline.use("runs_table", table)
    pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert item["champion"]["decision"] == "first champion"
    [message] = pipeline.messages(run_id)
    assert "Champion:            first champion" in message["Message"]


# The reconciler ends an EVALUATING run at its deadline (3 h) while record_results, seconds from the end, decides the
# champion: the pointer write and the run's end exclude each other, whichever comes first.
PAST_THE_EVALUATION_DEADLINE = 4


def test_a_run_ended_at_its_deadline_just_before_the_champion_write_does_not_become_champion(pipeline, monkeypatch):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    put = champion_module._put_marking_run

    def reconciler_first(*args, **kwargs):
        pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
        return put(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_marking_run", reconciler_first)
    result = pipeline.evaluation_ended(run_id)
    item = pipeline.run(run_id)
    assert (result["status"], item["status"]) == ("FAILED", "FAILED")
    assert "longer than its deadline" in item["failure_reason"]
    assert get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert "champion_since" not in item
    assert pipeline.statuses_told(run_id) == ["FAILED"]


def test_a_run_made_champion_just_before_its_deadline_is_finished_not_failed(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    table = pipeline.clients.runs_table
    # the pointer moves; then every write of the SUCCEEDED record fails until the deadline has passed
    failing = Failing(table, "update_item", "ProvisionedThroughputExceededException", failures=None,
                      when=lambda kw: "outbox" in kw.get("ExpressionAttributeNames", {}).values())
    pipeline.use("runs_table", failing)
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        pipeline.evaluation_ended(run_id)
    dataset = pipeline.run(run_id)["dataset"]
    assert get_champion(table, dataset).run_id == run_id and pipeline.run(run_id)["champion_since"]
    failing.heal()
    assert end_run(RunsRepository(table), pipeline.settings, pipeline.clients, run_id, stage="evaluation",
                   status=RunStatus.STOPPED, reason="stopped by hand")["reason"] == CHAMPION_NOT_ENDED
    summary = pipeline.reconcile(later(PAST_THE_EVALUATION_DEADLINE))
    assert summary["stuck"] == 0 and summary["steps"][run_id] == "evaluation Completed: SUCCEEDED"
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and item["champion"]["decision"] == "first champion"
    assert get_champion(table, dataset).run_id == run_id
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]
