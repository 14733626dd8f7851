"""LocalSageMaker: the SageMaker API subset reviewtune uses, running its jobs on this machine.

Operations: CreateHyperParameterTuningJob, DescribeHyperParameterTuningJob, StopHyperParameterTuningJob,
ListHyperParameterTuningJobs, ListTrainingJobsForHyperParameterTuningJob, CreateTrainingJob,
DescribeTrainingJob, StopTrainingJob, ListTrainingJobs, CreateProcessingJob, DescribeProcessingJob,
StopProcessingJob, CreateModelPackageGroup, DescribeModelPackageGroup, ListModelPackageGroups,
CreateModelPackage, DescribeModelPackage, ListModelPackages, UpdateModelPackage, DeleteModelPackage, AddTags,
ListTags.
Requests are checked against botocore's service model, errors use SageMaker's codes, and every status change
is published to EventBridge.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import cloudwatch_logs
from .context import ServiceContext, TagStore
from .errors import (
    ResourceInUse,
    ResourceNotFound,
    SageMakerError,
    SerializationError,
    UnknownOperation,
    ValidationError,
)
from .events import EventPublisher
from .listing import filter_name_and_status, filter_times, paginate, sort
from .model_registry import ModelRegistry
from .processing import ProcessingJob
from .request_validation import validate_request
from .runners import JobRunner, SubprocessRunner
from .server import JsonRpcServer
from .statuses import JobStatus
from .training import STOP_SHUTDOWN, TrainingJob
from .tuning import TuningJob
from .tuning_config import check_metric_definitions, check_spot, parse_tuning_request
from .warm_start import resolve_warm_start

logger = logging.getLogger(__name__)

TARGET_PREFIX = "SageMaker."
SHUTDOWN_JOIN_SECONDS = 30.0

J = TypeVar("J")


class _Registry(Generic[J]):
    """Jobs of one kind by name; names are unique case-insensitively. Its lock guards only the dict."""

    def __init__(
        self, missing: Callable[[str], SageMakerError], taken: Callable[[J], SageMakerError]
    ) -> None:
        self._jobs: dict[str, J] = {}
        self._missing = missing
        self._taken = taken
        self._lock = threading.Lock()

    def add(self, name: str, job: J) -> None:
        with self._lock:
            existing = self._jobs.get(name.lower())
            if existing is not None:
                raise self._taken(existing)
            self._jobs[name.lower()] = job

    def get(self, name: str) -> J:
        with self._lock:
            job = self._jobs.get(name.lower())
        if job is None:
            raise self._missing(name)
        return job

    def all(self) -> list[J]:
        with self._lock:
            return list(self._jobs.values())


def default_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's, not os.cpu_count()): the trials share them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalSageMaker:
    """A SageMaker-compatible HTTP service whose jobs really run, as subprocesses, on this machine."""

    def __init__(
        self,
        *,
        workdir: Path,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        s3_client=None,
        events_client=None,
        runner: JobRunner | None = None,
        total_cpus: int | None = None,
        image_entrypoints: dict[str, list[str]] | None = None,
        logs_client: Any = None,
    ) -> None:
        if s3_client is None or events_client is None:
            import boto3  # the clients honour AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_EVENTBRIDGE

            s3_client = s3_client or boto3.client("s3", region_name=region)
            events_client = events_client or boto3.client("events", region_name=region)
        workdir = Path(workdir).resolve()  # jobs run with their code folder as cwd: paths must be absolute
        workdir.mkdir(parents=True, exist_ok=True)
        self.context = ServiceContext(
            workdir=workdir,
            region=region,
            account_id=account_id,
            s3=s3_client,
            events=EventPublisher(events_client),
            runner=runner or SubprocessRunner(),
            total_cpus=total_cpus or default_cpus(),
            image_entrypoints=dict(image_entrypoints or {}),
            tags=TagStore(),
            logs=logs_client if logs_client is not None else cloudwatch_logs.client_from_environment(region),
        )
        self._tuning_jobs: _Registry[TuningJob] = _Registry(
            lambda name: ResourceNotFound(
                f"Amazon SageMaker can't find a tuning job called {name}. Type another name."
            ),
            lambda job: ResourceInUse(
                f"A hyperparameter tuning job with the name, {job.name}, already exists. Choose a different name."
            ),
        )
        self._training_jobs: _Registry[TrainingJob] = _Registry(
            lambda name: ValidationError("Requested resource not found."),
            lambda job: ResourceInUse(
                "Training job names must be unique within an AWS account and region, and a training job with "
                f"this name already exists ({job.arn})"
            ),
        )
        self._processing_jobs: _Registry[ProcessingJob] = _Registry(
            lambda name: ValidationError(f"Could not find requested job with name {name}"),
            lambda job: ResourceInUse(
                "Job name must be unique within an AWS account and region, and a job with this name already "
                f"exists ({job.arn})"
            ),
        )
        self.registry = ModelRegistry(self.context)
        self._server: JsonRpcServer | None = None
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateHyperParameterTuningJob": self._create_tuning_job,
            "DescribeHyperParameterTuningJob": self._describe_tuning_job,
            "StopHyperParameterTuningJob": self._stop_tuning_job,
            "ListHyperParameterTuningJobs": self._list_tuning_jobs,
            "ListTrainingJobsForHyperParameterTuningJob": self._list_training_jobs_for_tuning_job,
            "CreateTrainingJob": self._create_training_job,
            "DescribeTrainingJob": self._describe_training_job,
            "StopTrainingJob": self._stop_training_job,
            "ListTrainingJobs": self._list_training_jobs,
            "CreateProcessingJob": self._create_processing_job,
            "DescribeProcessingJob": self._describe_processing_job,
            "StopProcessingJob": self._stop_processing_job,
            "CreateModelPackageGroup": self.registry.create_group,
            "DescribeModelPackageGroup": self.registry.describe_group,
            "ListModelPackageGroups": self.registry.list_groups,
            "CreateModelPackage": self.registry.create_package,
            "DescribeModelPackage": self.registry.describe_package,
            "ListModelPackages": self.registry.list_packages,
            "UpdateModelPackage": self.registry.update_package,
            "DeleteModelPackage": self.registry.delete_package,
            "AddTags": self._add_tags,
            "ListTags": self._list_tags,
        }

    # ----------------------------------------------------------------- serving

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the endpoint URL."""
        if self._server is not None:
            raise RuntimeError(f"the local SageMaker service already runs at {self.url}")
        self._server = JsonRpcServer(host, port, self._dispatch)
        url = self._server.start()
        logger.info("local SageMaker service at %s (workdir %s)", url, self.context.workdir)
        return url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local SageMaker service is not started")
        return self._server.url

    def stop(self) -> None:
        """Stop the jobs still running (their processes are terminated), then the HTTP server."""
        self.context.shutting_down.set()
        self.context.events.close()
        for tuning in self._tuning_jobs.all():
            tuning.shutdown()
        jobs: list[TrainingJob | ProcessingJob] = [*self._training_jobs.all(), *self._processing_jobs.all()]
        for job in jobs:
            job.request_stop(STOP_SHUTDOWN)
        for job in [*jobs, *self._tuning_jobs.all()]:
            job.join(SHUTDOWN_JOIN_SECONDS)
        if self._server is not None:
            self._server.stop()
            self._server = None

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one API operation in-process (what an HTTP request does); raises SageMakerError."""
        handler = self._operations.get(operation)
        if handler is None:
            raise UnknownOperation(f"Operation {operation} is not supported by the local SageMaker service.")
        validate_request(operation, params)
        return handler(params)

    def _dispatch(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target
        try:
            try:
                params = json.loads(body or b"{}")
            except json.JSONDecodeError as error:
                raise SerializationError(f"The request body is not valid JSON: {error}") from None
            if not isinstance(params, dict):
                raise SerializationError("The request body must be a JSON object.")
            return 200, self.call(operation, params)
        except SageMakerError as error:
            return error.status, {"__type": error.code, "message": error.message}
        except Exception as error:
            logger.exception("%s failed", operation)
            return 500, {"__type": "InternalFailure", "message": f"{type(error).__name__}: {error}"}

    # ----------------------------------------------------------------- tuning jobs

    def _create_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        settings = parse_tuning_request(params)
        warm_start = resolve_warm_start(params, settings, self._tuning_jobs.get)
        job = TuningJob(self.context, params, settings, self._register_tuning_child, warm_start)
        self._tuning_jobs.add(job.name, job)
        self.context.tags.register(job.arn, params.get("Tags"))
        job.start()
        return {"HyperParameterTuningJobArn": job.arn}

    def _register_tuning_child(self, job: TrainingJob) -> None:
        self._training_jobs.add(job.name, job)
        self.context.tags.register(job.arn)

    def _describe_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._tuning_jobs.get(params["HyperParameterTuningJobName"]).describe()

    def _stop_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self._tuning_jobs.get(params["HyperParameterTuningJobName"]).stop()
        return {}

    def _list_tuning_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        items = [job.summary() for job in self._tuning_jobs.all()]
        items = filter_name_and_status(
            items, params, "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"
        )
        items = filter_times(items, params)
        keys = {
            "Name": "HyperParameterTuningJobName",
            "Status": "HyperParameterTuningJobStatus",
            "CreationTime": "CreationTime",
        }
        return paginate(sort(items, params, keys, "Name"), params, "HyperParameterTuningJobSummaries")

    def _list_training_jobs_for_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        items = self._tuning_jobs.get(params["HyperParameterTuningJobName"]).trial_summaries()
        if params.get("StatusEquals"):
            items = [item for item in items if item["TrainingJobStatus"] == params["StatusEquals"]]
        for item in items:
            metric = item.get("FinalHyperParameterTuningJobObjectiveMetric")
            item["_objective"] = metric["Value"] if metric else None
        keys = {
            "Name": "TrainingJobName",
            "CreationTime": "CreationTime",
            "Status": "TrainingJobStatus",
            "FinalObjectiveMetricValue": "_objective",
        }
        ordered = sort(items, params, keys, "Name")
        for item in items:
            item.pop("_objective")
        return paginate(ordered, params, "TrainingJobSummaries")

    # ----------------------------------------------------------------- training jobs

    def _create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        check_metric_definitions(
            params["AlgorithmSpecification"].get("MetricDefinitions") or [],
            "AlgorithmSpecification.MetricDefinitions",
        )
        check_spot(params)
        job = TrainingJob(self.context, params, num_cpus=self.context.total_cpus)
        self._training_jobs.add(job.name, job)
        self.context.tags.register(job.arn, params.get("Tags"))
        job.start()
        return {"TrainingJobArn": job.arn}

    def _describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._training_jobs.get(params["TrainingJobName"]).describe()

    def _stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._training_jobs.get(params["TrainingJobName"])
        if not job.request_stop():
            raise ValidationError(
                f"The training job {job.name} is {job.status}; only an InProgress job can be stopped."
            )
        return {}

    def _list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        items = [job.summary() for job in self._training_jobs.all()]
        items = filter_times(
            filter_name_and_status(items, params, "TrainingJobName", "TrainingJobStatus"), params
        )
        keys = {"Name": "TrainingJobName", "CreationTime": "CreationTime", "Status": "TrainingJobStatus"}
        return paginate(sort(items, params, keys, "CreationTime"), params, "TrainingJobSummaries")

    # ----------------------------------------------------------------- processing jobs

    def _create_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_processing_paths(params)
        job = ProcessingJob(self.context, params)
        self._processing_jobs.add(job.name, job)
        self.context.tags.register(job.arn, params.get("Tags"))
        job.start()
        return {"ProcessingJobArn": job.arn}

    def _describe_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._processing_jobs.get(params["ProcessingJobName"]).describe()

    def _stop_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._processing_jobs.get(params["ProcessingJobName"])
        if job.status != JobStatus.IN_PROGRESS or not job.request_stop():
            raise ValidationError(
                f"The processing job {job.name} is {job.status}; only an InProgress job can be stopped."
            )
        return {}

    # ----------------------------------------------------------------- tags

    def _add_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceArn"]
        if not self.context.tags.known(arn):
            raise ResourceNotFound(f"Resource {arn} not found.")
        self.context.tags.add(arn, params["Tags"])
        return {"Tags": params["Tags"]}

    def _list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceArn"]
        if not self.context.tags.known(arn):
            raise ResourceNotFound(f"Resource {arn} not found.")
        return paginate(self.context.tags.as_list(arn), params, "Tags")


PROCESSING_ROOT = "/opt/ml/processing/"


def _check_processing_paths(params: dict[str, Any]) -> None:
    """Input and output names and local paths must be unique and live under /opt/ml/processing/."""
    for kind, items, s3_key in (
        ("ProcessingInputs", params.get("ProcessingInputs") or [], "S3Input"),
        (
            "ProcessingOutputConfig.Outputs",
            (params.get("ProcessingOutputConfig") or {}).get("Outputs") or [],
            "S3Output",
        ),
    ):
        names: set[str] = set()
        paths: set[str] = set()
        for item in items:
            name = item.get("InputName") or item.get("OutputName")
            if name in names:
                raise ValidationError(
                    f"{kind}: the name {name!r} is used more than once; names must be unique."
                )
            names.add(name)
            local = (item.get(s3_key) or {}).get("LocalPath")
            if local is None:
                continue
            if not local.startswith(PROCESSING_ROOT):
                raise ValidationError(
                    f"{kind}: LocalPath {local!r} of {name!r} must start with {PROCESSING_ROOT}."
                )
            if local.rstrip("/") in paths:
                raise ValidationError(
                    f"{kind}: LocalPath {local!r} is used more than once; local paths must be unique."
                )
            paths.add(local.rstrip("/"))
