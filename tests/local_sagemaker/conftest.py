"""Fixtures: a moto server for S3/EventBridge/SQS, the local SageMaker service, synthetic training code."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from reviewtune.local.sagemaker import JobRunner, LocalSageMaker, SubprocessRunner

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/reviewtune-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3-cpu-py311"
METRIC_DEFINITIONS = [
    {"Name": "validation:loss", "Regex": "val_loss: ([0-9.]+)"},
    {"Name": "validation:accuracy", "Regex": "val_acc: ([0-9.]+)"},
]

# A training script with the train.py contract: one metric line per epoch, whose accuracy is a known
# function of the hyperparameters, so a test can tell which trial must be best.
TRAIN_SCRIPT = r"""
import argparse, json, os, sys, time

def categorical_int(value):
    return int(json.loads(value)) if value.startswith('"') else int(value)

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=0.01)
parser.add_argument("--train_batch_size", type=categorical_int, default=64)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.02)
parser.add_argument("--fail", default="no")
parser.add_argument("--bad_trial", type=int, default=0)
args, _ = parser.parse_known_args()

job_name = json.loads(os.environ["SM_TRAINING_ENV"])["job_name"]
try:
    trial_number = int(job_name.rsplit("-", 2)[1])
except (IndexError, ValueError):
    trial_number = 0
print(f"pid={os.getpid()}", flush=True)
base = 50.0 + 1000.0 * args.learning_rate + args.train_batch_size / 64.0
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    accuracy = base + epoch
    if trial_number and trial_number == args.bad_trial:
        accuracy = 10.0
    print(f"epoch {epoch} train_loss: {1.0 / epoch:.4f}")
    print(f"val_loss: {100.0 / accuracy:.4f} - val_acc: {accuracy:.4f}")
if args.fail == "yes":
    print("Traceback (most recent call last):", file=sys.stderr)
    raise SystemExit("RuntimeError: synthetic failure after training")
model_dir = os.environ["SM_MODEL_DIR"]
env = {k: v for k, v in os.environ.items() if k.startswith(("SM_", "OMP_", "MKL_", "REVIEWTUNE_"))}
with open(os.path.join(model_dir, "model.json"), "w") as f:
    json.dump({"args": sys.argv[1:], "env": env, "cwd": os.getcwd(),
               "train_files": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))}, f)
"""

EVALUATE_SCRIPT = r"""
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--input-data")
parser.add_argument("--output-data")
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
rows = open(os.path.join(args.input_data, "test.tsv")).read().splitlines()
if args.fail:
    raise SystemExit("ValueError: no model found in the input folder")
os.makedirs(args.output_data, exist_ok=True)
with open(os.path.join(args.output_data, "evaluation.json"), "w") as f:
    json.dump({"metrics": {"accuracy": {"value": 0.75}}, "test_rows": len(rows) - 1,
               "label": os.environ.get("REVIEWTUNE_LABEL")}, f)
