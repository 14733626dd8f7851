"""A hyperparameter tuning job: Optuna ask/tell drives training jobs, as SageMaker Automatic Model Tuning does.

Each trial is one training job ``<tuning>-<NNN>-<8 hex>`` with the static hyperparameters plus the sampled
ones; at most MaxParallelTrainingJobs run at once, MaxNumberOfTrainingJobs in all. Every objective metric
line is an epoch: its value is reported to the trial and the pruner (early stopping ``Auto`` or Hyperband)
may stop the training job. A trial's objective is the last value its job emitted, stopped jobs included.

The tuning job completes when the budget is spent or a completion criterion holds:
``TargetObjectiveMetricValue`` reached; ``BestObjectiveNotImproving``: that many trials in a row did not
improve the best objective; ``ConvergenceDetected`` (``CompleteOnConvergence: Enabled``): after at least
``CONVERGENCE_MIN_TRIALS`` trials with an objective, the last ``CONVERGENCE_WINDOW`` of them improved the
best objective by less than ``CONVERGENCE_TOLERANCE`` (relative). Running trials are stopped then.
It fails, like SageMaker, when its first min(5, MaxNumberOfTrainingJobs) trials all failed, or when it
ends with no trial that produced the objective metric.

With a WarmStartConfig (checked in ``warm_start.py``) the study starts with the parents' finished trials; for
``IdenticalDataAndAlgorithm`` Describe also reports ``OverallBestTrainingJob`` over this job and its parents.
"""

from __future__ import annotations

import copy
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from .background import BackgroundJob
from .context import ServiceContext, drop_none, now
from .errors import ResourceInUse, ValidationError
from .events import TUNING_JOB_STATE_CHANGE, times_to_epoch_ms
from .statuses import JobStatus, ObjectiveStatus, TuningJobStatus
from .strategies import make_pruner, make_sampler
from .training import STOP_EARLY, STOP_REQUESTED, STOP_SHUTDOWN, TrainingJob
from .tuning_config import TuningSettings
from .warm_start import IDENTICAL_DATA_AND_ALGORITHM, WarmStart, seed_study

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

FAILED_TRIALS_BEFORE_GIVING_UP = 5
CONVERGENCE_MIN_TRIALS = 6
CONVERGENCE_WINDOW = 3
CONVERGENCE_TOLERANCE = 1e-3
POLL_SECONDS = 0.25

_DEFINITION_TO_JOB = (
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "VpcConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "RetryStrategy",
    "Environment",
)


@dataclass
class Trial:
    """One training job of the tuning job and its Optuna trial."""

    number: int
    optuna_trial: optuna.Trial
    job: TrainingJob
    tuned: dict[str, str]
    recorded: bool = False
    objective: float | None = field(default=None)

    @property
    def objective_status(self) -> ObjectiveStatus:
        if not self.recorded:
            return ObjectiveStatus.PENDING
        return ObjectiveStatus.SUCCEEDED if self.objective is not None else ObjectiveStatus.FAILED


