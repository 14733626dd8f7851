"""State-change events reach EventBridge with AWS's detail-types and detail shapes (rule -> SQS in moto)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from .test_processing import processing_request, wait_processing


@pytest.fixture
def sagemaker_events(aws):
    """Every aws.sagemaker event on the default bus, delivered to a fresh SQS queue."""
    sqs, events = aws["sqs"], aws["events"]
    suffix = uuid.uuid4().hex[:8]
    queue_url = sqs.create_queue(QueueName=f"sm-events-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = f"sagemaker-{suffix}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.sagemaker"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])

    def drain(until, timeout: float = 10.0) -> list[dict]:
        received: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            received += [json.loads(m["Body"]) for m in batch.get("Messages", [])]
            if until(received):
                break
            time.sleep(0.1)
        return received

    yield drain
    events.remove_targets(Rule=rule, Ids=["queue"])
    events.delete_rule(Name=rule)
    sqs.delete_queue(QueueUrl=queue_url)


def of_type(received: list[dict], detail_type: str) -> list[dict]:
    return [event for event in received if event["detail-type"] == detail_type]


def test_tuning_and_training_state_changes_are_published(world, sagemaker_events):
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("evented", max_jobs=2, max_parallel=2))
    world.wait_tuning("evented")

    received = sagemaker_events(
        lambda got: any(
            e["detail"].get("HyperParameterTuningJobStatus") == "Completed"
            for e in of_type(got, "SageMaker HyperParameter Tuning Job State Change")
        )
    )

    tuning = of_type(received, "SageMaker HyperParameter Tuning Job State Change")
    assert [e["detail"]["HyperParameterTuningJobStatus"] for e in tuning] == ["InProgress", "Completed"]
    final = tuning[-1]
    assert final["source"] == "aws.sagemaker"
    assert final["resources"] == [
        "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/evented"
    ]
    detail = final["detail"]
    assert "BestTrainingJob" not in detail
    assert detail["HyperParameterTuningJobName"] == "evented"
    assert detail["TrainingJobStatusCounters"]["Completed"] == 2
    assert detail["ObjectiveStatusCounters"]["Succeeded"] == 2
    assert detail["HyperParameterTuningJobConfig"]["Strategy"] == "Random"
    assert detail["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] == "3"
    assert isinstance(detail["CreationTime"], str) and detail["CreationTime"].isdigit()
    assert int(detail["HyperParameterTuningEndTime"]) >= int(detail["CreationTime"])

    training = of_type(received, "SageMaker Training Job State Change")
    by_job: dict[str, list[str]] = {}
    for event in training:
        by_job.setdefault(event["detail"]["TrainingJobName"], []).append(event["detail"]["SecondaryStatus"])
    assert len(by_job) == 2
    for statuses in by_job.values():
        assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    completed = [e for e in training if e["detail"]["TrainingJobStatus"] == "Completed"][0]["detail"]
    assert completed["ModelArtifacts"]["S3ModelArtifacts"].endswith("/output/model.tar.gz")
    assert (
        isinstance(completed["CreationTime"], int)
        and completed["TrainingEndTime"] >= completed["CreationTime"]
    )
    assert completed["TuningJobArn"].endswith("hyper-parameter-tuning-job/evented")


def test_processing_state_changes_are_published(world, sagemaker_events):
    from .conftest import EVALUATE_SCRIPT

    world.s3.put_object(Bucket=world.bucket, Key="code/src/evaluate_model_metrics.py", Body=EVALUATE_SCRIPT)
    world.sm.create_processing_job(**processing_request(world, "evented-eval"))
    wait_processing(world, "evented-eval")

    received = sagemaker_events(
        lambda got: any(
            e["detail"]["ProcessingJobStatus"] == "Completed"
            for e in of_type(got, "SageMaker Processing Job State Change")
        )
    )

    processing = of_type(received, "SageMaker Processing Job State Change")
    assert [e["detail"]["ProcessingJobStatus"] for e in processing] == ["InProgress", "Completed"]
    detail = processing[-1]["detail"]
    assert processing[-1]["resources"] == [detail["ProcessingJobArn"]]
    assert detail["ProcessingJobName"] == "evented-eval"
    assert detail["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].endswith("/runs/r/evaluation")
    assert detail["Environment"] == {"REVIEWTUNE_LABEL": "eval"}
    assert (
        isinstance(detail["ProcessingEndTime"], int) and detail["ProcessingEndTime"] >= detail["CreationTime"]
    )