"""


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_ENDPOINT_URL") or name == "AWS_PROFILE":
                patch.delenv(name)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        }.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto_url(aws_environment) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws(moto_url) -> dict[str, Any]:
    return {
        name: boto3.client(name, endpoint_url=moto_url, region_name=REGION)
        for name in ("s3", "events", "sqs")
    }


@dataclass
class World:
    """One test's bucket with training data and code, and the local service with a client on it."""

    bucket: str
    service: LocalSageMaker
    sm: Any
    s3: Any
    workdir: Path
    code_uri: str
    data_uri: str

    def tuning_request(
        self,
        name: str,
        *,
        strategy: str = "Random",
        ranges: dict[str, Any] | None = None,
        static: dict[str, str] | None = None,
        max_jobs: int = 4,
        max_parallel: int = 2,
        early_stopping: str = "Off",
        **config: Any,
    ) -> dict[str, Any]:
        ranges = ranges or {
            "ContinuousParameterRanges": [
                {
                    "Name": "learning_rate",
                    "MinValue": "0.001",
                    "MaxValue": "0.02",
                    "ScalingType": "Logarithmic",
                }
            ],
            "CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ['"64"', '"128"']}],
        }
        return {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": {
                "Strategy": strategy,
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:accuracy"},
                "ResourceLimits": {
                    "MaxNumberOfTrainingJobs": max_jobs,
                    "MaxParallelTrainingJobs": max_parallel,
                },
                "ParameterRanges": ranges,
                "TrainingJobEarlyStoppingType": early_stopping,
                "RandomSeed": 7,
                **config,
            },
            "TrainingJobDefinition": {
                "StaticHyperParameters": {
                    "sagemaker_program": '"train.py"',
                    "sagemaker_submit_directory": json.dumps(self.code_uri),
                    "epochs": "3",
                    **(static or {}),
                },
                "AlgorithmSpecification": {
                    "TrainingImage": IMAGE,
                    "TrainingInputMode": "File",
                    "MetricDefinitions": METRIC_DEFINITIONS,
                },
                "RoleArn": ROLE_ARN,
                "InputDataConfig": [
                    {
                        "ChannelName": channel,
                        "DataSource": {
                            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{self.data_uri}/{channel}"}
                        },
                    }
                    for channel in ("train", "validation")
                ],
                "OutputDataConfig": {"S3OutputPath": f"s3://{self.bucket}/runs/{name}/models"},
                "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds": 600},
            },
        }

    def wait_tuning(self, name: str, timeout: float = 40.0) -> dict[str, Any]:
        return wait_for(
            lambda: self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
            lambda d: d["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"),
            timeout,
        )

    def trials(self, name: str) -> list[dict[str, Any]]:
        return self.sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=100
        )["TrainingJobSummaries"]

    def model_json(self, training_job: str) -> dict[str, Any]:
        """The model.json a synthetic trial wrote, read back from its uploaded model.tar.gz."""
        uri = self.sm.describe_training_job(TrainingJobName=training_job)["ModelArtifacts"][
            "S3ModelArtifacts"
        ]
        bucket, key = uri[len("s3://") :].split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            return json.load(tar.extractfile("model.json"))


def wait_for(
    fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting; last value: {value}")
        time.sleep(interval)
        value = fetch()
    return value


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def make_world(aws, moto_url, tmp_path) -> Iterator[Callable[..., World]]:
    """Builds a World; ``runner`` swaps the job runner (a ScriptedRunner for the logic-only tests)."""
    services: list[LocalSageMaker] = []

    def build(runner: JobRunner | None = None, total_cpus: int = 4, **kwargs: Any) -> World:
        s3 = aws["s3"]
        bucket = f"rt-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        code_key = "code/abc/sourcedir.tar.gz"
        s3.put_object(Bucket=bucket, Key=code_key, Body=tar_gz({"train.py": TRAIN_SCRIPT}))
        header = "sentiment\treview_body\n"
        for split in ("train", "validation", "test"):
            s3.put_object(
                Bucket=bucket, Key=f"runs/r/data/{split}/{split}.tsv", Body=header + "1\tgreat dress\n"
            )
        workdir = tmp_path / f"sagemaker-{len(services)}"
        service = LocalSageMaker(
            workdir=workdir,
            region=REGION,
            s3_client=s3,
            events_client=aws["events"],
            runner=runner or SubprocessRunner(stop_grace_seconds=2.0),
            total_cpus=total_cpus,
            **kwargs,
        )
        url = service.start()
        services.append(service)
        sm = boto3.client(
            "sagemaker", endpoint_url=url, region_name=REGION, config=Config(retries={"max_attempts": 1})
        )
        return World(
            bucket=bucket,
            service=service,
            sm=sm,
            s3=s3,
            workdir=workdir,
            code_uri=f"s3://{bucket}/{code_key}",
            data_uri=f"s3://{bucket}/runs/r/data",
        )

    yield build
    for service in services:
        service.stop()


@pytest.fixture
def world(make_world) -> World:
    return make_world()
