"""Fault injection for functional tests: AWS clients that fail on purpose, and an in-memory SageMaker.

``FakeSageMaker`` answers the SageMaker calls reviewtune makes with the API's shapes; a test decides when each job
ends and how (``finish_tuning``, ``finish_processing``) and which calls fail (``fail``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
from botocore import xform_name
from botocore.exceptions import ClientError

from reviewtune.core import names, report_decision
from reviewtune.core.warm_start import Hyperparameters, refusal
from reviewtune.local.sagemaker.errors import ValidationError
from reviewtune.local.sagemaker.request_validation import validate_request
from tests.support.aws import ACCOUNT, REGION


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def refused_for_one_run(method: Any, run_id: str, error: ClientError) -> Any:
    """A RunsRepository method (unbound) that raises ``error`` for ``run_id`` and works for every other run."""

    def call(self: Any, called_for: str, *args: Any, **kwargs: Any) -> Any:
        if called_for == run_id:
            raise error
        return method(self, called_for, *args, **kwargs)

    return call


def cancelled(*codes: str) -> ClientError:
    """A TransactWriteItems refused with one cancellation reason per part."""
    error = client_error("TransactionCanceledException", "Transaction cancelled", "TransactWriteItems")
    error.response["CancellationReasons"] = [{"Code": code} for code in codes]
    return error


class TableWithClient:
    """A Table whose low-level client is ``client`` (calls made through ``table.meta.client``: the champion
    transaction, BatchGetItem), its other calls the table's own."""

    def __init__(self, table: Any, client: Any):
        self._table = table
        self.meta = SimpleNamespace(client=client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def failing_once(pipeline: Any, error: ClientError) -> Failing:
    """The runs table's next TransactWriteItems (the champion pointer with a run's SUCCEEDED) fails once with
    ``error``, then they work; ``.calls`` counts them."""
    table = pipeline.clients.runs_table
    failing = Failing(table.meta.client, "transact_write_items", error=error)
    pipeline.use("runs_table", TableWithClient(table, failing))
    return failing


class Failing:
    """Wraps a boto3 client or Table: ``method`` raises ``code`` (or the ready-made ``error``) while ``failures``
    lasts (an int counts calls; ``None`` fails until ``heal()``), on the calls whose keyword arguments ``when``
    accepts (all by default)."""

    def __init__(self, wrapped: Any, method: str, code: str = "", message: str = "", failures: int | None = 1,
                 when: Callable[[dict[str, Any]], bool] | None = None, error: ClientError | None = None):
        self._wrapped = wrapped
        self._method = method
        self._code = code
        self._message = message or f"{code} (injected)"
        self._when = when
        self._error = error
        self.failures = failures
        self.calls = 0
        self.failed = 0

    def heal(self) -> None:
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._wrapped, name)
        if name != self._method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self._when is not None and not self._when(kwargs):
                return attribute(*args, **kwargs)
            if self.failures is None or self.failures > 0:
                if self.failures is not None:
                    self.failures -= 1
                self.failed += 1
                raise self._error or client_error(self._code, self._message, name)
            return attribute(*args, **kwargs)

        return call


class _Paginator:
    def __init__(self, fake: FakeSageMaker):
        self.fake = fake

    def paginate(self, HyperParameterTuningJobName: str, **_: Any) -> list[dict[str, Any]]:  # noqa: N803
        job = self.fake.tuning[HyperParameterTuningJobName]
        summaries = [self.fake.summary(HyperParameterTuningJobName, t) for t in job["trials"]]
        return [{"TrainingJobSummaries": summaries}]


_API_NAMES = {
    xform_name(name): name for name in boto3.client("sagemaker", region_name=REGION).meta.service_model.operation_names
}


