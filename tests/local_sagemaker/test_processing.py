"""Processing jobs: /opt/ml paths mapped into the job folder, inputs downloaded, outputs uploaded."""

from __future__ import annotations

import json

from .conftest import EVALUATE_SCRIPT, ROLE_ARN, wait_for


def processing_request(world, name: str, *extra_args: str) -> dict:
    return {
        "ProcessingJobName": name,
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{world.bucket}/code/src/evaluate_model_metrics.py",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"{world.data_uri}/test",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {
                        "S3Uri": f"s3://{world.bucket}/runs/r/evaluation",
                        "LocalPath": "/opt/ml/processing/output/evaluation",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "AppSpecification": {
            "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate_model_metrics.py"],
            "ContainerArguments": [
                "--input-data",
                "/opt/ml/processing/input/data",
                "--output-data",
                "/opt/ml/processing/output/evaluation",
                *extra_args,
            ],
        },
        "Environment": {"REVIEWTUNE_LABEL": "eval"},
        "RoleArn": ROLE_ARN,
    }


def wait_processing(world, name: str) -> dict:
    return wait_for(
        lambda: world.sm.describe_processing_job(ProcessingJobName=name),
        lambda d: d["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout=20,
    )


def test_processing_job_completes_and_uploads_its_outputs(world):
    world.s3.put_object(Bucket=world.bucket, Key="code/src/evaluate_model_metrics.py", Body=EVALUATE_SCRIPT)

    arn = world.sm.create_processing_job(**processing_request(world, "run-eval"))["ProcessingJobArn"]
    described = wait_processing(world, "run-eval")

    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:processing-job/run-eval"
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["ProcessingEndTime"] >= described["ProcessingStartTime"] >= described["CreationTime"]
    body = world.s3.get_object(Bucket=world.bucket, Key="runs/r/evaluation/evaluation.json")["Body"].read()
    assert json.loads(body) == {"metrics": {"accuracy": {"value": 0.75}}, "test_rows": 1, "label": "eval"}
    root = world.workdir / "processing" / "run-eval" / "opt" / "ml" / "processing"
    assert (root / "input" / "data" / "test.tsv").is_file()
    assert (root / "input" / "code" / "evaluate_model_metrics.py").is_file()


def test_failing_processing_script_fails_the_job_with_its_error(world):
    world.s3.put_object(Bucket=world.bucket, Key="code/src/evaluate_model_metrics.py", Body=EVALUATE_SCRIPT)

    world.sm.create_processing_job(**processing_request(world, "bad-eval", "--fail"))
    described = wait_processing(world, "bad-eval")

    assert described["ProcessingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: ")
    assert "no model found in the input folder" in described["FailureReason"]
    assert described["FailureReason"].endswith("exit code: 1")
    assert "ExitMessage" not in described  # as SageMaker: only what the script left in /opt/ml/output/message
    listed = world.s3.list_objects_v2(Bucket=world.bucket, Prefix="runs/r/evaluation/")
    assert listed["KeyCount"] == 0


def test_processing_job_with_a_missing_input_fails_before_running(world):
    world.sm.create_processing_job(**processing_request(world, "no-code"))

    described = wait_processing(world, "no-code")

    assert described["ProcessingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: input 'code'")
    assert "no S3 object found under" in described["FailureReason"]


def test_stop_processing_job(world):
    world.s3.put_object(
        Bucket=world.bucket,
        Key="code/src/evaluate_model_metrics.py",
        Body="import time\nprint('started', flush=True)\ntime.sleep(60)\n",
    )
    world.sm.create_processing_job(**processing_request(world, "long-eval"))
    log = world.workdir / "processing" / "long-eval" / "log.txt"
    wait_for(lambda: log.read_text() if log.exists() else "", lambda text: "started" in text, timeout=20)

    world.sm.stop_processing_job(ProcessingJobName="long-eval")
    described = wait_processing(world, "long-eval")

    assert described["ProcessingJobStatus"] == "Stopped"


def test_processing_job_downloads_each_of_several_inputs_to_its_own_path(world):
    """As start_evaluation asks when a dataset has a champion: two more inputs, each one S3 object by its key."""
    world.s3.put_object(Bucket=world.bucket, Key="code/src/evaluate_model_metrics.py", Body=EVALUATE_SCRIPT)
    world.s3.put_object(Bucket=world.bucket, Key="runs/c/models/c-001/output/model.tar.gz", Body=b"champion model")
    world.s3.put_object(Bucket=world.bucket, Key="runs/c/data/train_hashes.txt", Body=b"0" * 64 + b"\n")
    request = processing_request(world, "two-models")
    for name, key, path in (
        ("champion-model", "runs/c/models/c-001/output/model.tar.gz", "champion/model"),
        ("champion-train-hashes", "runs/c/data/train_hashes.txt", "champion/train_hashes"),
    ):
        request["ProcessingInputs"].append({
            "InputName": name,
            "S3Input": {"S3Uri": f"s3://{world.bucket}/{key}", "LocalPath": f"/opt/ml/processing/input/{path}",
                        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"},
        })

    world.sm.create_processing_job(**request)
    described = wait_processing(world, "two-models")

    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert [i["InputName"] for i in described["ProcessingInputs"]] == [
        "code", "data", "champion-model", "champion-train-hashes"]
    root = world.workdir / "processing" / "two-models" / "opt" / "ml" / "processing" / "input"
    assert (root / "champion" / "model" / "model.tar.gz").read_bytes() == b"champion model"
    assert (root / "champion" / "train_hashes" / "train_hashes.txt").read_bytes() == b"0" * 64 + b"\n"
    assert (root / "data" / "test.tsv").is_file()
