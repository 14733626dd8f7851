"""A training job: a job folder, the framework container's environment, one run, its metrics and model.

Job folder ``<workdir>/training/<job>/``: ``input/data/<channel>/`` (each channel's S3 prefix),
``input/config/*.json``, ``code/`` (the ``sagemaker_submit_directory`` archive), ``model/``, ``output/data/``
and ``log.txt`` (stdout and stderr, line by line). The command is ``python <sagemaker_program> --name value ...``
run in ``code/``, or the image's entry point from ``image_entrypoints``; the image itself is only recorded.
On exit 0 ``model/`` is packed to ``<S3OutputPath>/<job>/output/model.tar.gz``.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cloudwatch_logs, s3_transfer
from .background import BackgroundJob
from .context import ServiceContext, drop_none, now, resolve_python
from .events import TRAINING_JOB_STATE_CHANGE, times_to_epoch_ms
from .metrics import MetricParser, MetricPoint
from .runners import RunSpec
from .statuses import JobStatus, SecondaryStatus

if TYPE_CHECKING:
    from io import TextIOWrapper

logger = logging.getLogger(__name__)

HOST = "algo-1"
FAILURE_REASON_LIMIT = 1024
LOG_TAIL_LINES = 5
# train.py prints the objective again after its last epoch, with this prefix, when it restored an earlier epoch's
# weights (--keep_epoch best): the tuner's objective becomes that value, but no epoch ran.
KEPT_EPOCH_PREFIX = "kept_epoch:"

STOP_REQUESTED = "StopRequested"
STOP_EARLY = "EarlyStopping"
STOP_MAX_RUNTIME = "MaxRuntimeExceeded"
STOP_SHUTDOWN = "ServiceShutdown"

_STOP_MESSAGES = {
    STOP_REQUESTED: "Stopping the training job on request.",
    STOP_EARLY: "Training job stopped early by the hyperparameter tuning job.",
    STOP_MAX_RUNTIME: "Job stopped because it exceeded the maximum allowed runtime.",
    STOP_SHUTDOWN: "Stopped because the local SageMaker service shut down.",
}


class JobSetupError(Exception):
    """The job could not be prepared (input download, source code); it fails with a ClientError reason."""


def unquote(value: str) -> str:
    """The SDK v2 JSON-quotes hyperparameter values (``"train.py"``); return the plain string."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def log_tail_reason(kind: str, tail: list[str], exit_code: int) -> str:
    """``AlgorithmError: <last log lines>, exit code: N`` within SageMaker's 1024-character limit; a process ended by
    a signal says which (SIGKILL from outside the job: most often the kernel's out-of-memory killer)."""
    suffix = f", exit code: {exit_code}"
    if exit_code < 0:
        name = _signal_name(-exit_code)
        suffix += f" (killed by {name}" + (": out of memory?" if name == "SIGKILL" else "") + ")"
    head = f"{kind}: "
    text = "\n".join(line for line in tail if line.strip()) or "(no output)"
    room = FAILURE_REASON_LIMIT - len(head) - len(suffix)
    if len(text) > room:
        text = "..." + text[-(room - 3) :]
    return head + text + suffix


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


EpochListener = Callable[["TrainingJob", int, float], None]
FinishListener = Callable[["TrainingJob"], None]