class TuningJob(BackgroundJob):
    """One tuning job; ``start()`` returns at once and the search runs in its own thread."""

    kind = "tuning"

    def __init__(
        self,
        context: ServiceContext,
        request: dict[str, Any],
        settings: TuningSettings,
        register_training_job: Callable[[TrainingJob], None],
        warm_start: WarmStart | None = None,
    ) -> None:
        self.context = context
        self.request = copy.deepcopy(request)
        self.settings = settings
        self.name: str = request["HyperParameterTuningJobName"]
        self.arn = context.arn("hyper-parameter-tuning-job", self.name)
        self._register_training_job = register_training_job
        self.status = TuningJobStatus.IN_PROGRESS
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.end_time: float | None = None
        self.failure_reason: str | None = None
        self.trials: list[Trial] = []
        self.best_value: float | None = None
        self.jobs_not_improving = 0
        self.convergence_time: float | None = None
        self._halt_reason: str | None = None
        self._user_stop = False
        self._lock = threading.RLock()
        self._finished: queue.Queue[str] = queue.Queue()
        self._by_job: dict[str, Trial] = {}
        self.study = optuna.create_study(
            study_name=self.name,
            direction="maximize" if settings.maximize else "minimize",
            sampler=make_sampler(settings.strategy, settings.seed, settings.space),
            pruner=make_pruner(
                settings.strategy,
                settings.early_stopping,
                min_resource=settings.hyperband_min_resource,
                max_resource=settings.hyperband_max_resource,
            ),
        )
        self.warm_start = warm_start
        self.seeded_trials = seed_study(self.study, settings.space, warm_start.trials) if warm_start else 0

    # ----------------------------------------------------------------- lifecycle

    @property
    def done(self) -> bool:
        return self.status in (TuningJobStatus.COMPLETED, TuningJobStatus.FAILED, TuningJobStatus.STOPPED)

    def stop(self) -> None:
        """StopHyperParameterTuningJob: Stopping now, Stopped once every running trial ended."""
        with self._lock:
            if self.status != TuningJobStatus.IN_PROGRESS:
                raise ValidationError(
                    f"The hyperparameter tuning job {self.name} is {self.status}; only an InProgress job can be stopped."
                )
            self._user_stop = True
            self.status = TuningJobStatus.STOPPING
            self.last_modified_time = now()
        self._publish()
        self._halt("StopRequested", STOP_REQUESTED)

    def shutdown(self) -> None:
        """The service is stopping: end the search and its running trials without further events."""
        with self._lock:
            self._user_stop = True
        self._halt("ServiceShutdown", STOP_SHUTDOWN)

    def _halt(self, reason: str, stop_reason: str) -> None:
        with self._lock:
            if self._halt_reason is None:
                self._halt_reason = reason
            running = [t.job for t in self.trials if not t.job.done]
        for job in running:
            job.request_stop(stop_reason)

    # ----------------------------------------------------------------- the search

    def _run(self) -> None:
        deadline = self.creation_time + self.settings.max_runtime if self.settings.max_runtime else None
        try:
            while True:
                with self._lock:
                    launched = [self._launch() for _ in range(self._launchable())]
                    if all(trial.recorded for trial in self.trials):
                        break
                for job in launched:  # outside the lock: starting a job publishes its first event
                    job.start()
                try:
                    finished = self._finished.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    finished = None
                if finished is not None:
                    self._record(self._by_job[finished])
                if deadline is not None and now() >= deadline and self._halt_reason is None:
                    self._halt("MaxRuntimeInSeconds", STOP_REQUESTED)
        except Exception as error:
            logger.exception("tuning job %s failed inside the local service", self.name)
            with self._lock:
                self.failure_reason = f"InternalServerError: {type(error).__name__}: {error}"[:1024]
            self._halt("InternalError", STOP_REQUESTED)
            for trial in list(self.trials):
                trial.job.join(timeout=30)
        self._finalize()

    def _launchable(self) -> int:
        """How many trials may start now."""
        if self._halt_reason is not None or self.failure_reason is not None:
            return 0
        running = sum(1 for trial in self.trials if not trial.recorded)
        return max(0, min(self.settings.max_jobs - len(self.trials), self.settings.max_parallel - running))

    def _launch(self) -> TrainingJob:
        """Ask Optuna for the next trial and register its training job (started by the caller)."""
        settings = self.settings
        number = len(self.trials) + 1
        optuna_trial = self.study.ask({name: d.distribution for name, d in settings.space.items()})
        tuned = {name: d.to_hyperparameter(optuna_trial.params[name]) for name, d in settings.space.items()}
        definition = self.request["TrainingJobDefinition"]
        request: dict[str, Any] = {
            key: copy.deepcopy(definition[key]) for key in _DEFINITION_TO_JOB if key in definition
        }
        request["HyperParameters"] = {**(definition.get("StaticHyperParameters") or {}), **tuned}
        request.setdefault(
            "ResourceConfig", {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
        )
        while True:
            request["TrainingJobName"] = f"{self.name}-{number:03d}-{secrets.token_hex(4)}"
            job = TrainingJob(
                self.context,
                request,
                num_cpus=self.context.total_cpus // settings.max_parallel,
                tuning_job_arn=self.arn,
                objective_metric=settings.objective_metric,
                on_epoch=self._on_epoch,
                on_finish=lambda finished: self._finished.put(finished.name),
            )
            try:
                self._register_training_job(job)
                break
            except ResourceInUse:
                continue
        trial = Trial(number=number, optuna_trial=optuna_trial, job=job, tuned=tuned)
        self.trials.append(trial)
        self._by_job[job.name] = trial
        self.last_modified_time = now()
        return job

    def _on_epoch(self, job: TrainingJob, epoch: int, value: float) -> None:
        with self._lock:
            trial = self._by_job.get(job.name)
            if trial is None or trial.recorded or self._halt_reason is not None:
                return
            trial.optuna_trial.report(value, epoch)
            prune = trial.optuna_trial.should_prune() and not self._is_last_epoch(epoch)
        if prune:
            logger.info(
                "tuning job %s stops %s early at epoch %d (objective %s)", self.name, job.name, epoch, value
            )
            job.request_stop(STOP_EARLY)

    def _is_last_epoch(self, epoch: int) -> bool:
        """Hyperband's last rung is the full budget: a trial that reached it has nothing left to save."""
        limit = self.settings.hyperband_max_resource
        return self.settings.strategy == "Hyperband" and isinstance(limit, int) and epoch >= limit

    def _record(self, trial: Trial) -> None:
        job = trial.job
        values = job.objective_values()
        settings = self.settings
        with self._lock:
            trial.recorded = True
            self.last_modified_time = now()
            if job.status == JobStatus.FAILED or not values:
                self.study.tell(trial.optuna_trial, state=TrialState.FAIL)
            else:
                trial.objective = values[-1]
                if job.status == JobStatus.COMPLETED:
                    self.study.tell(trial.optuna_trial, trial.objective)
                else:
                    self.study.tell(trial.optuna_trial, state=TrialState.PRUNED)
            halt = self._completion_reached(trial) if trial.objective is not None else None
            succeeded = sum(1 for t in self.trials if t.objective is not None)
            failed = sum(
                1
                for t in self.trials
                if t.recorded and t.objective is None and t.job.status == JobStatus.FAILED
            )
            give_up_after = min(FAILED_TRIALS_BEFORE_GIVING_UP, settings.max_jobs)
            if succeeded == 0 and failed >= give_up_after and self.failure_reason is None:
                self.failure_reason = (
                    f"No training job succeeded after {failed} attempts. Please take a look at the training "
                    "job failures to get more details."
                )
                halt = "Failed"
        if halt:
            self._halt(halt, STOP_REQUESTED)

    def _completion_reached(self, trial: Trial) -> str | None:
        settings = self.settings
        value = trial.objective
        assert value is not None
        if self.best_value is None or settings.is_better(value, self.best_value):
            self.best_value = value
            self.jobs_not_improving = 0
        else:
            self.jobs_not_improving += 1
        if settings.reaches_target(value):
            return "TargetObjectiveMetricValue"
        if settings.max_jobs_not_improving and self.jobs_not_improving >= settings.max_jobs_not_improving:
            return "BestObjectiveNotImproving"
        if settings.complete_on_convergence and self._converged():
            self.convergence_time = now()
            return "ConvergenceDetected"
        return None

    def _converged(self) -> bool:
        objectives = [t.objective for t in self.trials if t.objective is not None]
        if len(objectives) < CONVERGENCE_MIN_TRIALS:
            return False
        pick = max if self.settings.maximize else min
        before = pick(objectives[:-CONVERGENCE_WINDOW])
        after = pick(objectives)
        scale = max(abs(before), 1e-12)
        return abs(after - before) / scale < CONVERGENCE_TOLERANCE

    def _finalize(self) -> None:
        with self._lock:
            if self._halt_reason == "ServiceShutdown" or self._user_stop:
                self.status = TuningJobStatus.STOPPED
            elif self.failure_reason is not None:
                self.status = TuningJobStatus.FAILED
            elif not any(t.objective is not None for t in self.trials):
                self.status = TuningJobStatus.FAILED
                self.failure_reason = (
                    f"No training job succeeded after {len(self.trials)} attempts. Please take a look at the "
                    "training job failures to get more details."
                )
            else:
                self.status = TuningJobStatus.COMPLETED
            self.end_time = now()
            self.last_modified_time = self.end_time
        logger.info(
            "tuning job %s %s (%s)",
            self.name,
            self.status,
            self.failure_reason or self._halt_reason or "budget spent",
        )
        if self._halt_reason != "ServiceShutdown":
            self._publish()

    # ----------------------------------------------------------------- views

    def _counters(self) -> tuple[dict[str, int], dict[str, int]]:
        jobs = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
        objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
        for trial in self.trials:
            status = trial.job.status
            if status == JobStatus.COMPLETED:
                jobs["Completed"] += 1
            elif status == JobStatus.FAILED:
                jobs["NonRetryableError"] += 1
            elif status == JobStatus.STOPPED:
                jobs["Stopped"] += 1
            else:
                jobs["InProgress"] += 1
            objectives[str(trial.objective_status)] += 1
        return jobs, objectives

    def trial_summary(self, trial: Trial) -> dict[str, Any]:
        job = trial.job
        summary: dict[str, Any] = {
            "TrainingJobName": job.name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.name,
            "CreationTime": job.creation_time,
            "TrainingStartTime": job.training_start_time,
            "TrainingEndTime": job.training_end_time,
            "TrainingJobStatus": str(job.status),
            "TunedHyperParameters": dict(trial.tuned),
            "FailureReason": job.failure_reason,
            "ObjectiveStatus": str(trial.objective_status),
        }
        if trial.objective is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": self.settings.objective_metric,
                "Value": trial.objective,
                "Type": "Maximize" if self.settings.maximize else "Minimize",
            }
        return drop_none(summary)

    def best_trial(self) -> Trial | None:
        best: Trial | None = None
        for trial in self.trials:
            if trial.objective is None:
                continue
            if best is None or self.settings.is_better(trial.objective, best.objective):  # type: ignore[arg-type]
                best = trial
        return best

    def overall_best(self, best: Trial | None) -> dict[str, Any] | None:
        """IdenticalDataAndAlgorithm: the best training job of this job and of its parents."""
        if self.warm_start is None or self.warm_start.warm_start_type != IDENTICAL_DATA_AND_ALGORITHM:
            return None
        candidates = list(self.warm_start.best_summaries)
        if best is not None:
            candidates.append(self.trial_summary(best))
        overall = None
        for summary in candidates:
            value = summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            if overall is None or self.settings.is_better(
                value, overall["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            ):
                overall = summary
        return overall

    def results(self) -> tuple[int, list[tuple[str, dict[str, str], float]], dict[str, Any] | None]:
        """What a warm start takes from this job: its number of training jobs, each (training job, tuned
        hyperparameters, objective) that produced the objective, and the summary of its best one."""
        with self._lock:
            finished = [
                (t.job.name, dict(t.tuned), t.objective) for t in self.trials if t.objective is not None
            ]
            best = self.best_trial()
            return len(self.trials), finished, self.trial_summary(best) if best else None

    def trial_summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.trial_summary(trial) for trial in self.trials]

    def describe(self) -> dict[str, Any]:
        with self._lock:
            jobs, objectives = self._counters()
            best = self.best_trial()
            end = self.end_time or now()
            response = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobConfig": self.request["HyperParameterTuningJobConfig"],
                "TrainingJobDefinition": self.request.get("TrainingJobDefinition"),
                "HyperParameterTuningJobStatus": str(self.status),
                "CreationTime": self.creation_time,
                "HyperParameterTuningEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": jobs,
                "ObjectiveStatusCounters": objectives,
                "BestTrainingJob": self.trial_summary(best) if best else None,
                "OverallBestTrainingJob": self.overall_best(best),
                "WarmStartConfig": self.request.get("WarmStartConfig"),
                "FailureReason": self.failure_reason,
                "TuningJobCompletionDetails": {
                    "NumberOfTrainingJobsObjectiveNotImproving": self.jobs_not_improving,
                    "ConvergenceDetectedTime": self.convergence_time,
                },
                "ConsumedResources": {"RuntimeInSeconds": int(end - self.creation_time)},
            }
            return drop_none(response)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            jobs, objectives = self._counters()
            return drop_none(
                {
                    "HyperParameterTuningJobName": self.name,
                    "HyperParameterTuningJobArn": self.arn,
                    "HyperParameterTuningJobStatus": str(self.status),
                    "Strategy": self.settings.strategy,
                    "CreationTime": self.creation_time,
                    "HyperParameterTuningEndTime": self.end_time,
                    "LastModifiedTime": self.last_modified_time,
                    "TrainingJobStatusCounters": jobs,
                    "ObjectiveStatusCounters": objectives,
                    "ResourceLimits": self.request["HyperParameterTuningJobConfig"]["ResourceLimits"],
                }
            )

    def _publish(self) -> None:
        with self._lock:
            jobs, objectives = self._counters()
            detail = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "TrainingJobDefinition": self.request.get("TrainingJobDefinition"),
                "HyperParameterTuningJobStatus": str(self.status),
                "CreationTime": self.creation_time,
                "HyperParameterTuningEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "HyperParameterTuningJobConfig": self.request["HyperParameterTuningJobConfig"],
                "TrainingJobStatusCounters": jobs,
                "ObjectiveStatusCounters": objectives,
                "FailureReason": self.failure_reason,
            }
        detail = times_to_epoch_ms(drop_none(detail), as_string=True)
        detail["Tags"] = self.context.tags.as_dict(self.arn)
        self.context.events.publish(TUNING_JOB_STATE_CHANGE, self.arn, detail)
