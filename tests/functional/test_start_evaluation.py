from __future__ import annotations

from datetime import datetime

import boto3
import pytest

from reviewtune.core import code_bundle
from reviewtune.core.runs import RunsRepository, RunStatus
from tests.functional.test_start_tuning import SageMakerRecorder
from tests.support.aws import REGION, load_event, load_handler

RUN_ID = "reviewtune-3f2a9c1d7e5b"
T0 = datetime(2026, 11, 27, 12, 0, 0)
T1 = datetime(2026, 11, 27, 12, 20, 0)


def tuning_event(status: str) -> dict:
    event = load_event(f"tuning_job_{status.lower()}.json")
    event["detail"]["HyperParameterTuningJobName"] = RUN_ID
    event["detail"]["HyperParameterTuningJobStatus"] = status
    return event


def trial(n: int, status: str, objective: float | None, lr: str) -> dict:
    summary = {
        "TrainingJobName": f"{RUN_ID}-00{n}-abcdef0{n}",
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{RUN_ID}-00{n}-abcdef0{n}",
        "CreationTime": T0,
        "TrainingStartTime": T0,
        "TrainingEndTime": T1,
        "TrainingJobStatus": status,
        "TunedHyperParameters": {"learning_rate": lr, "train_batch_size": "128"},
    }
    if objective is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "validation:accuracy", "Value": objective}
        summary["ObjectiveStatus"] = "Succeeded"
    else:
        summary["ObjectiveStatus"] = "Failed"
        summary["FailureReason"] = "AlgorithmError: boom"
    return summary


def describe_training(summary: dict, bucket: str) -> dict:
    return {
        "TrainingJobName": summary["TrainingJobName"],
        "TrainingJobArn": summary["TrainingJobArn"],
        "TrainingJobStatus": summary["TrainingJobStatus"],
        "SecondaryStatus": "Completed",
        "HyperParameters": {**summary["TunedHyperParameters"], "epochs": "3", "sagemaker_program": "train.py"},
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{bucket}/runs/{RUN_ID}/models/{summary['TrainingJobName']}/output/model.tar.gz"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": T0,
        "TrainingTimeInSeconds": 1200,
        "BillableTimeInSeconds": 1200,
        "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value", 0.0), "Timestamp": T1}],
    }


