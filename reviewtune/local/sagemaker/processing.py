"""A processing job: its container's ``/opt/ml`` becomes ``<workdir>/processing/<job>/opt/ml``.

Every ContainerEntrypoint / ContainerArguments string starting with ``/opt/ml/`` and every input or output
LocalPath is mapped into that private root; a leading ``python``/``python3`` runs with this interpreter.
Inputs are downloaded before the run, outputs (S3UploadMode EndOfJob) uploaded after a successful run.
"""

from __future__ import annotations

import collections
import copy
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from . import cloudwatch_logs, s3_transfer
from .background import BackgroundJob
from .context import ServiceContext, drop_none, now, resolve_python
from .events import PROCESSING_JOB_STATE_CHANGE, times_to_epoch_ms
from .runners import RunSpec
from .statuses import JobStatus
from .training import FAILURE_REASON_LIMIT, LOG_TAIL_LINES, JobSetupError, log_tail_reason

logger = logging.getLogger(__name__)

CONTAINER_ROOT = "/opt/ml/"


class ProcessingJob(BackgroundJob):
    """One processing job; ``start()`` returns at once and the job runs in its own thread."""

    kind = "processing"

    def __init__(self, context: ServiceContext, request: dict[str, Any]) -> None:
        self.context = context
        self.request = copy.deepcopy(request)
        self.name: str = request["ProcessingJobName"]
        self.arn = context.arn("processing-job", self.name)
        self.folder = context.workdir / "processing" / self.name
        self.status = JobStatus.IN_PROGRESS
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.failure_reason: str | None = None
        self.exit_message: str | None = None
        self.stop_reason: str | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    def request_stop(self, reason: str = "StopRequested") -> bool:
        with self._lock:
            if self.status.is_terminal or self.stop_reason is not None:
                return False
            self.stop_reason = reason
            announce = reason == "StopRequested"
            if announce:
                self.status = JobStatus.STOPPING
                self.last_modified_time = now()
        self._stop.set()
        if announce:
            self._publish()
        return True

    # ----------------------------------------------------------------- paths

    def container_path(self, path: str) -> Path:
        """Where the container path ``path`` lives in this job's private root."""
        return self.folder / path.lstrip("/")

    def _map(self, word: str) -> str:
        return str(self.container_path(word)) if word.startswith(CONTAINER_ROOT) else word

    # ----------------------------------------------------------------- run

    def _run(self) -> None:
        timer: threading.Timer | None = None
        try:
            with self._lock:
                self.start_time = now()
                self.last_modified_time = self.start_time
            max_runtime = (self.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
            if max_runtime:
                timer = threading.Timer(max_runtime, self.request_stop, args=("MaxRuntimeExceeded",))
                timer.daemon = True
                timer.start()
            spec = self._prepare()
            exit_code = None
            if not self._stop.is_set():
                with (open(self.folder / "log.txt", "a", encoding="utf-8") as log,
                      cloudwatch_logs.job_stream(self.context.logs, cloudwatch_logs.PROCESSING_GROUP,
                                                 self.name) as cloud):

                    def on_line(line: str) -> None:
                        log.write(line + "\n")
                        log.flush()
                        if cloud is not None:
                            cloud.write(line)
                        self._tail.append(line)

                    exit_code = self.context.runner.run(spec, on_line, self._stop)
            if self.stop_reason is not None:
                reason = None
                if self.stop_reason == "MaxRuntimeExceeded":
                    limit = self.request["StoppingCondition"]["MaxRuntimeInSeconds"]
                    reason = f"MaxRuntimeExceeded: Processing job exceeded MaxRuntimeInSeconds ({limit} s)."
                self._finish(JobStatus.STOPPED, failure_reason=reason)
            elif exit_code == 0:
                self._upload_outputs()
                self._finish(JobStatus.COMPLETED, exit_message=self._message_file())
            else:
                tail = list(self._tail)
                self._finish(
                    JobStatus.FAILED,
                    failure_reason=log_tail_reason("AlgorithmError", tail, exit_code),
                    exit_message=self._message_file(),  # as SageMaker: the container's message file only
                )
        except JobSetupError as error:
            self._finish(JobStatus.FAILED, failure_reason=f"ClientError: {error}"[:FAILURE_REASON_LIMIT])
        except Exception as error:
            logger.exception("processing job %s failed inside the local service", self.name)
            reason = f"InternalServerError: {type(error).__name__}: {error}"[:FAILURE_REASON_LIMIT]
            self._finish(JobStatus.FAILED, failure_reason=reason)
        finally:
            if timer is not None:
                timer.cancel()

    def _prepare(self) -> RunSpec:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        (self.folder / "opt" / "ml").mkdir(parents=True)
        (self.folder / "log.txt").touch()
        for item in self.request.get("ProcessingInputs") or []:
            source = item.get("S3Input")
            if source is None:
                raise JobSetupError(f"input {item['InputName']!r}: only S3Input inputs are supported locally")
            local = self.container_path(
                source.get("LocalPath") or f"/opt/ml/processing/input/{item['InputName']}"
            )
            try:
                s3_transfer.download_prefix(self.context.s3, source["S3Uri"], local)
            except Exception as error:
                raise JobSetupError(f"input {item['InputName']!r} ({source['S3Uri']}): {error}") from error
        for output in self._outputs():
            self.container_path(output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)

        app = self.request["AppSpecification"]
        image = app["ImageUri"]
        entrypoint = app.get("ContainerEntrypoint") or self.context.image_entrypoints.get(image)
        if not entrypoint:
            raise JobSetupError(
                f"no local entry point for processing image {image!r}: set AppSpecification.ContainerEntrypoint "
                "or map the image in image_entrypoints"
            )
        command = [self._map(word) for word in resolve_python(list(entrypoint))]
        command += [self._map(word) for word in app.get("ContainerArguments") or []]
        env = dict(os.environ)
        env.update(self.request.get("Environment") or {})
        return RunSpec(job_name=self.name, command=command, env=env, cwd=self.folder)

    def _outputs(self) -> list[dict[str, Any]]:
        outputs = (self.request.get("ProcessingOutputConfig") or {}).get("Outputs") or []
        return [item for item in outputs if item.get("S3Output")]

    def _upload_outputs(self) -> None:
        for output in self._outputs():
            target = output["S3Output"]
            s3_transfer.upload_folder(
                self.context.s3, self.container_path(target["LocalPath"]), target["S3Uri"]
            )

    def _message_file(self) -> str | None:
        message = self.container_path("/opt/ml/output/message")
        if message.is_file():
            return message.read_text(encoding="utf-8", errors="replace")[:FAILURE_REASON_LIMIT] or None
        return None

    def _finish(
        self, status: JobStatus, *, failure_reason: str | None = None, exit_message: str | None = None
    ) -> None:
        with self._lock:
            self.status = status
            self.failure_reason = failure_reason
            self.exit_message = exit_message
            self.end_time = now()
            self.last_modified_time = self.end_time
        if failure_reason:
            logger.info("processing job %s %s: %s", self.name, status, failure_reason)
        self._publish()

    def _publish(self) -> None:
        if self.stop_reason == "ServiceShutdown":
            return
        detail = times_to_epoch_ms(self.describe())
        detail["Tags"] = self.context.tags.as_dict(self.arn)
        self.context.events.publish(PROCESSING_JOB_STATE_CHANGE, self.arn, detail)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            request = self.request
            return drop_none(
                {
                    "ProcessingInputs": request.get("ProcessingInputs"),
                    "ProcessingOutputConfig": request.get("ProcessingOutputConfig"),
                    "ProcessingJobName": self.name,
                    "ProcessingResources": request.get("ProcessingResources"),
                    "StoppingCondition": request.get("StoppingCondition"),
                    "AppSpecification": request.get("AppSpecification"),
                    "Environment": request.get("Environment"),
                    "NetworkConfig": request.get("NetworkConfig"),
                    "RoleArn": request.get("RoleArn"),
                    "ExperimentConfig": request.get("ExperimentConfig"),
                    "ProcessingJobArn": self.arn,
                    "ProcessingJobStatus": str(self.status),
                    "ExitMessage": self.exit_message,
                    "FailureReason": self.failure_reason,
                    "ProcessingEndTime": self.end_time,
                    "ProcessingStartTime": self.start_time,
                    "LastModifiedTime": self.last_modified_time,
                    "CreationTime": self.creation_time,
                }
            )

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return drop_none(
                {
                    "ProcessingJobName": self.name,
                    "ProcessingJobArn": self.arn,
                    "CreationTime": self.creation_time,
                    "ProcessingEndTime": self.end_time,
                    "LastModifiedTime": self.last_modified_time,
                    "ProcessingJobStatus": str(self.status),
                    "FailureReason": self.failure_reason,
                }
            )
