"""Text from runs shown in a terminal: never rich markup, control characters escaped, times in UTC, and the run views
readable in a normal terminal (ids whole, the facts that explain a run's status shown)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from rich.console import Console

from reviewtune.console import audit, views
from reviewtune.console.text import plain, safe, utc_time


def rendered(renderable, width: int = 250) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def test_control_characters_are_escaped_and_the_rest_kept():
    assert safe("team-a/reviews.tsv") == "team-a/reviews.tsv"
    assert safe("a\x1b[2Jb\x07c") == "a\\x1b[2Jb\\x07c"
    assert safe("\u202eevil.tsv") == "\\u202eevil.tsv"
    assert safe("line 1\nline 2\tend") == "line 1\nline 2\\x09end"  # a tab is not a space: two names would read alike
    assert safe("reviews\u200b.tsv\ufeff") == "reviews\\u200b.tsv\\ufeff"  # drawn as nothing: would read as reviews.tsv
    assert safe("reviews\u3164.tsv") == "reviews\\u3164.tsv"  # a letter drawn as nothing (printable to Python)
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
    for whole in (RUN_ID, "SUCCEEDED", "58.33", "61.67", "2026-11-01", "10:25:06", "11,080 /", "600 / 600"):
        assert whole in text, (whole, text)
    assert "…" not in text  # the dataset and the date wrap instead
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    run_line = next(line for line in text.splitlines() if RUN_ID in line)
    under = text.splitlines()[text.splitlines().index(run_line) + 1]
    assert under.startswith("team-a/reviews-of-the-whole")  # the dataset under its run's id
    text = rendered(views.runs_table([item], "Runs"), width=250)  # the wide form, where it fits with nothing folded
    for whole in (RUN_ID, "SUCCEEDED", "2026-11-01 10:25:06", "11,080/600/600", "58.33", "61.67", item["dataset"]):
        assert whole in text, (whole, text)
    assert "│" in text


@pytest.mark.parametrize("width", [80, 100, 120, 140])
def test_tables_keep_ids_times_and_counts_whole_at_every_width(width):
    """The wide form only where nothing in it folds; else the narrow one (whose times are a date over a time)."""
    item = {"run_id": RUN_ID, "created_at": "2026-11-01T10:25:06.000Z", "status": "TUNING",
            "stop_request": {"at": "2026-11-01T11:00:00Z", "deadline": True}, "dataset": "team-a/reviews.tsv",
            "data": {"summary": {"rows": {"train": 1108000, "validation": 60000, "test": 60000}}}}
    text = rendered(views.runs_table([item], "Runs"), width=width)
    for whole in (RUN_ID, "2026-11-01", "10:25:06", "1,108,000", "60,000"):
        assert whole in text, (width, whole, text)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    row = {"written": "2026-11-01T10:25:06.000Z", "key": "incoming/team-a/reviews.tsv", "version_id": "3HL4kqtJlc",
           "run_id": RUN_ID, "status": "SUCCEEDED", "message_sent_at": "2026-11-01T10:52:40.000Z", "message_id": "m",
           "message_recorded_at": None, "problem": None}
    text = rendered(audit.table([row], "Audit"), width=width)
    for whole in (RUN_ID, "SUCCEEDED", "2026-11-01", "10:52:40"):
        assert whole in text, (width, whole, text)


def test_trials_table_names_each_trial_by_its_number_and_suffix_whole():
    start = datetime(2026, 11, 1, 5, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    rows = [{"learning_rate": 4.3e-05, "train_batch_size": 16.0, "TrainingJobName": f"{RUN_ID}-003-2fbb4d4d",
             "TrainingJobStatus": "Completed", "FinalObjectiveValue": 58.33, "TrainingStartTime": start,
             "TrainingEndTime": start + timedelta(seconds=72), "TrainingElapsedTimeSeconds": 72.0, "Epochs": 2,
             "EarlyStopped": False}]
    text = rendered(views.trials_table(rows, f"Trials of {RUN_ID}"), width=80)
    assert "003-2fbb4d4d" in text and "Completed" in text and " 72 " in text and "…" not in text
    assert views.trials_table([{**rows[0], "TrainingJobName": "not-a-trial"}], "t").wide.row_count == 1


def test_trials_table_says_when_a_time_limit_cut_a_trial_s_steps():
    row = {"TrainingJobName": f"{RUN_ID}-001-aaaaaaaa", "TrainingJobStatus": "Completed", "FinalObjectiveValue": 71.66,
           "Epochs": 2, "EarlyStopped": False}
    cut = rendered(views.trials_table([{**row, "PlannedStepsPct": 81.3}], "Trials"), width=200)
    assert "2 (81 % of steps)" in cut
    assert "2 (99 % of steps)" in rendered(views.trials_table([{**row, "PlannedStepsPct": 99.6}], "Trials"), width=200)
    for share in (100.0, None):  # the whole plan trained, or no figure printed: the epochs alone
        whole = rendered(views.trials_table([{**row, "PlannedStepsPct": share}], "Trials"), width=200)
        assert "% of steps" not in whole and " 2 " in whole


def test_show_says_a_claim_no_restart_has_tried_waits_for_one_past_its_deadline():
    claim = {"run_id": RUN_ID, "status": "CLAIMED", "dataset": "a.tsv", "created_at": "2026-11-01T10:00:00Z",
             "deadline_at": "2026-11-01T11:00:00Z", "found_by_sweep": "2026-11-01T10:00:00Z"}
    waiting = " ".join(rendered(views.run_view(claim)).split())
    assert ("2026-11-01 11:00:00 at the latest: the reconciler ends a run still CLAIMED then, or up to 6 h later "
            "while no restart has reached it (the reconciler starts it over first)") in waiting
    for tried in ({"restarts": 1}, {"data": {"train": "s3://b/k"}}):
        assert "no restart has reached it" not in " ".join(rendered(views.run_view({**claim, **tried})).split())


def test_show_explains_a_run_that_is_waiting_duplicated_or_has_its_trials_in_s3():
    queued = {"run_id": RUN_ID, "status": "QUEUED", "dataset": "a.tsv", "created_at": "2026-11-01T10:00:00Z",
              "deadline_at": "2026-11-03T10:00:00Z",
              "status_history": {"CLAIMED": "2026-11-01T10:00:00Z", "QUEUED": "2026-11-01T10:00:01Z"}}
    text = rendered(views.run_view(queued))
    assert "2026-11-03 10:00:00 at the latest: the reconciler ends a run still QUEUED then (moved on while another " \
           "run holding a slot is tuning or evaluating; for a run holding one, only past its start's next try)" \
           in " ".join(text.split())
    assert "tuning job start" not in text
    throttled = rendered(views.run_view({**queued, "tuning_start": {
        "attempts": 2, "last_error": "ThrottlingException: slow down", "next_attempt_at": "2026-11-02T10:02:00Z"}}))
    assert "refused 2 time(s), last: ThrottlingException: slow down; next try 2026-11-02 10:02:00" in throttled
    assert "file received (CLAIMED)" in text and "waiting for a free slot (QUEUED)" in text
    assert "Artifacts" not in text  # nothing to list yet
    assert "waited in the queue for" not in text
    waited = rendered(views.run_view({**queued, "queue_waited_for": ["reviewtune-aaaa", "reviewtune-bbbb"]}))
    assert "last waited in the queue for" in waited and "reviewtune-aaaa, reviewtune-bbbb" in waited
    stopping = rendered(views.run_view({**queued, "stop_request": {"by": "arn:aws:iam::1:user/ops", "at": "x"}}))
    assert "ends a run still QUEUED then" in stopping and "moved on while" not in stopping
    tuning = rendered(views.run_view({**queued, "status": "TUNING"}))
    assert "ends a run still TUNING then" in tuning and "moved on while" not in tuning

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


def test_the_trials_table_fits_80_columns_with_every_number_whole_and_says_why_a_trial_failed():
    from datetime import UTC, datetime

    from rich.console import Console

    from reviewtune.console.views import trials_table

    started = datetime(2026, 12, 4, 17, 25, 31, tzinfo=UTC)
    rows = [{"learning_rate": 8.456599215715445e-05, "train_batch_size": 16.0,
             "TrainingJobName": f"reviewtune-9fa35229a5b483da-00{i}-1e7ae0c{i}",
             "TrainingJobStatus": "Failed" if i == 3 else "Completed", "FinalObjectiveValue": None if i == 3 else 58.33,
             "TrainingStartTime": started, "TrainingElapsedTimeSeconds": 1234.0, "Epochs": 2, "PlannedStepsPct": 81.0,
             "EarlyStopped": i == 2, **({"FailureReason": "AlgorithmError: [bold]CUDA out of memory, exit code: 1"}
                                        if i == 3 else {})} for i in (1, 2, 3)]
    console = Console(width=80, record=True)
    console.print(trials_table(rows, "Trials of reviewtune-9fa35229a5b483da"))
    lines = console.export_text().splitlines()

    assert max(len(line.rstrip()) for line in lines) <= 80
    body = "\n".join(lines)
    for whole in ("8.46e-05", "001-1e7ae0c1", "Completed", "58.33", "1234", "003-1e7ae0c3", "Failed"):
        assert whole in body, whole
    wide = rendered(trials_table(rows, "Trials"), width=160)
    assert "2 (81 % of steps), stopped early" in wide and "2 (81 % of steps) " in wide
    # under the table, as the trial's own words (markup in them shown, not applied)
    assert "003-1e7ae0c3 failed: AlgorithmError: [bold]CUDA out of memory" in " ".join(body.split())


def test_show_says_how_long_the_run_took_and_its_estimated_cost():
    ended = {"run_id": RUN_ID, "status": "SUCCEEDED", "dataset": "a.tsv", "created_at": "2026-11-01T10:00:00Z",
             "status_history": {"CLAIMED": "2026-11-01T10:00:00Z", "SUCCEEDED": "2026-11-01T10:07:48Z"},
             "tuning": {"total_billable_seconds": 855, "cost": {"total": 0.0273, "currency": "USD",
                                                                 "region": "us-east-1", "prices_as_of": "2026-11-30"}}}
    text = " ".join(rendered(views.run_view(ended), width=160).split())
    assert "took 7 min 48 s" in text
    assert "estimated cost US$ 0.03 (on-demand prices us-east-1 of 2026-11-30; an estimate)" in text
    evaluated = {**ended, "results": {"evaluation_cost": {"seconds": 387, "cost": Decimal("0.0247")}}}
    text = " ".join(rendered(views.run_view(evaluated), width=160).split())
    assert "estimated cost US$ 0.05 (on-demand prices" in text  # the trials' and the evaluation job's
    # created 2 h 5 min ago: a whole number of hours ago would show no minutes ("2 h so far")
    created = (datetime.now(UTC) - timedelta(hours=2, minutes=5)).isoformat()
    going = {**ended, "status": "TUNING", "created_at": created, "tuning": {}}
    text = " ".join(rendered(views.run_view(going), width=160).split())
    assert " h " in text and "min so far" in text and "estimated cost" not in text


def test_an_ended_run_recorded_without_when_it_ended_took_until_its_last_update_never_so_far():
    old = {"run_id": RUN_ID, "status": "SUCCEEDED", "created_at": "2026-11-01T10:00:00Z",
           "updated_at": "2026-11-01T10:31:00Z"}  # an item older than status_history
    assert views.took(old) == "31 min"
    assert views.took({**old, "status_history": {"CLAIMED": "2026-11-01T10:00:00Z"}}) == "31 min"
    assert views.took({key: value for key, value in old.items() if key != "updated_at"}) is None
    assert views.took({**old, "status": "TUNING"}).endswith(" so far")


@pytest.mark.parametrize(("status", "label"), [("FAILED", "failure reason"), ("STOPPED", "stop reason"),
                                                ("REJECTED", "rejection reason")])
def test_show_names_the_reason_by_what_ended_the_run(status, label):
    item = {"run_id": RUN_ID, "status": status, "dataset": "a.tsv", "created_at": "2026-11-01T10:00:00Z",
            "failure_reason": "why it ended"}
    text = " ".join(rendered(views.run_view(item), width=160).split())
    assert f"{label} why it ended" in text


def test_the_timeline_is_in_time_order_within_the_second_it_shows():
    """The tuning job ended at .310 and the evaluation began at .917 of the same second: the end comes first."""
    item = {"run_id": RUN_ID, "status": "SUCCEEDED", "dataset": "a.tsv",
            "status_history": {"CLAIMED": "2026-12-04T22:46:48.776Z", "TUNING": "2026-12-04T22:46:49.045Z",
                               "EVALUATING": "2026-12-04T22:49:34.917Z", "SUCCEEDED": "2026-12-04T22:50:15.583Z"},
            "tuning": {"status": "Completed", "ended_at": "2026-12-04T22:49:34.310166+00:00"}}
    lines = [line for line in rendered(views.run_view(item)).splitlines() if "2026-12-04 22:" in line]
    assert [line.split("│")[2].strip() for line in lines] == [
        "file received (CLAIMED)", "tuning job started (TUNING)", "tuning job Completed",
        "evaluation job started (EVALUATING)", "ended SUCCEEDED"]


def test_audit_keeps_run_ids_and_statuses_whole_in_an_80_column_terminal():
    row = {"written": "2026-11-01T10:25:06.000Z", "key": "incoming/team-a/reviews-of-the-whole-month.tsv",
           "version_id": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", "run_id": RUN_ID, "status": "SUCCEEDED",
           "message_sent_at": "2026-11-01T10:52:40.000Z", "message_id": "m", "message_recorded_at": None,
           "problem": None}
    text = rendered(audit.table([row], "Audit"), width=80)
    for whole in (RUN_ID, "SUCCEEDED", "2026-11-01", "10:25:06", "10:52:40"):
        assert whole in text, (whole, text)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    wide = rendered(audit.table([row], "Audit"), width=250)
    assert "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY" in wide and "│ SUCCEEDED │" in wide


def test_champion_tables_keep_run_ids_statuses_and_times_whole_in_an_80_column_terminal():
    champion = {"dataset": "team-a/reviews.tsv", "run_id": RUN_ID, "accuracy": 0.74, "test_rows": 308,
                "changed_at": "2026-11-01T10:52:40Z",
                "history": [{"at": "2026-11-01T10:52:40Z", "run_id": RUN_ID, "accuracy": 0.74,
                             "why": "first champion: challenger 74.00 % on 308 test reviews"}],
                "decisions": [{"run_id": RUN_ID, "created_at": "2026-11-01T10:25:06Z", "status": "SUCCEEDED",
                               "test_accuracy": 0.74, "decision": "champion",
                               "reason": "first champion: challenger 74.00 % on 308 test reviews"}]}
    text = rendered(views.champion_view(champion), width=80)
    for whole in (RUN_ID, "SUCCEEDED", "2026-11-01", "10:25:06", "10:52:40", "74.00"):
        assert whole in text, (whole, text)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80


def test_a_champion_view_names_former_champions_whose_approval_is_still_settling():
    champion = {"dataset": "team-a/reviews.tsv", "run_id": RUN_ID, "accuracy": 0.74, "test_rows": 308,
                "changed_at": "2026-11-01T10:52:40Z", "history": [], "decisions": []}
    assert "approval settling" not in rendered(views.champion_view(champion))
    former = "reviewtune-0123456789abcdef"
    replaced = {**champion, "model_package_arn": "arn:p/2", "dethroned": {former: {"model_package_arn": "arn:p/1"}}}
    text = rendered(views.champion_view(replaced), width=400)
    assert f"approval settling  {former}: replaced" in text
    assert "kept as it is" not in text and "approval refused" not in text
    # a champion with no package, or one SageMaker refuses to approve: the one before keeps its approval
    for waiting in ({**replaced, "model_package_arn": None},
                    {**replaced, "approval_refused_since": "2026-11-02T08:00:00+00:00"}):
        text = rendered(views.champion_view(waiting), width=400)
        assert "; kept as it is until the champion's package is Approved" in text
        assert ("approval refused   SageMaker has refused to approve the champion's package since 2026-11-02 08:00:00"
                in text) is bool(waiting.get("approval_refused_since"))
    alone = {**replaced, "dethroned": {}, "approval_refused_since": "2026-11-02T08:00:00+00:00"}
    assert "package since 2026-11-02 08:00:00; no package of the dataset is Approved" in rendered(
        views.champion_view(alone), width=400)
    assert "; the packages before it keep their approval" in rendered(views.champion_view(waiting), width=400)


def test_a_champion_view_says_a_person_rejected_its_package_and_what_happens_next():
    champion = {"dataset": "team-a/reviews.tsv", "run_id": RUN_ID, "accuracy": 0.74, "test_rows": 308,
                "changed_at": "2026-11-01T10:52:40Z", "history": [], "decisions": [], "model_package_arn": "arn:p/2"}
    assert "package rejected" not in rendered(views.champion_view(champion), width=400)
    rejected = {**champion, "package_rejected": {"found_at": "2026-11-03T09:00:00Z", "description": "bias audit"}}

    text = rendered(views.champion_view(rejected), width=400)

    assert ('package rejected  Rejected in the Model Registry ("bias audit"), found 2026-11-03 09:00:00: not approved '
            "again; the next run of the dataset that succeeds (better than answering one class) takes its place (or "
            "`reviewtune promote RUN_ID` now); "
            "no package of the dataset is Approved") in text
    deleted = {**champion, "package_rejected": {"found_at": "2026-11-03T09:00:00Z", "deleted": True}}
    assert ("package deleted  Deleted from the Model Registry, found 2026-11-03 09:00:00: not approved again; the "
            "next run") in rendered(views.champion_view(deleted), width=400)
    settling = {**rejected, "dethroned": {"reviewtune-0123456789abcdef": {"model_package_arn": "arn:p/1"}}}
    text = rendered(views.champion_view(settling), width=400)
    assert "the packages before it keep their approval" in text
    assert "; kept as it is until the champion's package is Approved" in text


def test_the_champions_table_marks_a_champion_whose_package_a_person_rejected():
    champion = {"dataset": "team-a/reviews.tsv", "run_id": RUN_ID, "accuracy": 0.74, "test_rows": 308,
                "changed_at": "2026-11-01T10:52:40Z", "version": 2, "model_package_arn": "arn:p/2"}
    rejected = {**champion, "dataset": "team-b/reviews.tsv", "package_rejected": {"found_at": "2026-11-03T09:00:00Z"}}
    deleted = {**champion, "dataset": "team-c/reviews.tsv",
               "package_rejected": {"found_at": "2026-11-03T09:00:00Z", "deleted": True}}

    lines = rendered(views.champions_table([champion, rejected, deleted], "Champions"), width=400).splitlines()

    assert [("(Rejected)" in line, "(deleted)" in line) for line in lines if "reviews.tsv" in line] == [
        (False, False), (True, False), (False, True)]


ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/reviewtune-team-a-reviews-tsv-1f8f92d0e4/1"


def test_the_champions_table_in_80_columns_keeps_each_dataset_id_and_time_whole():
    champion = {"dataset": "team-a/reviews.tsv", "run_id": RUN_ID, "accuracy": 0.74, "test_rows": 308,
                "changed_at": "2026-11-01T10:52:40Z", "version": 3, "model_package_arn": ARN}

    text = rendered(views.champions_table([champion], "Champions by dataset (stack reviewtune (us-east-1))"), width=80)

    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines) and "┃" not in text  # the narrow form: no borders
    for whole in ("team-a/reviews.tsv", RUN_ID, "2026-11-01", "10:52:40", "74.00", "308"):
        assert any(whole in line for line in lines), whole
    assert "".join(line.strip() for line in lines).count(ARN) == 1  # folded under the dataset, all of it
    wide = rendered(views.champions_table([champion], "Champions"), width=250)
    assert ARN in wide and "┃ dataset" in wide


def test_tables_in_a_terminal_too_narrow_for_their_narrow_form_become_records_and_lose_nothing():
    """A 60-column pane: the narrow form needs about 77; rich would drop a column or cut numbers ("75…")."""
    item = {"run_id": RUN_ID, "created_at": "2026-11-01T10:25:06.000Z", "status": "SUCCEEDED",
            "dataset": "team-a/reviews.tsv", "data": {"summary": {"rows": {"train": 1080, "validation": 60, "test": 60}}},
            "tuning": {"best_training_job": {"objective": 75.0}}, "metrics": {"accuracy": {"value": 0.6667}}}

    text = rendered(views.runs_table([item, {**item, "status": "FAILED"}], "Runs, newest first"), width=60)

    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "Runs, newest first" and "…" not in text and all(len(line) <= 60 for line in lines)
    assert [line for line in lines if line.startswith(("run ", "status ", "rows ", "val %", "test %"))] == [
        f"run                 {RUN_ID}", "status              SUCCEEDED", "rows train/val/test 1,080/60/60",
        "val %               75.00", "test %              66.67",
        f"run                 {RUN_ID}", "status              FAILED", "rows train/val/test 1,080/60/60",
        "val %               75.00", "test %              66.67"]


def test_the_trials_table_of_three_tuned_settings_in_80_columns_loses_no_column():
    rows = [{"learning_rate": 8.46e-05, "train_batch_size": 128.0, "weight_decay": 0.01,
             "TrainingJobName": f"{RUN_ID}-00{n}-ae6e8b97", "TrainingJobStatus": "Completed",
             "FinalObjectiveValue": 75.0, "TrainingElapsedTimeSeconds": 1650.0, "Epochs": 2, "PlannedStepsPct": 81.0,
             "EarlyStopped": True} for n in (1, 2)]
    rows[1]["FailureReason"] = "AlgorithmError: out of memory"

    text = rendered(views.trials_table(rows, f"Trials of {RUN_ID}"), width=80)

    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert text.count("epochs           2 (81 % of steps), stopped early") == 2
    assert text.count("weight decay     0.01") == 2 and "002-ae6e8b97 failed: AlgorithmError: out of memory" in text
    two = [{key: value for key, value in row.items() if key != "weight_decay"} for row in rows]
    assert "┃ trial" in rendered(views.trials_table(two, "Trials"), width=80)  # the template's two: the table itself


def test_the_audit_table_keeps_its_narrow_form_in_80_columns_with_a_long_version_id():
    """A long word (an S3 version id) folds in the narrow form's free-text column; only a terminal narrower than the
    narrow form's fixed columns (ids, times) gets records."""
    from datetime import UTC, datetime

    from reviewtune.console import audit

    row = {"key": "incoming/team-a/reviews.tsv", "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
           "written": datetime(2026, 12, 6, 8, tzinfo=UTC), "size": 10, "dataset": "team-a/reviews.tsv",
           "run_id": RUN_ID, "status": "SUCCEEDED", "message_recorded_at": None,
           "message_sent_at": "2026-12-06T08:30:00Z", "message_id": "x", "problem": None}

    narrow = rendered(audit.table([row], "Files"), width=80)
    assert "run / status" in narrow and f"{RUN_ID}  2026-12-06" in narrow
    records = rendered(audit.table([row], "Files"), width=60)
    assert "version       3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY" in records and f"run           {RUN_ID}" in records


