"""Jobs' output lines in CloudWatch Logs, where SageMaker puts them, as well as in each job folder's log.txt.

GIVEN the local service with a CloudWatch Logs client (the local runtime's moto), WHEN a trial or an evaluation job
runs, THEN its lines are in /aws/sagemaker/TrainingJobs or /ProcessingJobs, stream ``<job>/algo-1-<epoch>``, in the
order of log.txt; CloudWatch refusing a batch never fails a job, and the lines go once it takes them again.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest

from reviewtune.local import log_events
from reviewtune.local.sagemaker import cloudwatch_logs
from reviewtune.local.sagemaker.cloudwatch_logs import JobLogStream

from .conftest import EVALUATE_SCRIPT, REGION
from .test_processing import processing_request, wait_processing


@pytest.fixture
def logs(moto_url) -> Any:
    return boto3.client("logs", endpoint_url=moto_url, region_name=REGION)


def events(logs: Any, group: str, job_name: str) -> tuple[str, list[str]]:
    [stream] = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=job_name + "/")["logStreams"]
    read = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)
    return stream["logStreamName"], [event["message"] for event in read["events"]]


def test_an_evaluation_job_s_lines_are_in_its_processing_job_stream(make_world, logs):
    world = make_world(logs_client=logs)
    world.s3.put_object(Bucket=world.bucket, Key="code/src/evaluate_model_metrics.py", Body=EVALUATE_SCRIPT)

    world.sm.create_processing_job(**processing_request(world, "failed-eval", "--fail"))
    world.sm.create_processing_job(**processing_request(world, "quiet-eval"))
    assert wait_processing(world, "failed-eval")["ProcessingJobStatus"] == "Failed"
    assert wait_processing(world, "quiet-eval")["ProcessingJobStatus"] == "Completed"

    stream, lines = events(logs, cloudwatch_logs.PROCESSING_GROUP, "failed-eval")
    assert stream.startswith("failed-eval/algo-1-") and stream.rsplit("-", 1)[1].isdigit()
    written = (world.workdir / "processing" / "failed-eval" / "log.txt").read_text().splitlines()
    assert lines == written and "ValueError: no model found in the input folder" in lines
    assert events(logs, cloudwatch_logs.PROCESSING_GROUP, "quiet-eval")[1] == []  # printed nothing: its stream is there


def test_each_trial_s_lines_are_in_its_own_training_job_stream(make_world, logs):
    world = make_world(logs_client=logs)
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("logged", max_jobs=2, max_parallel=2))
    assert world.wait_tuning("logged")["HyperParameterTuningJobStatus"] == "Completed"

    trials = sorted(t["TrainingJobName"] for t in world.trials("logged"))
    assert len(trials) == 2
    for trial in trials:
        _, lines = events(logs, cloudwatch_logs.TRAINING_GROUP, trial)
        written = (world.workdir / "training" / trial / "log.txt").read_text().splitlines()
        assert lines == [line or " " for line in written]
        assert any("val_acc" in line for line in lines)  # the metric lines the tuner read


class Refusing:
    """A CloudWatch Logs client whose PutLogEvents fails ``failures`` times, then takes every batch."""

    exceptions = boto3.client("logs", region_name=REGION).exceptions

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[dict[str, Any]]] = []

    def create_log_group(self, **_: Any) -> None:
        raise self.exceptions.ResourceAlreadyExistsException({"Error": {"Code": "ResourceAlreadyExistsException"}},
                                                             "CreateLogGroup")

    def create_log_stream(self, **_: Any) -> None:
        pass

    def put_log_events(self, *, logEvents: list[dict[str, Any]], **_: Any) -> None:  # noqa: N803 - the API's name
        if self.failures:
            self.failures -= 1
            raise ConnectionError("endpoint unreachable")
        self.batches.append(logEvents)


def test_lines_refused_are_sent_later_in_order_and_the_refusal_is_logged_once(caplog):
    client = Refusing(failures=2)
    stream = JobLogStream(client, cloudwatch_logs.TRAINING_GROUP, "job/algo-1-1", flush_seconds=3600)
    with caplog.at_level(logging.WARNING, logger=cloudwatch_logs.__name__):
        stream.write("epoch 1")
        stream.flush()
        stream.write("")  # CloudWatch refuses an empty message
        stream.flush()
        stream.write("epoch 2")
        stream.close()

    assert [[e["message"] for e in batch] for batch in client.batches] == [["epoch 1", " ", "epoch 2"]]
    assert [r.getMessage() for r in caplog.records] == [
        "log lines of job/algo-1-1 not written to CloudWatch Logs /aws/sagemaker/TrainingJobs: endpoint unreachable"]


def test_batches_keep_to_put_log_events_limits():
    small = [{"timestamp": 1, "message": "x"}] * 10_001
    assert [len(batch) for batch in log_events.batches(small)] == [10_000, 1]
    large = [{"timestamp": 1, "message": "y" * 300_000}] * 4  # 300,026 bytes each: three fit under 1 MiB
    assert [len(batch) for batch in log_events.batches(large)] == [3, 1]
    assert len(log_events.event(1, "é" * 200_000)["message"].encode()) <= log_events.MAX_EVENT_BYTES


def test_no_endpoint_configured_writes_nowhere(monkeypatch):
    for name in cloudwatch_logs.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert cloudwatch_logs.client_from_environment(REGION) is None
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:1")
    assert cloudwatch_logs.client_from_environment(REGION).meta.endpoint_url == "http://127.0.0.1:1"


def test_an_endpoint_that_is_gone_fails_the_last_flush_quietly_with_short_timeouts(monkeypatch, caplog):
    """The runtime stopping takes moto with it: a job's last flush is logged, not raised, and the client gives up
    after a 2 s connect timeout and 3 attempts in all (botocore's default: 60 s, and the job would wait for it)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:9")  # nothing listens on the discard port
    client = cloudwatch_logs.client_from_environment(REGION)
    assert client.meta.config.connect_timeout == 2 and client.meta.config.retries["total_max_attempts"] == 3
    stream = JobLogStream(client, cloudwatch_logs.TRAINING_GROUP, "gone/algo-1-1", flush_seconds=3600)
    stream.write("last line")
    with caplog.at_level(logging.WARNING, logger=cloudwatch_logs.__name__):
        stream.close()
    assert "log lines of gone/algo-1-1 not written to CloudWatch Logs" in caplog.text
