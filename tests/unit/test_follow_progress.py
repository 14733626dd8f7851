"""`drop --follow` / `make run` progress lines: one line per change of a trial, an ended trial once it has its
objective."""

from __future__ import annotations

import io

from rich.console import Console

from reviewtune.console.follow import Progress


class FakeSageMaker:
    """DescribeHyperParameterTuningJob / ListTrainingJobsForHyperParameterTuningJob answers, changed by the test."""

    def __init__(self) -> None:
        self.tuning_status = "InProgress"
        self.trials: dict[str, dict] = {}

    def describe_hyper_parameter_tuning_job(self, HyperParameterTuningJobName: str) -> dict:
        return {"HyperParameterTuningJobStatus": self.tuning_status}

    def list_training_jobs_for_hyper_parameter_tuning_job(self, MaxResults: int, NextToken: str = "0", **_) -> dict:
        """Pages of ``MaxResults`` as SageMaker gives them (at most 100)."""
        start = int(NextToken)
        page = {"TrainingJobSummaries": list(self.trials.values())[start : start + min(MaxResults, 100)]}
        if start + 100 < len(self.trials):
            page["NextToken"] = str(start + 100)
        return page

    def set(self, name: str, status: str, objective: float | None = None) -> None:
        summary = {"TrainingJobName": name, "TrainingJobStatus": status, "TunedHyperParameters": {"learning_rate": "5e-05"}}
        if objective is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "validation:accuracy", "Value": objective}
        self.trials[name] = summary


def _progress(sagemaker: FakeSageMaker, latest=lambda job: (2, None)) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False, color_system=None)
    return Progress(console, sagemaker, "run-1", latest=latest), out


def test_an_ended_trial_is_printed_once_with_its_objective() -> None:
    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker)
    sagemaker.set("run-1-001-aaaaaaaa", "InProgress")
    progress.poll()
    sagemaker.set("run-1-001-aaaaaaaa", "Completed")  # ended, objective not read yet
    progress.poll()
    sagemaker.set("run-1-001-aaaaaaaa", "Completed", 74.5)
    progress.poll()
    progress.poll()
    lines = [line for line in out.getvalue().splitlines() if "trial" in line]
    assert len(lines) == 2
    assert "InProgress" in lines[0] and "val_acc -" in lines[0]
    assert "Completed" in lines[1] and "val_acc 74.50 %" in lines[1] and "learning_rate=5.00e-05" in lines[1]


def test_a_running_trial_shows_its_last_epoch_s_validation_accuracy() -> None:
    sagemaker = FakeSageMaker()
    latest = {"run-1-001-aaaaaaaa": (0, None)}
    progress, out = _progress(sagemaker, latest=latest.__getitem__)
    sagemaker.set("run-1-001-aaaaaaaa", "InProgress")
    progress.poll()
    latest["run-1-001-aaaaaaaa"] = (1, 70.45)
    progress.poll()
    progress.poll()  # nothing changed: no line
    latest["run-1-001-aaaaaaaa"] = (2, 73.05)
    progress.poll()
    sagemaker.set("run-1-001-aaaaaaaa", "Completed", 73.05)
    progress.poll()
    lines = [line for line in out.getvalue().splitlines() if "trial" in line]
    assert len(lines) == 4, lines
    assert "epoch 0  val_acc -" in lines[0]
    assert "InProgress epoch 1  val_acc 70.45 %" in lines[1]
    assert "InProgress epoch 2  val_acc 73.05 %" in lines[2]
    assert "Completed  epoch 2  val_acc 73.05 %" in lines[3]


def test_an_ended_trial_shows_the_tuner_s_objective_not_its_last_epoch() -> None:
    """An ended trial's figure is the objective the tuner read, whatever the last metrics reading said."""
    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker, latest=lambda job: (2, 71.0))
    sagemaker.set("run-1-001-aaaaaaaa", "Completed", 74.0)
    progress.poll()
    assert "Completed  epoch 2  val_acc 74.00 %" in out.getvalue()


def test_the_default_reads_epochs_and_accuracy_from_the_training_job_s_metrics() -> None:
    sagemaker = FakeSageMaker()
    sagemaker.describe_training_job = lambda TrainingJobName: {
        "FinalMetricDataList": [
            {"MetricName": "train:epoch", "Value": 1.0},
            {"MetricName": "validation:accuracy", "Value": 69.8},
            {"MetricName": "validation:loss", "Value": 0.71},
        ]
    }
    out = io.StringIO()
    progress = Progress(Console(file=out, width=200, color_system=None), sagemaker, "run-1")
    sagemaker.set("run-1-001-aaaaaaaa", "InProgress")
    progress.poll()
    assert "InProgress epoch 1  val_acc 69.80 %" in out.getvalue()


