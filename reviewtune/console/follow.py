"""Show a run live until it ends: the run's status, the tuning job's status, a line whenever a trial changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from reviewtune.console.views import show_value
from reviewtune.core.runs import FINAL_STATUSES, RunsRepository
from reviewtune.core.trial_facts import epochs_run


class Progress:
    """Prints a line whenever a trial changes: status, epoch, objective.

    ``epochs(job_name)`` counts the epochs a trial has run; by default from DescribeTrainingJob's ``train:epoch``
    final metric (works on AWS and locally); the local ``run`` command reads the trial's log instead."""

    def __init__(self, console: Console, sagemaker: Any, run_id: str, epochs: Callable[[str], int] | None = None):
        self.console = console
        self.sagemaker = sagemaker
        self.run_id = run_id
        self.epochs = epochs or self._described_epochs
        self.seen: dict[str, tuple] = {}
        self.tuning_status: str | None = None

    def _described_epochs(self, job: str) -> int:
        return epochs_run(self.sagemaker.describe_training_job(TrainingJobName=job)) or 0

    def poll(self) -> None:
        try:
            tuning = self.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.run_id)
        except Exception:  # the job does not exist yet
            return
        if tuning["HyperParameterTuningJobStatus"] != self.tuning_status:
            self.tuning_status = tuning["HyperParameterTuningJobStatus"]
            self.console.print(f"[bold]tuning job[/] {self.run_id}: {self.tuning_status}")
        summaries = self.sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=self.run_id, MaxResults=100
        )["TrainingJobSummaries"]
        for summary in sorted(summaries, key=lambda s: s["TrainingJobName"]):
            name = summary["TrainingJobName"]
            objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
            previous = self.seen.get(name)
            if previous and previous[0] == summary["TrainingJobStatus"] and previous[0] != "InProgress" and previous[2] == objective:
                continue  # an ended trial does not change: no need to ask for its epochs again
            ended_without_objective = summary["TrainingJobStatus"] in ("Completed", "Stopped") and objective is None
            if ended_without_objective and self.tuning_status == "InProgress":
                continue  # the tuner reads the objective a moment after the job ends: print the trial once it has it
            state = (summary["TrainingJobStatus"], self.epochs(name), objective)
            if state != previous:
                self.seen[name] = state
                hps = " ".join(f"{k}={show_value(v)}" for k, v in sorted(summary.get("TunedHyperParameters", {}).items()))
                shown = f"{objective:.2f} %" if objective is not None else "-"
                self.console.print(f"  trial {name[-12:]}  {state[0]:<10} epoch {state[1]}  val_acc {shown:<8}  {hps}")


def wait_for_run(console: Console, runs: RunsRepository, progress: Progress, run_id: str, timeout: float, poll_s: float = 2) -> dict[str, Any]:
    """Poll the run item (and, while it tunes, the trials) until the run reaches a final status."""
    deadline = time.monotonic() + timeout
    last_status = None
    while time.monotonic() < deadline:
        item = runs.get(run_id)
        status = item["status"] if item else "WAITING"
        if status != last_status:
            if last_status == "TUNING" or status in FINAL_STATUSES:
                progress.poll()  # the trials' last lines (and the tuning job's end) before the run's next status
            console.print(f"[bold]run[/] {run_id}: {status}")
            last_status = status
        if status == "TUNING":
            progress.poll()
        if item and status in FINAL_STATUSES:
            return item
        time.sleep(poll_s)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")
