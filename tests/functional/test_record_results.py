from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.core import names
from reviewtune.core.runs import RunsRepository
from tests.support.aws import REGION, load_event, load_handler

RUN_ID = "reviewtune-3f2a9c1d7e5b"
EVALUATION = {
    "metrics": {
        "accuracy": {"value": 0.7412, "ci95": [0.6896, 0.7872]},
        "macro_f1": {"value": 0.7398},
        "per_class": {
            "-1": {"precision": 0.78, "recall": 0.8, "f1": 0.79, "support": 103},
            "0": {"precision": 0.62, "recall": 0.6, "f1": 0.61, "support": 103},
            "1": {"precision": 0.82, "recall": 0.83, "f1": 0.825, "support": 103},
        },
        "confusion_matrix": {"labels": [-1, 0, 1], "matrix": [[82, 18, 3], [20, 62, 21], [3, 15, 85]]},
    },
    "test_rows": 309,
}


def processing_event(stack, status: str) -> dict:
    event = load_event(f"processing_job_{status.lower()}.json")
    detail = event["detail"]
    detail["ProcessingJobName"] = f"{RUN_ID}-eval"
    detail["ProcessingJobStatus"] = status
    for output in detail.get("ProcessingOutputConfig", {}).get("Outputs", []):
        output["S3Output"]["S3Uri"] = f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation"
    return event


@pytest.fixture
def evaluating_run(stack):
    module = load_handler("record_results")
    runs = RunsRepository(module.ctx.clients.runs_table)
    runs.create({"run_id": RUN_ID, "dataset": "team/a.tsv", "status": "EVALUATING", "source": {"bucket": stack.bucket, "key": "incoming/team/a.tsv"},
                 "config": {"strategy": "Random"}, "data": {"summary": {"rows": {"train": 5537, "validation": 307, "test": 309}}}})
    runs.update(RUN_ID, tuning={"status_counters": {"Completed": 2}, "trials": [{"name": "t1", "status": "Completed"}, {"name": "t2", "status": "Completed"}],
                                "best_training_job": {"name": f"{RUN_ID}-002-aaaa0002", "objective": 73.6, "tuned_hyperparameters": {"learning_rate": "4.1e-05", "train_batch_size": "128"}}})
    return module


def test_completed_evaluation_is_stored_and_announced(stack, evaluating_run, lambda_context):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=stack.bucket, Key=f"runs/{RUN_ID}/evaluation/evaluation.json", Body=json.dumps(EVALUATION).encode())
    s3.put_object(Bucket=stack.bucket, Key=f"runs/{RUN_ID}/evaluation/confusion_matrix.png", Body=b"\x89PNG")
    result = evaluating_run.handler(processing_event(stack, "Completed"), lambda_context)
    assert result == {"run_id": RUN_ID, "status": "SUCCEEDED", "test_accuracy": 0.7412}
    item = stack.run(RUN_ID)
    assert item["status"] == "SUCCEEDED"
    assert item["metrics"]["accuracy"]["value"] == 0.7412
    assert item["metrics"]["accuracy"]["ci95"] == [0.6896, 0.7872]
    assert item["metrics"]["confusion_matrix"]["matrix"][0] == [82, 18, 3]
    assert item["results"]["confusion_matrix_uri"] == f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/confusion_matrix.png"
    [message] = stack.messages()
    assert message["Subject"] == "reviewtune: team/a.tsv: test accuracy 74.12 %"
    body = message["Message"]
    assert "Test accuracy:       74.12 % (95 % CI 68.96-78.72 %)" in body
    for expected in ("74.12 %", "learning_rate", "4.10e-05", "negative (-1)", "0.780", "confusion_matrix.png", "train 5,537", "Validation accuracy: 73.60 %"):
        assert expected in body, expected
    assert item["notification_message_id"] == message["MessageId"]


def test_failed_evaluation_is_recorded_with_its_reason(stack, evaluating_run, lambda_context):
    event = processing_event(stack, "Failed")
    event["detail"]["FailureReason"] = "AlgorithmError: CUDA out of memory"
    event["detail"].pop("ExitMessage", None)  # the script left no words of its own: SageMaker's
    result = evaluating_run.handler(event, lambda_context)
    assert result["status"] == "FAILED"
    assert stack.run(RUN_ID)["failure_reason"] == "AlgorithmError: CUDA out of memory"
    [message] = stack.messages()
    assert "CUDA out of memory" in message["Message"] and "evaluation" in message["Subject"]


def test_a_failed_evaluation_tells_the_script_s_own_words_before_sagemaker_s(stack, evaluating_run, lambda_context):
    """As AWS sends it (events/processing_job_failed.json): FailureReason is SageMaker's generic words, the cause is
    in ExitMessage (what the script left in /opt/ml/output/message)."""
    event = load_event("processing_job_failed.json")
    event["detail"]["ProcessingJobName"] = f"{RUN_ID}-eval"

    assert evaluating_run.handler(event, lambda_context)["status"] == "FAILED"

    assert stack.run(RUN_ID)["failure_reason"] == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/opt/ml/processing/input/data/test.tsv' "
        "(AlgorithmError: See job logs for more information)")


def test_missing_evaluation_json_fails_the_run_clearly(stack, evaluating_run, lambda_context):
    result = evaluating_run.handler(processing_event(stack, "Completed"), lambda_context)
    assert result["status"] == "FAILED"
    assert "evaluation.json cannot be read" in stack.run(RUN_ID)["failure_reason"]


def test_second_event_for_the_same_change_publishes_once(stack, evaluating_run, lambda_context):
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=stack.bucket, Key=f"runs/{RUN_ID}/evaluation/evaluation.json", Body=json.dumps(EVALUATION).encode()
    )
    event = processing_event(stack, "Completed")
    evaluating_run.handler(event, lambda_context)
    again = dict(event, id="a-different-event-id")
    evaluating_run.handler(again, lambda_context)
    assert len(stack.messages()) == 1


def test_a_confusion_matrix_the_job_did_not_draw_is_not_pointed_to(stack, evaluating_run, lambda_context):
    """Without matplotlib the evaluation job writes evaluation.json and no image: no link to a missing object."""
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=stack.bucket, Key=f"runs/{RUN_ID}/evaluation/evaluation.json", Body=json.dumps(EVALUATION).encode()
    )
    assert evaluating_run.handler(processing_event(stack, "Completed"), lambda_context)["status"] == "SUCCEEDED"
    item = stack.run(RUN_ID)
    assert "confusion_matrix_uri" not in item["results"]
    # where the report (run.json's outputs) says it is
    assert item["results"]["evaluation_uri"] == names.s3_uri(stack.bucket, names.evaluation_key(RUN_ID))
    [message] = stack.messages()
    assert "Confusion matrix" not in message["Message"] and "Evaluation report:" in message["Message"]


@pytest.mark.parametrize("name", [f"{RUN_ID[:10]}-adhoc-analysis", "reviewtune-eval-report"])
def test_another_processing_job_with_the_stack_s_prefix_is_ignored(stack, evaluating_run, lambda_context, name):
    """The rule matches the name's prefix only: a processing job of the same prefix that is no run's evaluation is
    ignored, as start_evaluation ignores another tuning job, instead of failing into the dead-letter queue."""
    event = processing_event(stack, "Completed")
    event["detail"]["ProcessingJobName"] = name
    assert evaluating_run.handler(event, lambda_context) == {"status": "IGNORED", "processing_job_name": name}
    assert stack.run(RUN_ID)["status"] == "EVALUATING" and stack.messages() == []
