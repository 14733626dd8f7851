"""Text from runs shown in a terminal: never rich markup, control characters escaped, times in UTC, and the run views
readable in a normal terminal (ids whole, the facts that explain a run's status shown)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

from rich.console import Console

from reviewtune.console import views
from reviewtune.console.text import plain, safe, utc_time


def rendered(renderable, width: int = 250) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def test_control_characters_are_escaped_and_the_rest_kept():
    assert safe("team-a/reviews.tsv") == "team-a/reviews.tsv"
    assert safe("a\x1b[2Jb\x07c") == "a\\x1b[2Jb\\x07c"
    assert safe("\u202eevil.tsv") == "\\u202eevil.tsv"
    assert safe("line 1\nline 2\tend") == "line 1\nline 2 end"
    assert safe("crème brûlée 👩‍👩‍👧 日本") == "crème brûlée 👩‍👩‍👧 日本"  # the joiner in the emoji stays
    assert safe(42) == "42"


def test_markup_in_a_value_is_shown_as_written():
    assert rendered(plain("row 3: [/quote] and [bold]x[/bold]")).strip() == "row 3: [/quote] and [bold]x[/bold]"


def test_times_are_shown_in_utc_whatever_the_machine_zone():
    new_york = timezone(timedelta(hours=-5))
    assert utc_time(datetime(2026, 11, 1, 5, 25, 6, tzinfo=new_york)) == "2026-11-01 10:25:06"
    assert utc_time(datetime(2026, 11, 1, 10, 25, 6, tzinfo=UTC)) == "2026-11-01 10:25:06"
    assert utc_time("2026-11-01T10:25:06.123Z") == "2026-11-01 10:25:06"
    assert utc_time("2026-11-01T10:25:06.123456+00:00") == "2026-11-01 10:25:06"
    assert utc_time(None) == "-" and utc_time("") == "-"
    assert utc_time("yesterday\x1b") == "yesterday\\x1b"


RUN_ID = "reviewtune-743421da1a7ccce9"


def test_runs_table_keeps_ids_and_numbers_whole_in_an_80_column_terminal():
    item = {"run_id": RUN_ID, "created_at": "2026-11-01T10:25:06.000Z", "status": "SUCCEEDED",
            "dataset": "team-a/reviews-of-the-whole-month-of-november.tsv",
            "data": {"summary": {"rows": {"train": 11080, "validation": 600, "test": 600}}},
            "tuning": {"best_training_job": {"objective": 58.33}}, "metrics": {"accuracy": {"value": 0.6167}}}
    text = rendered(views.runs_table([item], "Runs"), width=80)
    for whole in (RUN_ID, "SUCCEEDED", "58.33", "61.67"):
        assert whole in text, (whole, text)
    assert "…" not in text  # the dataset and the date wrap instead
    text = rendered(views.runs_table([item], "Runs"), width=100)
    for whole in (RUN_ID, "SUCCEEDED", "2026-11-01", "10:25:06", "11,080/600", "58.33", "61.67"):
        assert whole in text, (whole, text)


def test_trials_table_keeps_the_training_job_name_whole_and_times_in_utc():
    start = datetime(2026, 11, 1, 5, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    rows = [{"learning_rate": 4.3e-05, "train_batch_size": 16.0, "TrainingJobName": f"{RUN_ID}-003-2fbb4d4d",
             "TrainingJobStatus": "Completed", "FinalObjectiveValue": 58.33, "TrainingStartTime": start,
             "TrainingEndTime": start + timedelta(seconds=72), "TrainingElapsedTimeSeconds": 72.0, "Epochs": 2,
             "EarlyStopped": False}]
    text = rendered(views.trials_table(rows, f"Trials of {RUN_ID}"), width=100)
    assert f"{RUN_ID}-003-2fbb4d4d" in text and "Completed" in text and "…" not in text
    text = rendered(views.trials_table(rows, f"Trials of {RUN_ID}"), width=200)
    assert "2026-11-01 10:00:00" in text and "2026-11-01 10:01:12" in text and "05:00:00" not in text


def test_trials_table_says_when_a_time_limit_cut_a_trial_s_steps():
    row = {"TrainingJobName": f"{RUN_ID}-001-aaaaaaaa", "TrainingJobStatus": "Completed", "FinalObjectiveValue": 71.66,
           "Epochs": 2, "EarlyStopped": False}
    cut = rendered(views.trials_table([{**row, "PlannedStepsPct": 81.3}], "Trials"), width=200)
    assert "2 (81 % of steps)" in cut
    for share in (100.0, None):  # the whole plan trained, or no figure printed: the epochs alone
        whole = rendered(views.trials_table([{**row, "PlannedStepsPct": share}], "Trials"), width=200)
        assert "% of steps" not in whole and " 2 " in whole


def test_show_explains_a_run_that_is_waiting_duplicated_or_has_its_trials_in_s3():
    queued = {"run_id": RUN_ID, "status": "QUEUED", "dataset": "a.tsv", "created_at": "2026-11-01T10:00:00Z",
              "deadline_at": "2026-11-03T10:00:00Z",
              "status_history": {"CLAIMED": "2026-11-01T10:00:00Z", "QUEUED": "2026-11-01T10:00:01Z"}}
    text = rendered(views.run_view(queued))
    assert "2026-11-03 10:00:00 at the latest: the reconciler ends a run still QUEUED then" in text
    assert "file accepted (CLAIMED)" in text and "waiting for a free slot (QUEUED)" in text
    assert "Artifacts" not in text  # nothing to list yet

    duplicate = {"run_id": RUN_ID, "status": "DUPLICATE", "dataset": "a.tsv", "duplicate_of": "reviewtune-aaaa"}
    assert "duplicate of" in (shown := rendered(views.run_view(duplicate))) and "reviewtune-aaaa" in shown

    moved = {"run_id": RUN_ID, "status": "SUCCEEDED", "dataset": "a.tsv",
             "tuning": {"trials": [{"name": "t1"}] * 50, "trials_total": 500,
                        "trials_uri": f"s3://b/runs/{RUN_ID}/evaluation/input/trials.json"}}
    text = rendered(views.run_view(moved))
    assert f"500 (the best 50 kept here; all in s3://b/runs/{RUN_ID}/evaluation/input/trials.json)" in text
    assert "all trials" in text

    rejected = {"run_id": RUN_ID, "status": "REJECTED", "dataset": "team-[bold]x[/bold]/\x1b[31mr.tsv",
                "failure_reason": "row 3: label '[/quote]' is not -1, 0 or 1", "not_copied": "the file is 6 GB",
                "failed_stage": "validation"}
    text = rendered(views.run_view(rejected))
    for expected in ("team-[bold]x[/bold]/\\x1b[31mr.tsv", "label '[/quote]' is not", "no copy kept",
                     "the file is 6 GB", "failed at", "validation"):
        assert expected in text, expected
    assert "\x1b" not in text


def test_show_names_the_model_package_and_an_approval_withdrawn_after_the_run_ended():
    arn = "arn:aws:sagemaker:us-east-1:1:model-package/a/3"
    succeeded = {"run_id": RUN_ID, "status": "SUCCEEDED", "dataset": "a.tsv", "model_package_arn": arn,
                 "registry": {"model_package_arn": arn, "approval": "Approved"}}
    assert f"{arn} (Approved)" in rendered(views.run_view(succeeded))
    ended = {"run_id": RUN_ID, "status": "FAILED", "dataset": "a.tsv", "model_package_arn": arn,
             "failure_reason": "the run stayed EVALUATING longer than its deadline",
             "status_history": {"EVALUATING": "2026-11-01T10:00:00Z", "FAILED": "2026-11-01T13:00:00Z"}}
    assert "the reconciler is putting it back to PendingManualApproval" in rendered(views.run_view(ended))
    settled = rendered(views.run_view({**ended, "approval_settled_at": "2026-11-01T13:15:00Z"}))
    assert "then withdrawn: the run did not succeed" in settled
    assert "2026-11-01 13:15:00" in settled and "package approval withdrawn for good" in settled
    refused = {"run_id": RUN_ID, "status": "SUCCEEDED", "dataset": "a.tsv",
               "registry": {"error": "AccessDeniedException: not authorized to CreateModelPackage"}}
    assert "not registered: AccessDeniedException: not authorized" in rendered(views.run_view(refused))
    assert "model package" not in rendered(views.run_view({"run_id": RUN_ID, "status": "QUEUED", "dataset": "a.tsv"}))
