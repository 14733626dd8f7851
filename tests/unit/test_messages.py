"""Messages never fail on odd values and always fit SNS (body <= 256 KiB with attributes, subject < 100 ASCII)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from reviewtune.core import messages
from reviewtune.core.notify import MESSAGE_MAX_BYTES, SUBJECT_MAX, publish, subject_line

HUGE = "é✓" * 300_000 + "\x00\x07\ud800"
HOSTILE_ITEMS = [
    {},
    {"run_id": None, "dataset": None, "source": None, "data": None, "tuning": None, "config": None},
    {"run_id": "r", "source": "not a mapping", "data": {"summary": {"rows": {"train": "many", "test": None}}}},
    {"run_id": HUGE, "dataset": HUGE, "source": {"bucket": HUGE, "key": HUGE, "version_id": HUGE}},
    {
        "run_id": 12,
        "dataset": "équipe/avis ✓.tsv",
        "data": {"summary": {"rows": {"train": Decimal("10"), "validation": float("nan")}, "leakage_removed": "x"}},
        "tuning": {
            "trials": [{"name": None}, "not a trial", {"name": "t", "status": "Failed", "failure_reason": HUGE}] * 40,
            "best_training_job": {"name": HUGE, "objective": "NaN", "tuned_hyperparameters": {HUGE: HUGE, "lr": None}},
            "status_counters": {"Completed": "three"},
        },
        "results": {"confusion_matrix_uri": HUGE, "evaluation_uri": 7},
    },
]
HOSTILE_EVALUATIONS = [
    {},
    {"metrics": None},
    {"metrics": {"accuracy": {"value": "n/a"}, "macro_f1": {"value": math.inf}}},
    {"metrics": {"accuracy": {"value": float("nan")}, "per_class": {"-1": {"precision": None}, "0": "x", "1": {}}}},
    {"metrics": {"accuracy": {"value": 0.5, "ci95": [HUGE, None]}}},
    {"metrics": {"accuracy": {"value": 0.5, "ci95": [0.9, 0.1, 0.5]}}},
    {"metrics": {"accuracy": {"value": Decimal("0.7412")}, "per_class": {"1": {"precision": "0.5", "recall": 1,
                                                                               "f1": True, "support": "12"}}}},
]


class RecordingSns:
    def __init__(self):
        self.calls: list[dict] = []

    def publish(self, **kwargs):
        self.calls.append(kwargs)
        return {"MessageId": "m"}


def fits_sns(call: dict) -> None:
    subject = call["Subject"]
    assert 0 < len(subject) <= SUBJECT_MAX and all(0x20 <= ord(c) <= 0x7E for c in subject)
    size = len(call["Message"].encode("utf-8")) + sum(
        len(k.encode()) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in call["MessageAttributes"].items()
    )
    assert size <= MESSAGE_MAX_BYTES
    assert all(v["StringValue"] for v in call["MessageAttributes"].values())


@pytest.mark.parametrize("item", HOSTILE_ITEMS)
@pytest.mark.parametrize("evaluation", HOSTILE_EVALUATIONS)
def test_success_message_survives_odd_values_and_fits_sns(item, evaluation):
    subject, body = messages.succeeded(item, evaluation, "runs")
    sns = RecordingSns()
    publish(sns, "arn", subject, body, run_id=item.get("run_id"), status="SUCCEEDED")
    fits_sns(sns.calls[0])


@pytest.mark.parametrize("item", HOSTILE_ITEMS)
@pytest.mark.parametrize("reason", [None, "", HUGE, 42, {"not": "text"}])
def test_failure_and_rejection_messages_survive_odd_values_and_fit_sns(item, reason):
    sns = RecordingSns()
    for subject, body in (
        messages.run_failed(item, "tuning", "FAILED", reason, "runs"),
        messages.run_failed(item, None, None, reason, None),
        messages.rejected(item, reason, None, "runs"),
    ):
        publish(sns, "arn", subject, body, run_id=HUGE, status=None)
    for call in sns.calls:
        fits_sns(call)


def test_success_message_shows_the_numbers_and_the_cleaning():
    item = {
        "run_id": "reviewtune-1",
        "dataset": "team/a.tsv",
        "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
        "config": {"strategy": "Bayesian"},
        "data": {"summary": {"rows": {"train": 270, "validation": 14, "test": 13}, "duplicates_removed": 4,
                             "leakage_removed": 3, "dropped_empty_text": 1, "dropped_by_balancing": 0}},
        "tuning": {"trials": [{}, {}], "status_counters": {"Completed": 2},
                   "best_training_job": {"name": "j", "objective": 71.5, "tuned_hyperparameters": {"lr": "1e-4"}}},
    }
    evaluation = {"metrics": {"accuracy": {"value": 0.7412, "ci95": [0.6903, 0.7863]}, "macro_f1": {"value": 0.73},
                              "per_class": {"1": {"precision": 0.8, "recall": 0.9, "f1": 0.85, "support": 5}}}}
    subject, body = messages.succeeded(item, evaluation, "runs")
    assert subject == "reviewtune: team/a.tsv: test accuracy 74.12 %"
    assert "train 270 / validation 14 / test 13" in body
    assert "duplicates removed 4" in body and "removed from validation/test as also in train (or test ones in validation) 3" in body
    assert "Test accuracy:       74.12 % (95 % CI 69.03-78.63 %)" in body
    assert "Macro F1:            0.730" in body and "positive (1)" in body and "Validation accuracy: 71.50 %" in body


@pytest.mark.parametrize(("shares", "said"), [
    ((Decimal("81.3"), 100.0), "Time limit:          the best trial trained 81 % of its planned steps"),
    ((100.0, 64.0), None),  # another trial was cut, not the best one
    ((None, None), None),  # trials recorded before the figure existed
    (("odd", math.nan), None),
])
def test_success_message_says_when_the_best_trial_was_cut_by_its_time_limit(shares, said):
    trials = [{"name": name, **({} if share is None else {"planned_steps_pct": share})}
              for name, share in zip(("best", "other"), shares, strict=True)]
    item = {"run_id": "r", "tuning": {"trials": trials, "best_training_job": {"name": "best"}}}
    _, body = messages.succeeded(item, {"metrics": {"accuracy": {"value": 0.7}}}, "runs")
    if said:
        assert said in body
    else:
        assert "Time limit" not in body


@pytest.mark.parametrize("ci95", [None, "0.6-0.7", [0.7], [0.8, 0.6], [Decimal("-0.1"), 1], [0.6, math.nan]])
def test_success_message_leaves_out_an_absent_or_odd_interval(ci95):
    evaluation = {"metrics": {"accuracy": {"value": 0.7, "ci95": ci95}}}
    _, body = messages.succeeded({"run_id": "r"}, evaluation, "runs")
    assert "Test accuracy:       70.00 %\n" in body and "95 % CI" not in body


def test_success_message_reads_an_interval_stored_as_decimals():
    evaluation = {"metrics": {"accuracy": {"value": Decimal("0.5"), "ci95": [Decimal("0.3768"), Decimal("0.6232")]}}}
    _, body = messages.succeeded({"run_id": "r"}, evaluation, "runs")
    assert "Test accuracy:       50.00 % (95 % CI 37.68-62.32 %)" in body


def test_long_body_is_cut_on_a_character_boundary_and_says_so():
    sns = RecordingSns()
    publish(sns, "arn", "s" * 500 + "\n✓", "✓" * 200_000, run_id="r", status="FAILED")
    call = sns.calls[0]
    fits_sns(call)
    assert call["Message"].endswith("the full record is in DynamoDB]")
    assert subject_line("a\nb ✓") == "a b ?"


@pytest.mark.parametrize("item", HOSTILE_ITEMS)
@pytest.mark.parametrize(
    "original",
    [None, {}, "not a run", *HOSTILE_ITEMS[1:], {"run_id": HUGE, "status": "SUCCEEDED", "results": {"test_accuracy": HUGE}},
     {"status": "SUCCEEDED", "metrics": {"accuracy": {"value": float("nan")}}, "results": {"evaluation_uri": HUGE}}],
)
def test_duplicate_message_survives_odd_values_and_fits_sns(item, original):
    sns = RecordingSns()
    subject, body = messages.duplicate(item, original, HUGE)
    publish(sns, "arn", subject, body, run_id=item.get("run_id"), status="DUPLICATE")
    fits_sns(sns.calls[0])


def test_duplicate_message_points_to_the_earlier_run_and_its_result():
    item = {"run_id": "reviewtune-2", "dataset": "team/a.tsv", "data": {"summary": {"content_sha256": "ab" * 32}},
            "source": {"bucket": "b", "key": "incoming/team/a.tsv", "version_id": "v2"}}
    succeeded = {"run_id": "reviewtune-1", "status": "SUCCEEDED", "results": {"test_accuracy": 0.7412,
                 "evaluation_uri": "s3://b/runs/reviewtune-1/evaluation/evaluation.json",
                 "report_uri": "s3://b/runs/reviewtune-1/evaluation/report/index.html"},
                 "source": {"bucket": "b", "key": "incoming/team/a.tsv", "version_id": "v1"}}
    subject, body = messages.duplicate(item, succeeded, "runs")
    assert subject == "reviewtune: team/a.tsv: same content as run reviewtune-1"
    assert "s3://b/incoming/team/a.tsv (version v2) starts no run" in body
    assert "reviewtune-1 (SUCCEEDED)" in body and "Its test accuracy:   74.12 %" in body and "ab" * 32 in body
    assert "Its evaluation:      s3://b/runs/reviewtune-1/evaluation/evaluation.json" in body and "(version v1)" in body
    assert "Its HTML report:     s3://b/runs/reviewtune-1/evaluation/report/index.html" in body
    assert '"reviewtune-1"' in body  # the record to read is the earlier run's
    _, body = messages.duplicate(item, {"run_id": "reviewtune-1", "status": "TUNING"}, "runs")
    assert "reviewtune-1 (TUNING)" in body and "accuracy" not in body
    assert "tune this file again with `reviewtune runs retry reviewtune-2 --reason TEXT`" in " ".join(body.split())


@pytest.mark.parametrize(("stage", "trials", "named"), [
    ("tuning", [{"name": "reviewtune-1-001-aaaaaaaa", "status": "Failed", "failure_reason": "AlgorithmError: OOM"}], True),
    ("evaluation", [], True),
    ("tuning", [], False),  # SageMaker refused the tuning job: no job ran, no output to read
    ("queue", None, False),
])
def test_a_failed_run_that_ran_jobs_names_the_command_that_prints_their_output(stage, trials, named):
    item = {"run_id": "reviewtune-1", "dataset": "team/a.tsv", "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
            "tuning": {"trials": trials}}
    _, body = messages.run_failed(item, stage, "FAILED", "AlgorithmError: out of memory", "runs")
    line = "Its jobs' output (each trial, the evaluation): `reviewtune runs logs reviewtune-1`."
    assert (line in body) is named


def test_a_long_trial_failure_keeps_its_end_where_the_job_says_why_it_failed():
    """SageMaker's reason is the log's last lines then the exit code: cut from the middle, never its end."""
    why = ("AlgorithmError: classifier.bias | MISSING\n" + "Notes: train_rows: 1,080\n" * 40
           + "exit code: -9 (killed by SIGKILL: out of memory?)")
    trial = {"name": "reviewtune-1-001-aaaaaaaa", "status": "Failed", "failure_reason": why}
    item = {"run_id": "reviewtune-1", "dataset": "team/a.tsv", "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
            "tuning": {"trials": [trial]}}
    _, body = messages.run_failed(item, "tuning", "FAILED", "the tuning job failed", "runs")
    line = body.split("Trials:\n", 1)[1].split("\n\n", 1)[0]  # the trial's entry, over the lines of its log
    assert line.startswith("  reviewtune-1-001-aaaaaaaa: Failed - AlgorithmError: classifier.bias | MISSING")
    assert line.endswith("exit code: -9 (killed by SIGKILL: out of memory?)") and " ... (shortened) ... " in line
    assert len(line.split(" - ", 1)[1]) == messages.VALUE_MAX_CHARS


def test_every_message_says_how_to_read_the_whole_run():
    item = {"run_id": "reviewtune-1", "dataset": "team/a.tsv", "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
            "status": "TUNING"}
    hint = ("The run: `reviewtune runs show reviewtune-1`. Its record: aws dynamodb get-item --table-name runs --key "
            "'{\"run_id\": {\"S\": \"reviewtune-1\"}}'")
    for _, body in (messages.succeeded(item, {"metrics": {"accuracy": {"value": 0.7}}}, "runs"),
                    messages.run_failed(item, "tuning", "FAILED", "AlgorithmError", "runs"),
                    messages.rejected(item, "bad file", None, "runs"),
                    messages.queued(item, 2, 2, "runs")):
        assert body.splitlines()[-1] == hint
    _, body = messages.duplicate({**item, "run_id": "reviewtune-2"}, item, "runs")
    assert hint in body  # the earlier run's


def test_a_message_names_the_whole_key_however_long():
    key = "incoming/" + "team-a/" * 140 + "reviews-2024-05.tsv"  # 1,008 characters: near S3's 1,024 bytes
    item = {"run_id": "r", "dataset": key.removeprefix("incoming/"), "source": {"bucket": "b", "key": key}}
    _, body = messages.rejected(item, "bad file", None, "runs")
    assert body.splitlines()[0] == f"The review file s3://b/{key} was not used."
    sns = RecordingSns()
    publish(sns, "arn", "s", body, run_id="r", status="REJECTED")
    assert f"s3://b/{key}" in sns.calls[0]["Message"]


def test_a_bidirectional_control_in_a_name_is_sent_as_its_escape():
    """U+202E in a file name would reverse the rest of its line in a mail, naming another file: the message shows
    it as the console and the report do (page.shown_controls); letters of right-to-left scripts stay as they are."""
    key = "incoming/team-a/\u202enaj-weiver.tsv"
    item = {"run_id": "r", "dataset": key.removeprefix("incoming/"), "source": {"bucket": "b", "key": key}}
    subject, body = messages.rejected(item, "bad file: \u2067x\u2069", None, "runs")
    sns = RecordingSns()
    publish(sns, "arn", subject, body + "\nשלום", run_id="r", status="REJECTED")
    [call] = sns.calls
    fits_sns(call)
    assert "\\u202enaj-weiver.tsv" in call["Message"] and "\\u2067x\\u2069" in call["Message"]
    assert not {"\u202e", "\u2067", "\u2069"} & set(call["Message"]) and "שלום" in call["Message"]


def test_a_line_break_or_a_tab_in_a_key_is_sent_as_its_escape_so_the_uri_stays_on_its_line():
    key = "incoming/team-a/new\nline\t.tsv"
    item = {"run_id": "r", "dataset": key.removeprefix("incoming/"), "source": {"bucket": "b", "key": key}}
    _, body = messages.rejected(item, "bad file", None, "runs")
    assert body.splitlines()[0] == "The review file s3://b/incoming/team-a/new\\x0aline\\x09.tsv was not used."


def test_a_subject_is_shorter_than_the_100_characters_sns_refuses():
    assert len(subject_line("x" * 500)) == 99 and subject_line("x" * 99) == "x" * 99


def test_a_message_tells_the_best_trial_s_share_of_its_steps_rounded_down():
    item = {"run_id": "r", "tuning": {"best_training_job": {"name": "r-001-a"},
                                      "trials": [{"name": "r-001-a", "planned_steps_pct": 99.6}]}}
    assert messages._time_limit(item) == ["Time limit:          the best trial trained 99 % of its planned steps "
                                          "(a slower machine than the plan assumed)"]


def test_the_cost_counts_the_evaluation_job_and_says_what_managed_spot_training_saved():
    item = {
        "run_id": "reviewtune-1", "dataset": "team/a.tsv", "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
        "tuning": {"cost": {"currency": "USD", "total": 0.4693, "billable_seconds": 1200, "instance_count": 1,
                            "training_instance_type": "ml.g5.xlarge", "spot_savings": Decimal("1.06"),
                            "region": "us-east-1", "prices_as_of": "2026-11-30", "trials": []}},
        "results": {"evaluation_cost": {"seconds": Decimal("387"), "instance_type": "ml.m5.xlarge",
                                        "instance_count": 1, "cost": Decimal("0.0247"), "currency": "USD"}},
    }
    _, body = messages.succeeded(item, {"metrics": {"accuracy": {"value": 0.74}}}, "runs")

    assert ("Estimated cost:      US$ 0.49 for 1,200 billable seconds on 1 x ml.g5.xlarge and the evaluation job"
            in body)
    assert "evaluation job: 387 s on 1 x ml.m5.xlarge, US$ 0.02" in body
    assert "managed spot training saved US$ 1.06" in body
    assert "on-demand prices us-east-1 of 2026-11-30, an estimate" in body  # the table's date, and what it is

    without = {**item, "results": {}, "tuning": {"cost": {**item["tuning"]["cost"], "spot_savings": None}}}
    _, body = messages.succeeded(without, {"metrics": {"accuracy": {"value": 0.74}}}, "runs")
    assert "Estimated cost:      US$ 0.47 for 1,200 billable seconds on 1 x ml.g5.xlarge\n" in body
    assert "evaluation job:" not in body and "spot" not in body


def test_an_evaluation_job_on_an_instance_type_without_a_price_leaves_the_total_unknown_and_says_why():
    item = {
        "run_id": "reviewtune-1", "dataset": "team/a.tsv", "source": {"bucket": "b", "key": "incoming/team/a.tsv"},
        "tuning": {"cost": {"currency": "USD", "total": 1.0, "billable_seconds": 3600, "instance_count": 1,
                            "training_instance_type": "ml.g5.xlarge", "trials": []}},
        "results": {"evaluation_cost": {"seconds": 300, "instance_type": "ml.c5.4xlarge", "instance_count": 1,
                                        "cost": None, "currency": "USD"}},
    }
    _, body = messages.succeeded(item, {"metrics": {"accuracy": {"value": 0.74}}}, "runs")

    assert "Estimated cost:      unknown for 3,600 billable seconds on 1 x ml.g5.xlarge and the evaluation job" in body
    assert "evaluation job: 300 s on 1 x ml.c5.4xlarge, no price for ml.c5.4xlarge" in body


def test_a_training_instance_type_without_a_price_is_named_and_no_amount_guessed():
    from reviewtune.core.costs import run_cost

    cost = run_cost([{"name": "t-001", "billable_seconds": 600}], training_instance_type="ml.x99.huge")
    item = {"run_id": "reviewtune-1", "tuning": {"cost": {**cost.as_dict(), "currency": "USD"}}}
    _, body = messages.succeeded(item, {"metrics": {"accuracy": {"value": 0.74}}}, "runs")

    assert ("Estimated cost:      unknown for 600 billable seconds on 1 x ml.x99.huge (no price for ml.x99.huge)"
            in body)


@pytest.mark.parametrize(("accuracy", "warned"), [(0.2037, True), (0.3333, True), (0.3400, False), (0.74, False)])
def test_a_model_no_better_than_guessing_the_most_common_class_is_said_so(accuracy, warned):
    per_class = {label: {"precision": 0.3, "recall": 0.3, "f1": 0.3, "support": 18} for label in ("-1", "0", "1")}
    _, body = messages.succeeded({"run_id": "r"}, {"metrics": {"accuracy": {"value": accuracy},
                                                              "per_class": per_class}}, "runs")

    expected = "Warning:             no better than always answering any one class (33.33 % of the test reviews)"
    assert (expected in body) is warned


def test_no_guessing_warning_without_every_class_s_support():
    _, body = messages.succeeded({"run_id": "r"}, {"metrics": {"accuracy": {"value": 0.2}, "per_class": {
        "1": {"precision": 0.2, "recall": 1.0, "f1": 0.3, "support": 5}}}}, "runs")

    assert "Warning" not in body


def test_a_control_character_in_a_person_s_reason_is_sent_as_the_escape_the_console_shows():
    """`reviewtune runs stop RUN --reason` with an ESC or a tab: the console shows `\\x1b`, `\\x09`; the message the
    same (not a `?` that hides which character it was); a lone surrogate, which no UTF-8 carries, as `\\ud800`."""
    item = {"run_id": "r", "dataset": "team-a/r.tsv", "source": {"bucket": "b", "key": "incoming/team-a/r.tsv"}}
    subject, body = messages.run_failed(item, "tuning", "STOPPED", "stopped by ops: \x1b[31mwrong\tfile\ud800\x85",
                                        "runs")
    sns = RecordingSns()
    publish(sns, "arn", subject, body, run_id="r", status="STOPPED")
    [call] = sns.calls
    fits_sns(call)
    assert "Reason: stopped by ops: \\x1b[31mwrong\\x09file\\ud800\\x85" in call["Message"].splitlines()
    assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in call["Message"])