@pytest.mark.parametrize("prefix", ["reviewtune", "abcdefghijkl"])  # the default, and JobNamePrefix's longest
def test_the_narrow_form_from_its_least_width_up_keeps_every_count_whole_for_any_run_id(prefix):
    from reviewtune.console.text import NARROW_FORM_COLUMNS

    item = {"run_id": f"{prefix}-743421da1a7ccce9", "created_at": "2026-11-01T10:25:06.000Z", "status": "SUCCEEDED",
            "dataset": "team-a/reviews.tsv",
            "data": {"summary": {"rows": {"train": 900000, "validation": 50000, "test": 50000}}},
            "tuning": {"best_training_job": {"objective": 91.23}}, "metrics": {"accuracy": {"value": 0.9123}}}

    text = rendered(views.runs_table([item], "Runs"), width=NARROW_FORM_COLUMNS)

    assert "─" in text and f"{prefix}-743421da1a7ccce9" in text  # the narrow form (records have no rule), id whole
    assert "900,000" in text and "50,000" in text and "91.23" in text


@pytest.mark.parametrize(("champion", "promoted", "now", "expected"), [
    ({"decision": "first champion", "champion_run_id": "r1"}, False, "r1", "first champion (champion now)"),
    ({"decision": "first champion", "champion_run_id": "r1"}, False, "r2", "first champion (since replaced)"),
    ({"decision": "kept", "champion_run_id": "r0"}, True, "r1", "kept (promoted by hand, champion now)"),
    ({"decision": "not compared", "champion_run_id": "r0"}, True, "r2", "not compared (promoted by hand, since replaced)"),
    ({"decision": "kept", "champion_run_id": "r0"}, False, "r0", "kept"),  # never champion: nothing changed for it
    (None, False, None, "-"),
])
def test_a_run_s_champion_decision_says_what_changed_since(champion, promoted, now, expected):
    item = {"run_id": "r1", **({"champion": champion} if champion else {}),
            **({"promoted": {"by": "ops", "reason": "newer data"}} if promoted else {})}

    assert views.item_decision(item, now) == expected