class FakeSageMaker:
    """The SageMaker calls of reviewtune, in memory. ``fail[operation]`` lists error codes to raise, in order (None:
    that call goes through)."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        self.tuning: dict[str, dict[str, Any]] = {}
        self.processing: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, list[str | None]] = defaultdict(list)
        self.approval_descriptions: dict[str, str] = {}  # model package ARN -> the latest approval's reason
        self.calls: list[str] = []
        self.groups: dict[str, list[dict[str, Any]]] = {}
        self.group_requests: dict[str, dict[str, Any]] = {}  # group name -> its CreateModelPackageGroup request
        self.versions_made: dict[str, int] = defaultdict(int)  # a group's versions are never numbered again

    def _call(self, operation: str, request: dict[str, Any] | None = None) -> None:
        """Record the call; raise the next injected error, else refuse a request SageMaker would refuse (every
        constraint of its API model, patterns and lengths included, as the local service checks them)."""
        self.calls.append(operation)
        code = self.fail[operation].pop(0) if self.fail[operation] else None
        if isinstance(code, Exception):  # a call that got no answer (botocore's own errors)
            raise code
        if code is not None:  # None in the list: that call goes through
            raise client_error(code, f"{code} for {operation} (injected)", operation)
        if request is not None:
            name = _API_NAMES[operation]
            try:
                validate_request(name, request)
            except ValidationError as exc:
                raise client_error("ValidationException", str(exc), name) from exc

    # -- tuning ---------------------------------------------------------------------------------------------

    def create_hyper_parameter_tuning_job(self, **request: Any) -> dict[str, Any]:
        self._call("create_hyper_parameter_tuning_job", request)
        name = request["HyperParameterTuningJobName"]
        if name in self.tuning:
            raise client_error("ResourceInUse", f"job {name} exists", "CreateHyperParameterTuningJob")
        self._check_warm_start(request)
        self.tuning[name] = {"request": request, "status": "InProgress", "trials": [], "best": None}
        return {"HyperParameterTuningJobArn": self.arn("hyper-parameter-tuning-job", name)}

    def _check_warm_start(self, request: dict[str, Any]) -> None:
        """SageMaker's "Warm Start Tuning Restrictions" on the parents it knows (as the local service applies them)."""
        child = Hyperparameters.of_request(request)
        for parent in (request.get("WarmStartConfig") or {}).get("ParentHyperParameterTuningJobs", []):
            job = self.tuning.get(parent["HyperParameterTuningJobName"])
            if job is None:
                continue  # a parent the test recorded without making its job
            refused = ("the parent has not ended" if job["status"] not in ("Completed", "Stopped", "Failed")
                       else refusal(Hyperparameters.of_request(job["request"]), child))
            if refused:
                raise client_error("ValidationException", refused, "CreateHyperParameterTuningJob")

    def finish_tuning(self, name: str, status: str = "Completed", trials: list[dict[str, Any]] | None = None,
                      best: str | None = None, failure: str | None = None) -> None:
        """End a tuning job. trials: [{"status", "objective", "objective_status", "failure", "no_model", "deleted"}],
        named <job>-00N-abcdef0N ("deleted": a training job a person deleted, which the tuning job still lists)."""
        job = self.tuning[name]
        job["status"] = status
        job["failure"] = failure
        job["ended_at"] = datetime.now(UTC)  # SageMaker's HyperParameterTuningEndTime
        job["trials"] = [
            {"name": f"{name}-{i:03d}-abcdef{i:02d}", **trial} for i, trial in enumerate(trials or [], start=1)
        ]
        job["best"] = best
        s3 = boto3.client("s3", region_name=REGION)
        for trial in job["trials"]:  # what a training job leaves behind (an evaluation may read it later)
            if trial["status"] in ("Completed", "Stopped") and not trial.get("no_model"):
                bucket, key = self.model_uri(name, trial["name"])[5:].split("/", 1)
                s3.put_object(Bucket=bucket, Key=key, Body=b"model of " + trial["name"].encode())

    def model_uri(self, job_name: str, training_job_name: str) -> str:
        return f"s3://{self.bucket}/runs/{job_name}/models/{training_job_name}/output/model.tar.gz"

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"

    def summary(self, job_name: str, trial: dict[str, Any]) -> dict[str, Any]:
        now = datetime(2026, 11, 27, 12, tzinfo=UTC)
        summary = {
            "TrainingJobName": trial["name"],
            "TrainingJobArn": self.arn("training-job", trial["name"]),
            "CreationTime": now,
            "TrainingJobStatus": trial["status"],
            "TunedHyperParameters": {"learning_rate": "3e-05"},
            "ObjectiveStatus": trial.get("objective_status", "Succeeded"),
        }
        if trial.get("failure"):
            summary["FailureReason"] = trial["failure"]
        if trial.get("objective") is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": "validation:accuracy",
                "Value": trial["objective"],
            }
        return summary

    def describe_hyper_parameter_tuning_job(self, HyperParameterTuningJobName: str) -> dict[str, Any]:  # noqa: N803
        self._call("describe_hyper_parameter_tuning_job")
        name = HyperParameterTuningJobName
        if name not in self.tuning:
            raise client_error("ResourceNotFound", f"no tuning job {name}", "DescribeHyperParameterTuningJob")
        job = self.tuning[name]
        description = {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobArn": self.arn("hyper-parameter-tuning-job", name),
            "HyperParameterTuningJobConfig": job["request"]["HyperParameterTuningJobConfig"],
            "TrainingJobDefinition": {  # SageMaker shows a static hyperparameter of its own
                **job["request"]["TrainingJobDefinition"], "StaticHyperParameters": {
                    **job["request"]["TrainingJobDefinition"].get("StaticHyperParameters", {}),
                    "_tuning_objective_metric": job["request"]["HyperParameterTuningJobConfig"][
                        "HyperParameterTuningJobObjective"]["MetricName"]}},
            **({"WarmStartConfig": job["request"]["WarmStartConfig"]} if "WarmStartConfig" in job["request"] else {}),
            "HyperParameterTuningJobStatus": job["status"],
            "CreationTime": datetime(2026, 11, 27, 12, tzinfo=UTC),
            "TrainingJobStatusCounters": {},
            "ObjectiveStatusCounters": {},
        }
        if job.get("failure"):
            description["FailureReason"] = job["failure"]
        if job.get("ended_at"):
            description["HyperParameterTuningEndTime"] = job["ended_at"]
        best = next((t for t in job["trials"] if t["name"] == job["best"]), None)
        if best:
            summary = self.summary(name, best)
            description["BestTrainingJob"] = summary
        return description

    def get_paginator(self, operation: str) -> _Paginator:
        assert operation == "list_training_jobs_for_hyper_parameter_tuning_job", operation
        self.calls.append(operation)
        return _Paginator(self)

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:  # noqa: N803
        self._call("describe_training_job")
        job_name = TrainingJobName.rsplit("-", 2)[0]
        trial = next(t for t in self.tuning[job_name]["trials"] if t["name"] == TrainingJobName)
        if trial.get("deleted"):  # DeleteTrainingJob: its metadata is gone, its model stays in S3
            raise client_error("ValidationException", "Requested resource not found.", "DescribeTrainingJob")
        return {
            "TrainingJobName": TrainingJobName,
            "TrainingJobStatus": trial["status"],
            "HyperParameters": {"learning_rate": "3e-05", "epochs": "3", "sagemaker_program": "train.py"},
            # the location configured for the artifacts, always (a required member of the answer), even for a
            # trial marked "no_model", stopped before it saved one: then no object is there
            "ModelArtifacts": {"S3ModelArtifacts": self.model_uri(job_name, TrainingJobName)},
            "TrainingTimeInSeconds": 600,
            "BillableTimeInSeconds": 600,
            "FinalMetricDataList": [],
        }

    def stop_hyper_parameter_tuning_job(self, HyperParameterTuningJobName: str) -> dict[str, Any]:  # noqa: N803
        self._call("stop_hyper_parameter_tuning_job")
        if HyperParameterTuningJobName not in self.tuning:
            raise client_error("ResourceNotFound", f"no tuning job {HyperParameterTuningJobName}", "StopHyperParameterTuningJob")
        job = self.tuning[HyperParameterTuningJobName]
        if job["status"] != "InProgress":  # as SageMaker, which stops only a job in progress
            raise client_error("ValidationException", f"The job is {job['status']}, not InProgress", "StopHyperParameterTuningJob")
        job["status"] = "Stopping"
        return {}

    # -- processing -----------------------------------------------------------------------------------------

    def create_processing_job(self, **request: Any) -> dict[str, Any]:
        self._call("create_processing_job", request)
        name = request["ProcessingJobName"]
        if name in self.processing:
            raise client_error("ResourceInUse", f"job {name} exists", "CreateProcessingJob")
        self.processing[name] = {"request": request, "status": "InProgress", "started_at": datetime.now(UTC)}
        return {"ProcessingJobArn": self.arn("processing-job", name)}

    def finish_processing(self, name: str, status: str = "Completed", evaluation: Any = None,
                          raw: bytes | None = None, failure: str | None = None) -> None:
        """End the job; with ``evaluation`` (or ``raw``), write what the script writes: evaluation.json, the
        confusion matrix's image and the HTML report (its champion decision's place as the job leaves it)."""
        job = self.processing[name]
        job["status"] = status
        job["failure"] = failure
        job["ended_at"] = datetime.now(UTC)  # SageMaker's ProcessingEndTime
        if raw is None and evaluation is not None:
            raw = json.dumps(evaluation).encode()
        if raw is not None:
            output = job["request"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
            bucket, prefix = output[5:].split("/", 1)
            s3 = boto3.client("s3", region_name=REGION)
            s3.put_object(Bucket=bucket, Key=f"{prefix}/evaluation.json", Body=raw)
            s3.put_object(Bucket=bucket, Key=f"{prefix}/confusion_matrix.png", Body=b"\x89PNG")
            page = f"<html><body><h1>{name}</h1>{report_decision.pending(names.run_id_of_evaluation_job(name))}</body></html>"
            s3.put_object(Bucket=bucket, Key=f"{prefix}/report/index.html", Body=page.encode(),
                          ContentType="binary/octet-stream")

    def describe_processing_job(self, ProcessingJobName: str) -> dict[str, Any]:  # noqa: N803
        self._call("describe_processing_job")
        if ProcessingJobName not in self.processing:
            raise client_error("ValidationException", f"Could not find job {ProcessingJobName}", "DescribeProcessingJob")
        job = self.processing[ProcessingJobName]
        description = {
            "ProcessingJobName": ProcessingJobName,
            "ProcessingJobStatus": job["status"],
            "ProcessingOutputConfig": job["request"]["ProcessingOutputConfig"],
            "ProcessingResources": job["request"]["ProcessingResources"],
            "ProcessingStartTime": job["started_at"],
        }
        if job.get("failure"):
            description["FailureReason"] = job["failure"]
        if job.get("ended_at"):
            description["ProcessingEndTime"] = job["ended_at"]
        return description

    def stop_processing_job(self, ProcessingJobName: str) -> dict[str, Any]:  # noqa: N803
        self._call("stop_processing_job")
        job = self.processing.get(ProcessingJobName)
        if job is None or job["status"] != "InProgress":
            raise client_error("ValidationException", f"Job {ProcessingJobName} is not in progress", "StopProcessingJob")
        job["status"] = "Stopping"
        return {}

    # -- model registry -------------------------------------------------------------------------------------

    def create_model_package_group(self, ModelPackageGroupName: str, **rest: Any) -> dict[str, Any]:  # noqa: N803
        self._call("create_model_package_group", {"ModelPackageGroupName": ModelPackageGroupName, **rest})
        arn = self.arn("model-package-group", ModelPackageGroupName.lower())
        if any(name.lower() == ModelPackageGroupName.lower() for name in self.groups):  # names ignore case
            raise client_error("ValidationException", f"Model Package Group already exists: {arn}", "CreateModelPackageGroup")
        self.groups[ModelPackageGroupName] = []
        self.group_requests[ModelPackageGroupName] = {"ModelPackageGroupName": ModelPackageGroupName, **rest}
        return {"ModelPackageGroupArn": arn}

    def _group(self, name: str, operation: str) -> list[dict[str, Any]]:
        if name not in self.groups:
            raise client_error("ValidationException",
                               f"ModelPackageGroup {self.arn('model-package-group', name.lower())} does not exist.",
                               operation)
        return self.groups[name]

    def describe_model_package_group(self, ModelPackageGroupName: str) -> dict[str, Any]:  # noqa: N803
        self._call("describe_model_package_group")
        self._group(ModelPackageGroupName, "DescribeModelPackageGroup")
        return {"ModelPackageGroupName": ModelPackageGroupName,
                "ModelPackageGroupArn": self.arn("model-package-group", ModelPackageGroupName.lower())}

    def create_model_package(self, **request: Any) -> dict[str, Any]:
        self._call("create_model_package", request)
        versions = self._group(request["ModelPackageGroupName"], "CreateModelPackage")
        for package in versions:
            if package["ClientToken"] == request["ClientToken"]:
                return {"ModelPackageArn": package["ModelPackageArn"]}
        self.versions_made[request["ModelPackageGroupName"]] += 1
        version = self.versions_made[request["ModelPackageGroupName"]]
        arn = self.arn("model-package", f"{request['ModelPackageGroupName'].lower()}/{version}")
        versions.append({**request, "ModelPackageArn": arn})
        return {"ModelPackageArn": arn}

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        self._call("describe_model_package", {"ModelPackageName": ModelPackageName})
        package = next((p for p in self.packages() if p["ModelPackageArn"] == ModelPackageName), None)
        if package is None:  # SageMaker's words for a package deleted (or never made)
            raise client_error("ValidationException", f"ModelPackage {ModelPackageName} does not exist.",
                               "DescribeModelPackage")
        described = {**package, "ModelApprovalStatus": package.get("ModelApprovalStatus", "PendingManualApproval")}
        if ModelPackageName in self.approval_descriptions:
            described["ApprovalDescription"] = self.approval_descriptions[ModelPackageName]
        return described

    def update_model_package(self, ModelPackageArn: str, ModelApprovalStatus: str, **rest: Any) -> dict[str, Any]:  # noqa: N803
        self._call("update_model_package", {"ModelPackageArn": ModelPackageArn, "ModelApprovalStatus": ModelApprovalStatus,
                                            **rest})
        package = next((p for p in self.packages() if p["ModelPackageArn"] == ModelPackageArn), None)
        if package is None:  # SageMaker's words for a package deleted (or never made)
            raise client_error("ValidationException", f"ModelPackage {ModelPackageArn} does not exist.", "UpdateModelPackage")
        package["ModelApprovalStatus"] = ModelApprovalStatus
        if "ApprovalDescription" in rest:
            self.approval_descriptions[ModelPackageArn] = rest["ApprovalDescription"]
        return {"ModelPackageArn": ModelPackageArn}

    def delete_model_package(self, ModelPackageName: str) -> None:  # noqa: N803
        self._call("delete_model_package")
        for versions in self.groups.values():
            versions[:] = [p for p in versions if p["ModelPackageArn"] != ModelPackageName]

    def packages(self) -> list[dict[str, Any]]:
        return [p for versions in self.groups.values() for p in versions]