def describe_tuning(status: str, best: dict | None, failure: str | None = None) -> dict:
    description = {
        "HyperParameterTuningJobName": RUN_ID,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{RUN_ID}",
        "HyperParameterTuningJobConfig": {"Strategy": "Bayesian", "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2}},
        "HyperParameterTuningJobStatus": status,
        "CreationTime": T0,
        "HyperParameterTuningEndTime": T1,
        "TrainingJobStatusCounters": {"Completed": 1, "Stopped": 0, "NonRetryableError": 1},
        "ObjectiveStatusCounters": {"Succeeded": 1, "Failed": 1, "Pending": 0},
    }
    if best:
        description["BestTrainingJob"] = {k: best[k] for k in ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingJobStatus", "TunedHyperParameters", "FinalHyperParameterTuningJobObjectiveMetric")}
    if failure:
        description["FailureReason"] = failure
    return description


@pytest.fixture
def tuning_run(stack):
    module = load_handler("start_evaluation")
    RunsRepository(module.ctx.clients.runs_table).create(
        {
            "run_id": RUN_ID,
            "dataset": "a.tsv",
            "status": "TUNING",
            "source": {"bucket": stack.bucket, "key": "incoming/a.tsv"},
            "config": {"strategy": "Bayesian", "max_seq_length": 96},
            "code": {"source_uri": f"s3://{stack.bucket}/code/abc/src/", "archive_uri": f"s3://{stack.bucket}/code/abc/sourcedir.tar.gz"},
        }
    )
    return module


def test_completed_tuning_records_trials_and_evaluates_the_best_model(stack, tuning_run, lambda_context):
    good, bad = trial(1, "Completed", 73.5, "3e-05"), trial(2, "Failed", None, "1e-05")
    model = describe_training(good, stack.bucket)["ModelArtifacts"]["S3ModelArtifacts"]
    boto3.client("s3", region_name=REGION).put_object(Bucket=stack.bucket, Key=model.split("/", 3)[3], Body=b"model")
    with SageMakerRecorder(tuning_run) as sm:
        sm.stubber.add_response("describe_hyper_parameter_tuning_job", describe_tuning("Completed", good))
        sm.stubber.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [good, bad]},
                                {"HyperParameterTuningJobName": RUN_ID, "MaxResults": 100})  # SageMaker's most a page
        sm.stubber.add_response("describe_training_job", describe_training(good, stack.bucket))
        sm.stubber.add_response("describe_training_job", describe_training(bad, stack.bucket))
        sm.stubber.add_response("describe_training_job", describe_training(good, stack.bucket))
        sm.stubber.add_response("create_processing_job", {"ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/x"})
        result = tuning_run.handler(tuning_event("Completed"), lambda_context)
        sm.stubber.assert_no_pending_responses()

    assert result == {"run_id": RUN_ID, "status": "EVALUATING", "best_training_job": good["TrainingJobName"]}
    request = dict(sm.requests)["CreateProcessingJob"]
    assert request["ProcessingJobName"] == f"{RUN_ID}-eval"
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"].endswith(f"{good['TrainingJobName']}/output/model.tar.gz")
    assert inputs["data"]["S3Uri"] == f"s3://{stack.bucket}/runs/{RUN_ID}/data/test/"
    # the training code deployed with the function (its script takes these arguments), not the run's bundle ("abc")
    code = code_bundle.digest_of(code_bundle.default_code_dir())
    assert inputs["code"]["S3Uri"] == f"s3://{stack.bucket}/code/{code}/src/"
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.head_object(Bucket=stack.bucket, Key=f"code/{code}/src/evaluate_model_metrics.py")
    assert request["AppSpecification"]["ContainerEntrypoint"][-1].endswith("evaluate_model_metrics.py")
    # each model is scored at the length it was trained with (its label_map.json), not the run's setting
    assert "--max-seq-length" not in request["AppSpecification"]["ContainerArguments"]
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation"

    item = stack.run(RUN_ID)
    assert item["status"] == "EVALUATING" and item["evaluation_job_name"] == f"{RUN_ID}-eval"
    tuning = item["tuning"]
    assert tuning["best_training_job"]["name"] == good["TrainingJobName"]
    assert tuning["best_training_job"]["objective"] == 73.5
    assert tuning["best_training_job"]["tuned_hyperparameters"] == {"learning_rate": "3e-05", "train_batch_size": "128"}
    assert [(t["name"], t["status"], t["objective"], t["billable_seconds"]) for t in tuning["trials"]] == [
        (good["TrainingJobName"], "Completed", 73.5, 1200),
        (bad["TrainingJobName"], "Failed", None, 1200),
    ]
    assert tuning["trials"][1]["failure_reason"] == "AlgorithmError: boom"
    assert tuning["total_billable_seconds"] == 2400
    assert stack.messages() == []


@pytest.mark.parametrize(("status", "final"), [("Failed", "FAILED"), ("Stopped", "STOPPED")])
def test_failed_or_stopped_tuning_is_recorded_and_notified_and_starts_nothing(stack, tuning_run, lambda_context, status, final):
    bad = trial(1, "Failed", None, "1e-05")
    with SageMakerRecorder(tuning_run) as sm:
        sm.stubber.add_response("describe_hyper_parameter_tuning_job", describe_tuning(status, None, failure="All training jobs failed" if status == "Failed" else None))
        sm.stubber.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [bad]})
        sm.stubber.add_response("describe_training_job", describe_training(bad, stack.bucket))
        result = tuning_run.handler(tuning_event(status), lambda_context)
    assert result["status"] == final
    assert "CreateProcessingJob" not in dict(sm.requests)
    item = stack.run(RUN_ID)
    assert item["status"] == final and item["tuning"]["trials"][0]["status"] == "Failed"
    [message] = stack.messages()
    assert final.lower() in message["Subject"] and RUN_ID in message["Message"]


def test_completed_without_a_successful_trial_fails_the_run(stack, tuning_run, lambda_context):
    bad = trial(1, "Failed", None, "1e-05")
    with SageMakerRecorder(tuning_run) as sm:
        sm.stubber.add_response("describe_hyper_parameter_tuning_job", describe_tuning("Completed", None))
        sm.stubber.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [bad]})
        sm.stubber.add_response("describe_training_job", describe_training(bad, stack.bucket))
        result = tuning_run.handler(tuning_event("Completed"), lambda_context)
    assert result["status"] == "FAILED" and "no training job" in result["reason"]
    assert "CreateProcessingJob" not in dict(sm.requests)
    assert len(stack.messages()) == 1


def test_event_for_a_run_that_moved_on_does_nothing(stack, tuning_run, lambda_context):
    RunsRepository(tuning_run.ctx.clients.runs_table).transition(RUN_ID, RunStatus.TUNING, RunStatus.EVALUATING)
    with SageMakerRecorder(tuning_run) as sm:
        result = tuning_run.handler(tuning_event("Completed"), lambda_context)
    assert result["duplicate"] is True and sm.requests == []