def test_the_champion_s_decisions_table_says_which_run_was_promoted_and_is_champion_now():
    champion = {"run_id": "r2", "decisions": [
        {"run_id": "r2", "status": "SUCCEEDED", "decision": "kept", "champion_run_id": "r1", "promoted": True},
        {"run_id": "r1", "status": "SUCCEEDED", "decision": "first champion", "champion_run_id": "r1"}]}

    text = rendered(views._champion_decisions(champion, narrow=True))

    assert "promoted by hand, champion now" in " ".join(text.split()) and "since replaced" in text


@pytest.mark.parametrize(("count", "expected"), [(Decimal(1), "Random, 1 trial, 1 at a time, 1 epoch,"),
                                                 (Decimal(2), "Random, 2 trials, 1 at a time, 2 epochs,")])
def test_a_run_s_search_says_trials_and_epochs_in_the_right_number(count, expected):
    item = {"run_id": "r1", "status": "TUNING", "config": {"strategy": "Random", "max_jobs": count,
                                                           "max_parallel_jobs": Decimal(1), "epochs": count}}

    assert expected in " ".join(rendered(views.run_view(item)).split())


def test_a_run_without_a_tuning_job_shows_no_rows_only_a_tuned_run_fills():
    rejected = {"run_id": "r1", "status": "REJECTED", "failure_reason": "line 3: no label"}
    tuned = {"run_id": "r2", "status": "TUNING", "tuning": {"best_training_job": {"name": "r2-001"}}}

    shown, other = (" ".join(rendered(views.run_view(item)).split()) for item in (rejected, tuned))

    assert "rejection reason line 3: no label" in shown
    assert "best hyperparameters" not in shown and "billable seconds" not in shown and "search" not in shown
    assert "best hyperparameters -" in other and "best trial r2-001" in other