class TrainingJob(BackgroundJob):
    """One training job; ``start()`` returns at once and the job runs in its own thread."""

    kind = "training"

    def __init__(
        self,
        context: ServiceContext,
        request: dict[str, Any],
        *,
        num_cpus: int,
        tuning_job_arn: str | None = None,
        objective_metric: str | None = None,
        on_epoch: EpochListener | None = None,
        on_finish: FinishListener | None = None,
    ) -> None:
        self.context = context
        self.request = copy.deepcopy(request)
        self.name: str = request["TrainingJobName"]
        self.arn = context.arn("training-job", self.name)
        self.tuning_job_arn = tuning_job_arn
        self.num_cpus = max(1, num_cpus)
        self.objective_metric = objective_metric
        self.on_epoch = on_epoch
        self.on_finish = on_finish
        self.folder = context.workdir / "training" / self.name
        self.metric_parser = MetricParser(request["AlgorithmSpecification"].get("MetricDefinitions", []))

        self.status = JobStatus.IN_PROGRESS
        self.secondary_status = SecondaryStatus.STARTING
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.training_start_time: float | None = None
        self.training_end_time: float | None = None
        self.failure_reason: str | None = None
        self.transitions: list[dict[str, Any]] = []
        self.metrics: list[MetricPoint] = []
        self.epochs = 0
        self.stop_reason: str | None = None

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._log: TextIOWrapper | None = None
        self._cloud_log: cloudwatch_logs.JobLogStream | None = None
        self._add_transition(SecondaryStatus.STARTING, "Preparing the instances for training")

    # ----------------------------------------------------------------- lifecycle

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    def request_stop(self, reason: str = STOP_REQUESTED) -> bool:
        """Ask the job to stop; returns False when it already ended or is already stopping."""
        with self._lock:
            if self.status.is_terminal or self.stop_reason is not None:
                return False
            self.stop_reason = reason
            announce = reason not in (STOP_MAX_RUNTIME, STOP_SHUTDOWN)
            if announce:
                self.status = JobStatus.STOPPING
                self._add_transition(SecondaryStatus.STOPPING, _STOP_MESSAGES[reason])
        self._stop.set()
        if announce:
            self._publish()
        return True

    def _run(self) -> None:
        timer: threading.Timer | None = None
        try:
            self._prepare_folder()
            self._advance(SecondaryStatus.DOWNLOADING, "Downloading input data", start_training_clock=True)
            max_runtime = self.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
            if max_runtime:
                timer = threading.Timer(max_runtime, self.request_stop, args=(STOP_MAX_RUNTIME,))
                timer.daemon = True
                timer.start()
            spec = self._prepare_run()
            if self._stop.is_set():
                self._finish_stopped()
                return
            self._advance(
                SecondaryStatus.TRAINING, "Training image download completed. Training in progress."
            )
            with (open(self.folder / "log.txt", "a", encoding="utf-8") as log,
                  cloudwatch_logs.job_stream(self.context.logs, cloudwatch_logs.TRAINING_GROUP, self.name) as cloud):
                self._log, self._cloud_log = log, cloud
                exit_code = self.context.runner.run(spec, self._on_line, self._stop)
                self._log = self._cloud_log = None
            if timer is not None:
                timer.cancel()
            if self.stop_reason is not None:
                self._finish_stopped()
            elif exit_code == 0:
                self._advance(SecondaryStatus.UPLOADING, "Uploading generated training model")
                self._upload_model()
                self._finish(JobStatus.COMPLETED, SecondaryStatus.COMPLETED, "Training job completed")
            else:
                reason = log_tail_reason("AlgorithmError", list(self._tail), exit_code)
                self._finish(JobStatus.FAILED, SecondaryStatus.FAILED, "Training job failed", reason)
        except JobSetupError as error:
            self._finish(
                JobStatus.FAILED, SecondaryStatus.FAILED, "Training job failed", f"ClientError: {error}"
            )
        except Exception as error:
            logger.exception("training job %s failed inside the local service", self.name)
            reason = f"InternalServerError: {type(error).__name__}: {error}"[:FAILURE_REASON_LIMIT]
            self._finish(JobStatus.FAILED, SecondaryStatus.FAILED, "Training job failed", reason)
        finally:
            if timer is not None:
                timer.cancel()
            if self.on_finish is not None:
                try:
                    self.on_finish(self)
                except Exception:
                    logger.exception("finish listener of training job %s failed", self.name)

    # ----------------------------------------------------------------- preparation

    @property
    def hyperparameters(self) -> dict[str, str]:
        return dict(self.request.get("HyperParameters") or {})

    @property
    def user_hyperparameters(self) -> dict[str, str]:
        return {k: v for k, v in self.hyperparameters.items() if not k.startswith("sagemaker_")}

    def _prepare_folder(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        for sub in ("input/data", "input/config", "model", "output/data", "code"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "log.txt").touch()

    def _prepare_run(self) -> RunSpec:
        s3 = self.context.s3
        channels: dict[str, Path] = {}
        for channel in self.request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = channel.get("DataSource", {}).get("S3DataSource")
            if source is None:
                raise JobSetupError(f"channel {name!r}: only S3DataSource inputs are supported locally")
            target = self.folder / "input" / "data" / name
            try:
                s3_transfer.download_prefix(s3, source["S3Uri"], target)
            except Exception as error:
                raise JobSetupError(
                    f"Data download failed for channel {name!r} ({source['S3Uri']}): {error}"
                ) from error
            channels[name] = target

        hyperparameters = self.hyperparameters
        code_dir = self.folder / "code"
        submit_dir = unquote(hyperparameters.get("sagemaker_submit_directory", ""))
        if submit_dir:
            try:
                s3_transfer.download_and_extract(s3, submit_dir, code_dir)
            except Exception as error:
                raise JobSetupError(
                    f"could not download sagemaker_submit_directory {submit_dir}: {error}"
                ) from error

        args: list[str] = []
        for key, value in self.user_hyperparameters.items():
            args += [f"--{key}", value]
        program = unquote(hyperparameters.get("sagemaker_program", ""))
        image = self.request["AlgorithmSpecification"].get("TrainingImage", "")
        if program:
            if not (code_dir / program).is_file():
                raise JobSetupError(
                    f"sagemaker_program {program!r} is not in the source directory {submit_dir!r}"
                )
            command = [sys.executable, program, *args]
        elif image in self.context.image_entrypoints:
            command = [*resolve_python(self.context.image_entrypoints[image]), *args]
        else:
            raise JobSetupError(
                f"no local entry point for training image {image!r}: set the sagemaker_program and "
                "sagemaker_submit_directory hyperparameters or map the image in image_entrypoints"
            )
        self._write_config_files(channels)
        return RunSpec(
            job_name=self.name,
            command=command,
            env=self._environment(channels, program, submit_dir),
            cwd=code_dir,
            hyperparameters=hyperparameters,
        )

    def _write_config_files(self, channels: dict[str, Path]) -> None:
        config = self.folder / "input" / "config"
        (config / "hyperparameters.json").write_text(json.dumps(self.hyperparameters), encoding="utf-8")
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": HOST, "hosts": [HOST]}), encoding="utf-8"
        )
        data_config = {
            c["ChannelName"]: {k: v for k, v in c.items() if k != "ChannelName"}
            for c in self.request.get("InputDataConfig") or []
        }
        (config / "inputdataconfig.json").write_text(json.dumps(data_config), encoding="utf-8")

    def _environment(self, channels: dict[str, Path], program: str, submit_dir: str) -> dict[str, str]:
        hps = {key: _decoded(value) for key, value in self.user_hyperparameters.items()}
        cpus = str(self.num_cpus)
        model_dir = str(self.folder / "model")
        output_data_dir = str(self.folder / "output" / "data")
        training_env = {
            "job_name": self.name,
            "current_host": HOST,
            "hosts": [HOST],
            "hyperparameters": hps,
            "channel_input_dirs": {name: str(path) for name, path in channels.items()},
            "input_dir": str(self.folder / "input"),
            "input_config_dir": str(self.folder / "input" / "config"),
            "model_dir": model_dir,
            "output_dir": str(self.folder / "output"),
            "output_data_dir": output_data_dir,
            "num_cpus": self.num_cpus,
            "num_gpus": 0,
            "user_entry_point": program,
            "module_dir": submit_dir,
            "resource_config": {"current_host": HOST, "hosts": [HOST]},
        }
        env = dict(os.environ)
        env.update(
            {
                "SM_MODEL_DIR": model_dir,
                "SM_OUTPUT_DATA_DIR": output_data_dir,
                "SM_OUTPUT_DIR": str(self.folder / "output"),
                "SM_INPUT_DIR": str(self.folder / "input"),
                "SM_INPUT_CONFIG_DIR": str(self.folder / "input" / "config"),
                "SM_CHANNELS": json.dumps(sorted(channels)),
                "SM_HPS": json.dumps(hps),
                "SM_NUM_CPUS": cpus,
                "SM_NUM_GPUS": "0",
                "SM_CURRENT_HOST": HOST,
                "SM_HOSTS": json.dumps([HOST]),
                "SM_USER_ENTRY_POINT": program,
                "SM_MODULE_DIR": submit_dir,
                "SM_TRAINING_ENV": json.dumps(training_env),
                "OMP_NUM_THREADS": cpus,
                "MKL_NUM_THREADS": cpus,
                "TRAINING_JOB_NAME": self.name,
                "TRAINING_JOB_ARN": self.arn,
            }
        )
        for name, path in channels.items():
            env[f"SM_CHANNEL_{name.upper()}"] = str(path)
        for key, value in hps.items():
            env[f"SM_HP_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        env.update(self.request.get("Environment") or {})
        return env

    # ----------------------------------------------------------------- while running

    def _on_line(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()
        if self._cloud_log is not None:
            self._cloud_log.write(line)
        self._tail.append(line)
        timestamp = now()
        objective_value: float | None = None
        epoch = 0
        with self._lock:
            for name, value in self.metric_parser.parse(line):
                self.metrics.append(MetricPoint(name, value, timestamp))
                if name == self.objective_metric and not line.startswith(KEPT_EPOCH_PREFIX):
                    self.epochs += 1
                    objective_value, epoch = value, self.epochs
        if objective_value is not None and self.on_epoch is not None:
            self.on_epoch(self, epoch, objective_value)

    @property
    def model_location(self) -> str:
        """Where the job's model archive goes, which SageMaker names in every description (ModelArtifacts is a required
        member), whether the job saved one there or not."""
        return f"{self.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/output/model.tar.gz"

    def _upload_model(self) -> None:
        uri = self.model_location
        archive = s3_transfer.tar_folder(self.folder / "model", self.folder / "model.tar.gz")
        bucket, key = s3_transfer.parse_s3_uri(uri)
        try:
            self.context.s3.upload_file(str(archive), bucket, key)
        finally:  # S3 holds the archive now (or the job fails): a copy per trial would fill the disk (438 MB for mpnet)
            archive.unlink(missing_ok=True)

    # ----------------------------------------------------------------- status bookkeeping

    def _add_transition(self, status: SecondaryStatus, message: str) -> None:
        stamp = now()
        if self.transitions and "EndTime" not in self.transitions[-1]:
            self.transitions[-1]["EndTime"] = stamp
        self.transitions.append({"Status": str(status), "StartTime": stamp, "StatusMessage": message})
        self.secondary_status = status
        self.last_modified_time = stamp

    def _advance(self, status: SecondaryStatus, message: str, *, start_training_clock: bool = False) -> None:
        with self._lock:
            if self.stop_reason is not None:
                return
            self._add_transition(status, message)
            if start_training_clock:
                self.training_start_time = self.last_modified_time
        self._publish()

    def _finish_stopped(self) -> None:
        reason = self.stop_reason or STOP_REQUESTED
        if reason != STOP_SHUTDOWN and not self.context.shutting_down.is_set():
            try:  # a stopped job keeps what it saved, as SageMaker uploads a stopped job's model
                if any((self.folder / "model").iterdir()):
                    self._upload_model()
            except Exception:
                logger.exception("could not upload the model of stopped training job %s", self.name)
        if reason == STOP_MAX_RUNTIME:
            limit = self.request["StoppingCondition"]["MaxRuntimeInSeconds"]
            self._finish(
                JobStatus.STOPPED,
                SecondaryStatus.MAX_RUNTIME_EXCEEDED,
                _STOP_MESSAGES[reason],
                f"MaxRuntimeExceeded: Training job exceeded MaxRuntimeInSeconds ({limit} s) and was stopped.",
            )
        else:
            self._finish(JobStatus.STOPPED, SecondaryStatus.STOPPED, _STOP_MESSAGES[reason])

    def _finish(
        self, status: JobStatus, secondary: SecondaryStatus, message: str, failure_reason: str | None = None
    ) -> None:
        with self._lock:
            self._add_transition(secondary, message)
            self.transitions[-1]["EndTime"] = self.last_modified_time
            self.status = status
            self.failure_reason = failure_reason
            self.training_end_time = self.last_modified_time
        if failure_reason:
            logger.info("training job %s %s: %s", self.name, status, failure_reason)
        self._publish()

    def _publish(self) -> None:
        detail = times_to_epoch_ms(self.describe())
        detail["Tags"] = self.context.tags.as_dict(self.arn)
        self.context.events.publish(TRAINING_JOB_STATE_CHANGE, self.arn, detail)

    # ----------------------------------------------------------------- views

    def final_metrics(self) -> dict[str, MetricPoint]:
        with self._lock:
            last: dict[str, MetricPoint] = {}
            for point in self.metrics:
                last[point.name] = point
            return last

    def objective_values(self) -> list[float]:
        with self._lock:
            return [p.value for p in self.metrics if p.name == self.objective_metric]

    def describe(self) -> dict[str, Any]:
        with self._lock:
            request = self.request
            seconds = None
            if self.training_start_time is not None and self.training_end_time is not None:
                seconds = max(1, round(self.training_end_time - self.training_start_time))
            final = [
                {"MetricName": p.name, "Value": p.value, "Timestamp": p.timestamp}
                for p in self.final_metrics().values()
            ]
            response = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "TuningJobArn": self.tuning_job_arn,
                "ModelArtifacts": {"S3ModelArtifacts": self.model_location},
                "TrainingJobStatus": str(self.status),
                "SecondaryStatus": str(self.secondary_status),
                "FailureReason": self.failure_reason,
                "HyperParameters": request.get("HyperParameters") or {},
                "AlgorithmSpecification": request["AlgorithmSpecification"],
                "RoleArn": request.get("RoleArn"),
                "InputDataConfig": request.get("InputDataConfig"),
                "OutputDataConfig": request.get("OutputDataConfig"),
                "ResourceConfig": request.get("ResourceConfig"),
                "VpcConfig": request.get("VpcConfig"),
                "StoppingCondition": request.get("StoppingCondition"),
                "CreationTime": self.creation_time,
                "TrainingStartTime": self.training_start_time,
                "TrainingEndTime": self.training_end_time,
                "LastModifiedTime": self.last_modified_time,
                "SecondaryStatusTransitions": self.transitions,
                "FinalMetricDataList": final,
                "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
                "EnableInterContainerTrafficEncryption": request.get(
                    "EnableInterContainerTrafficEncryption", False
                ),
                "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
                "CheckpointConfig": request.get("CheckpointConfig"),
                "TrainingTimeInSeconds": seconds,
                "BillableTimeInSeconds": seconds,
                "Environment": request.get("Environment"),
                "RetryStrategy": request.get("RetryStrategy"),
            }
            return drop_none(response)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return drop_none(
                {
                    "TrainingJobName": self.name,
                    "TrainingJobArn": self.arn,
                    "CreationTime": self.creation_time,
                    "TrainingEndTime": self.training_end_time,
                    "LastModifiedTime": self.last_modified_time,
                    "TrainingJobStatus": str(self.status),
                    "SecondaryStatus": str(self.secondary_status),
                }
            )