def test_a_failed_trial_or_an_ended_tuning_job_prints_without_an_objective() -> None:
    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker)
    sagemaker.set("run-1-001-aaaaaaaa", "Failed")
    sagemaker.set("run-1-002-bbbbbbbb", "Stopped")
    progress.poll()
    text = out.getvalue()
    assert "001-aaaaaaaa  Failed" in text and "002-bbbbbbbb" not in text
    sagemaker.tuning_status = "Completed"
    progress.poll()
    assert "002-bbbbbbbb  Stopped" in out.getvalue()
    assert "tuning job run-1: Completed" in out.getvalue()


class FakeRuns:
    """RunsRepository.get answers: one status per call, the last one repeated."""

    def __init__(self, statuses: list[str], on_get=None) -> None:
        self.statuses = statuses
        self.on_get = on_get
        self.calls = 0

    def get(self, run_id: str) -> dict | None:
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        if self.on_get:
            self.on_get(self.calls)
        self.calls += 1
        return {"status": status}


def test_the_last_trial_line_comes_before_the_run_s_next_status() -> None:
    from reviewtune.console.follow import wait_for_run

    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker)
    sagemaker.set("run-1-001-aaaaaaaa", "InProgress")

    def between_polls(call: int) -> None:
        if call == 1:  # the trial ends and the run moves on between two polls
            sagemaker.set("run-1-001-aaaaaaaa", "Completed", 74.5)
            sagemaker.tuning_status = "Completed"

    runs = FakeRuns(["TUNING", "EVALUATING", "SUCCEEDED"], on_get=between_polls)
    item = wait_for_run(progress.console, runs, progress, "run-1", timeout=10, poll_s=0)
    assert item["status"] == "SUCCEEDED"
    lines = out.getvalue().splitlines()
    completed = next(i for i, line in enumerate(lines) if "Completed" in line and "val_acc 74.50 %" in line)
    assert completed < next(i for i, line in enumerate(lines) if "run-1: EVALUATING" in line)
    assert completed < next(i for i, line in enumerate(lines) if "run-1: SUCCEEDED" in line)
    assert sum("val_acc 74.50 %" in line for line in lines) == 1


class RunsWithOutbox:
    """A run that ends SUCCEEDED with its message unsent, then sent ``sent_after`` reads later (never when None)."""

    def __init__(self, sent_after: int | None) -> None:
        self.sent_after = sent_after
        self.calls = 0

    def get(self, run_id: str) -> dict:
        self.calls += 1
        sent = self.sent_after is not None and self.calls > self.sent_after
        entry = {"status": "SUCCEEDED", "created_at": "2026-12-04T21:03:05Z", **({"sent_at": "later"} if sent else {})}
        return {"status": "SUCCEEDED", "outbox": {"SUCCEEDED": entry}}


def test_an_ended_run_is_shown_once_its_outcome_message_is_sent_or_after_a_short_wait() -> None:
    from reviewtune.console.follow import wait_for_run

    progress, _ = _progress(FakeSageMaker())
    runs = RunsWithOutbox(sent_after=3)
    item = wait_for_run(progress.console, runs, progress, "run-1", timeout=10, poll_s=0)
    assert item["outbox"]["SUCCEEDED"]["sent_at"] == "later" and runs.calls == 4
    never = RunsWithOutbox(sent_after=None)
    item = wait_for_run(progress.console, never, progress, "run-1", timeout=10, poll_s=0.01, message_wait_s=0.05)
    assert "sent_at" not in item["outbox"]["SUCCEEDED"] and never.calls > 1  # shown as it is: the reconciler sends it


def test_the_local_run_reads_a_trial_s_log(tmp_path) -> None:
    from types import SimpleNamespace

    from reviewtune.cli import _log_latest

    latest = _log_latest(SimpleNamespace(workdir=tmp_path))
    assert latest("run-1-001-aaaaaaaa") == (0, None)  # no log yet
    log = tmp_path / "sagemaker" / "training" / "run-1-001-aaaaaaaa" / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_text("train_rows: 5537 - validation_rows: 308\nstep: 20/346 - loss: 1.0945\nepoch: 1\ntrain_loss: 0.7216\n")
    assert latest("run-1-001-aaaaaaaa") == (0, None)  # an epoch trained, not yet validated
    log.write_text(log.read_text() + "val_loss: 0.6836 - val_acc: 70.45\nepoch: 2\nval_loss: 0.5890 - val_acc: 73.05\n")
    assert latest("run-1-001-aaaaaaaa") == (2, 73.05)


def test_every_trial_is_followed_past_the_first_page_of_100() -> None:
    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker)
    for index in range(1, 131):
        sagemaker.set(f"run-1-{index:03d}-aaaaaaaa", "InProgress")
    progress.poll()
    assert len(progress.seen) == 130
    assert "trial 130-aaaaaaaa  InProgress" in out.getvalue()


def test_markup_in_a_hyperparameter_is_printed_as_written() -> None:
    sagemaker = FakeSageMaker()
    progress, out = _progress(sagemaker)
    sagemaker.set("run-1-001-aaaaaaaa", "InProgress")
    sagemaker.trials["run-1-001-aaaaaaaa"]["TunedHyperParameters"] = {"pooling": "[/mean]"}
    progress.poll()
    assert "pooling=[/mean]" in out.getvalue()
