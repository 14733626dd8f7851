"""Show a run live until it ends: the run's status, the tuning job's status, a line whenever a trial changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from reviewtune.console.queries import training_job_summaries
from reviewtune.console.text import plain
from reviewtune.core import display
from reviewtune.core.runs import FINAL_STATUSES, RunsRepository, unsent
from reviewtune.core.trial_facts import latest_epoch

# (epochs run, the last epoch's validation accuracy in percent or None) of a training job, by its name
LatestEpoch = Callable[[str], tuple[int, float | None]]


class Progress:
    """Prints a line whenever a trial changes: status, epoch, validation accuracy.

    A running trial shows its last epoch's validation accuracy; an ended one the objective the tuner read.
    ``latest(job_name)`` gives the epochs a trial has run and the last one's validation accuracy; by default from
    DescribeTrainingJob's final metrics (``train:epoch``, ``validation:accuracy``: SageMaker updates them as the job
    prints them; works on AWS and locally); the local ``run`` command reads the trial's log instead."""

    def __init__(self, console: Console, sagemaker: Any, run_id: str, latest: LatestEpoch | None = None):
        self.console = console
        self.sagemaker = sagemaker
        self.run_id = run_id
        self.latest = latest or self._described_latest
        self.seen: dict[str, tuple] = {}
        self.tuning_status: str | None = None

    def _described_latest(self, job: str) -> tuple[int, float | None]:
        return latest_epoch(self.sagemaker.describe_training_job(TrainingJobName=job))

    def poll(self) -> None:
        try:
            tuning = self.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.run_id)
        except Exception:  # the job does not exist yet
            return
        if tuning["HyperParameterTuningJobStatus"] != self.tuning_status:
            self.tuning_status = tuning["HyperParameterTuningJobStatus"]
            self.console.print(f"[bold]tuning job[/] {self.run_id}: {self.tuning_status}")
        for summary in sorted(training_job_summaries(self.sagemaker, self.run_id), key=lambda s: s["TrainingJobName"]):
            name = summary["TrainingJobName"]
            objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
            previous = self.seen.get(name)
            if previous and previous[0] == summary["TrainingJobStatus"] and previous[0] != "InProgress" and previous[2] == objective:
                continue  # an ended trial does not change: no need to ask for its epochs again
            ended_without_objective = summary["TrainingJobStatus"] in ("Completed", "Stopped") and objective is None
            if ended_without_objective and self.tuning_status == "InProgress":
                continue  # the tuner reads the objective a moment after the job ends: print the trial once it has it
            epochs, last_accuracy = self.latest(name)
            running = summary["TrainingJobStatus"] == "InProgress"
            accuracy = last_accuracy if running else objective
            state = (summary["TrainingJobStatus"], epochs, objective, accuracy)
            if state != previous:
                self.seen[name] = state
                hps = " ".join(f"{k}={display.hyperparameter(v)}" for k, v in sorted(summary.get("TunedHyperParameters", {}).items()))
                shown = display.percent(accuracy, scale=1, missing="-")
                self.console.print(plain(f"  trial {display.trial_suffix(name)}  {state[0]:<10} epoch {epochs}  val_acc {shown:<8}  {hps}"))


MESSAGE_WAIT_S = 30.0  # how long an ended run's outcome message may take to be sent before the record is shown


def wait_for_run(console: Console, runs: RunsRepository, progress: Progress, run_id: str, timeout: float, poll_s: float = 2,
                 message_wait_s: float = MESSAGE_WAIT_S) -> dict[str, Any]:
    """Poll the run item (and, while it tunes, the trials) until the run reaches a final status, then until its
    outcome message is sent (the function that ended it sends it a moment later), for ``message_wait_s`` at most:
    the record shown is then the one with the message told."""
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
            return _told(runs, item, run_id, min(deadline, time.monotonic() + message_wait_s), poll_s)
        time.sleep(poll_s)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")


def _told(runs: RunsRepository, item: dict[str, Any], run_id: str, until: float, poll_s: float) -> dict[str, Any]:
    """``item`` once its messages are sent, or as it is at ``until`` (the reconciler sends what is left)."""
    while unsent(item) and time.monotonic() < until:
        time.sleep(poll_s)
        item = runs.get(run_id) or item
    return item
