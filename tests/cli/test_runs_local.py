"""The CLI against the local runtime, on two real (tiny) runs of one dataset: `drop --follow`, `runs list / show /
trials / report` with --json parsed back, trials equal to the sagemaker SDK's analytics dataframe, the run's
HTML report opened in headless Chromium (images loaded, no errors, the numbers of evaluation.json), `audit` finding
every version told, and a run stopped then retried with `--follow`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reviewtune.console import job_logs
from reviewtune.core import names
from reviewtune.local.runtime import LocalRuntime
from reviewtune.sample_data import sample_tsv
from tests.e2e.test_pipeline import TINY, tiny_budget
from tests.support import chromium
from tests.support.aws import ROOT

pytestmark = pytest.mark.slow

DATASET = "cli-e2e/reviews.tsv"
RETRY_DATASET = "cli-e2e-retry/reviews.tsv"


def cli(workdir, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "reviewtune.cli", "--workdir", str(workdir), *argv],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of one dataset (two versions of one object), each dropped and followed through the CLI."""
    tmp = tmp_path_factory.mktemp("cli-local")
    params = tiny_budget(MaxJobs="2", MaxParallelJobs="1", Epochs="2",
                         StaticHyperparameters=json.dumps({**TINY, "train_steps_per_epoch": 2}))
    with LocalRuntime(workdir=tmp / "runtime", template=ROOT / "template.yaml", parameters=params, total_cpus=2) as runtime:
        outputs = []
        for version, per_class in enumerate((30, 33)):
            data = tmp / f"reviews-{version}.tsv"
            data.write_bytes(sample_tsv(per_class=per_class))
            outputs.append(cli(runtime.workdir, "drop", str(data), "--dataset", DATASET, "--follow", "--json"))
        yield runtime, tmp, outputs


def test_drop_follow_shows_the_run_live_and_ends_with_its_record(two_runs):
    runtime, _, outputs = two_runs
    first, second = outputs
    for result in outputs:  # live progress on stderr, the final run item as JSON on stdout
        assert "tuning job reviewtune-" in result.stderr and "  trial " in result.stderr and "val_acc" in result.stderr
    assert json.loads(first.stdout)["status"] == "SUCCEEDED"
    item = json.loads(second.stdout)
    assert item["status"] == "SUCCEEDED" and item["dataset"] == DATASET
    assert item["source"]["key"] == f"incoming/{DATASET}"
    head = runtime.client("s3").head_object(Bucket=item["source"]["bucket"], Key=item["source"]["key"])
    assert head["ContentType"] == "text/tab-separated-values"


def _runs(two_runs):
    runtime, _, _ = two_runs
    listed = json.loads(cli(runtime.workdir, "runs", "list", "--json").stdout)
    return runtime, listed


def test_list_and_show_read_the_local_runtime(two_runs):
    runtime, listed = _runs(two_runs)
    assert [r["dataset"] for r in listed] == [DATASET, DATASET]
    assert listed[0]["created_at"] > listed[1]["created_at"]
    assert json.loads(cli(runtime.workdir, "runs", "list", "--dataset", DATASET, "--status", "SUCCEEDED", "--json").stdout) == listed
    shown = json.loads(cli(runtime.workdir, "runs", "show", listed[0]["run_id"], "--json").stdout)
    bucket, key = names.parse_s3_uri(shown["results"]["evaluation_uri"])
    evaluation = json.loads(runtime.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert shown["metrics"] == evaluation["metrics"]
    # each trial trained its whole plan (no time limit reached): train.py's metric line, read by the tuner, recorded
    assert [trial["planned_steps_pct"] for trial in shown["tuning"]["trials"]] == [100.0, 100.0]
    low, high = evaluation["metrics"]["accuracy"]["ci95"]
    assert low <= evaluation["metrics"]["accuracy"]["value"] <= high
    table = cli(runtime.workdir, "runs", "show", listed[0]["run_id"]).stdout
    assert f"{100 * evaluation['metrics']['accuracy']['value']:.2f} %" in table and "Timeline" in table
    # where its jobs' logs are, which exist
    logs = " ".join(table.split()).split("Logs: ", 1)[1]
    evaluation_log = Path(logs.split("evaluation ", 1)[1].split(";", 1)[0])
    assert evaluation_log.is_file() and evaluation_log.stat().st_size > 0


def test_trials_equal_the_sagemaker_sdk_dataframe(two_runs):
    from sagemaker.analytics import HyperparameterTuningJobAnalytics
    from sagemaker.session import Session

    runtime, listed = _runs(two_runs)
    run_id = listed[0]["run_id"]
    rows = json.loads(cli(runtime.workdir, "runs", "trials", run_id, "--json").stdout)
    session = Session(boto_session=runtime._session(), sagemaker_client=runtime.client("sagemaker"))
    frame = HyperparameterTuningJobAnalytics(run_id, sagemaker_session=session).dataframe()

    assert len(rows) == len(frame) == 2
    by_name = {row["TrainingJobName"]: row for row in rows}
    for record in frame.to_dict("records"):
        row = by_name[record["TrainingJobName"]]
        assert set(row) - set(record) == {"Epochs", "PlannedStepsPct", "EarlyStopped"}
        for column, expected in record.items():
            if hasattr(expected, "isoformat"):
                assert row[column] == expected.isoformat(), column
            elif isinstance(expected, float) and math.isnan(expected):
                assert row[column] is None, column
            else:
                assert row[column] == expected, column
        assert row["Epochs"] == 2 or row["EarlyStopped"]
        # every epoch it ran trained all its steps (no time limit reached; a stopped trial too, unless it stopped
        # before its first epoch ended)
        assert row["PlannedStepsPct"] == 100.0 or (row["EarlyStopped"] and row["PlannedStepsPct"] is None)
    table = cli(runtime.workdir, "runs", "trials", run_id).stdout
    # each trial by its number and suffix (the title names the run), so that the table fits 80 columns
    assert "acc %" in table and all("-".join(name.rsplit("-", 2)[1:]) in table for name in by_name)


def test_report_opens_in_chromium_with_its_images_and_the_numbers_of_evaluation_json(two_runs):
    runtime, listed = _runs(two_runs)
    _, tmp, _ = two_runs
    run_id = listed[0]["run_id"]
    got = json.loads(cli(runtime.workdir, "runs", "report", run_id, "--out", str(tmp / "reports"), "--json").stdout)
    page = tmp / "reports" / f"{run_id}.html"
    assert got == {"run_id": run_id, "path": str(page)}
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    item = json.loads(cli(runtime.workdir, "runs", "show", run_id, "--json").stdout)
    metrics = item["metrics"]

    for width in (1366, 400):
        check = chromium.inspect(page, tmp, width=width)
        assert check["errors"] == [] and check["console_errors"] == []
        assert len(check["images"]) == 4, check["images"]  # objective, learning curves, confusion, history
        assert all(image["complete"] and image["naturalWidth"] > 0 for image in check["images"]), check["images"]
        if check["innerWidth"] > 600:  # (Chromium's narrowest window is 500 wide)
            assert all(image["shownWidth"] <= check["innerWidth"] for image in check["images"])
        else:  # on a phone each chart keeps its own width (at most 680 px) in a box of the window's width that
            # scrolls sideways
            assert all(abs(image["shownWidth"] - min(image["naturalWidth"], 680)) < 1
                       and image["boxWidth"] <= check["innerWidth"]
                       and image["boxOverflowX"] == "auto" for image in check["images"]), check["images"]
        assert check["scrollWidth"] <= check["innerWidth"], "the page scrolls sideways"
        keys = check["keys"]
        assert keys["test-accuracy"] == f"{100 * metrics['accuracy']['value']:.2f}"
        assert keys["ci-low"] == f"{100 * metrics['accuracy']['ci95'][0]:.2f}"
        assert keys["ci-high"] == f"{100 * metrics['accuracy']['ci95'][1]:.2f}"
        assert keys["macro-f1"] == f"{metrics['macro_f1']['value']:.3f}"
        assert keys["test-rows"] == str(sum(map(sum, metrics["confusion_matrix"]["matrix"])))
        for label, values in metrics["per_class"].items():
            for name in ("precision", "recall", "f1"):
                assert keys[f"{name}-{label}"] == f"{values[name]:.3f}"
        for split, count in item["data"]["summary"]["rows"].items():
            assert keys[f"rows-{split}"] == f"{count:,}"
        assert "no-images" not in keys
        comparison = item["champion"]["comparison"]  # the newest run was measured against the first one
        assert keys["challenger-accuracy"] == f"{100 * comparison['challenger_accuracy']:.2f}"
        assert keys["champion-accuracy"] == f"{100 * comparison['champion_accuracy']:.2f}"
        assert keys["rows-compared"] == f"{comparison['rows_compared']:,}"
        # the decision record_results took, told in the page after the evaluation job made it
        assert keys["champion-decision"] == item["champion"]["reason"] and "champion-decision-pending" not in keys
    for width, height in ((1366, 900), (400, 900)):
        png = chromium.screenshot(page, tmp / f"report-{width}.png", width, height)
        assert png.stat().st_size > 10_000


def test_champion_and_promote_on_the_local_runtime(two_runs):
    from reviewtune.core.dataset import split_reviews
    from reviewtune.core.train_hashes import text_hash, text_hashes

    runtime, _, outputs = two_runs
    first, second = (json.loads(result.stdout) for result in outputs)
    shown = json.loads(cli(runtime.workdir, "champion", "--dataset", DATASET, "--json").stdout)
    assert [d["run_id"] for d in shown["decisions"]] == [second["run_id"], first["run_id"]]
    assert shown["decisions"][1]["decision"] == "first champion"
    comparison = shown["decisions"][0]["comparison"]
    # The second export's test reviews the first model was trained on are left out, and only those.
    trained_on = text_hashes(r.text for r in split_reviews(sample_tsv(per_class=30), "r.tsv").splits["train"])
    test = split_reviews(sample_tsv(per_class=33), "r.tsv").splits["test"]
    left_out = sum(text_hash(r.text) in trained_on for r in test)
    assert (comparison["champion_run_id"], comparison["rows_left_out"], comparison["rows_compared"]) == (
        first["run_id"], left_out, len(test) - left_out)
    listed = json.loads(cli(runtime.workdir, "champion", "--json").stdout)
    assert [(c["dataset"], c["run_id"]) for c in listed] == [(DATASET, shown["run_id"])]

    loser = first["run_id"] if shown["run_id"] == second["run_id"] else second["run_id"]
    refused = cli(runtime.workdir, "promote", "reviewtune-nope", "--reason", "x", check=False)
    assert refused.returncode != 0 and "no run 'reviewtune-nope'" in refused.stderr
    done = json.loads(cli(runtime.workdir, "promote", loser, "--reason", "local override", "--json").stdout)
    assert done["run_id"] == loser and done["previous_champion"] == shown["run_id"]
    package = runtime.client("sagemaker").describe_model_package(ModelPackageName=done["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Approved" and package["ApprovalDescription"].endswith(": local override")
    after = json.loads(cli(runtime.workdir, "champion", "--dataset", DATASET, "--json").stdout)
    assert after["run_id"] == loser and after["history"][-1]["why"] == "promoted manually: local override"
    assert "Champions, oldest first" in cli(runtime.workdir, "champion", "--dataset", DATASET).stdout


def _until(check, seconds: float = 180):
    """``check()``'s first true answer, asked every second."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        answer = check()
        if answer:
            return answer
        time.sleep(1)
    raise AssertionError(f"not within {seconds} s")


def test_audit_finds_each_dropped_version_with_its_run_and_outcome_message_sent(two_runs):
    runtime, _, outputs = two_runs
    ended = [json.loads(result.stdout) for result in outputs]

    def audited():
        rows = json.loads(cli(runtime.workdir, "audit", "--json").stdout)  # exit status 0: nothing owed
        by_run = {row["run_id"]: row for row in rows}
        return by_run if all(by_run.get(run["run_id"], {}).get("message_sent_at") for run in ended) else None

    by_run = _until(audited, 30)  # record_results sends the message right after the run's last write
    for run in ended:
        row = by_run[run["run_id"]]
        assert (row["key"], row["version_id"], row["status"], row["problem"]) == (
            run["source"]["key"], run["source"]["version_id"], "SUCCEEDED", None)
        assert row["message_id"]
    assert "ended (" in cli(runtime.workdir, "audit").stdout


def test_a_run_stopped_by_mistake_is_retried_and_followed_to_its_end(two_runs):
    runtime, tmp, _ = two_runs
    data = tmp / "retry.tsv"
    data.write_bytes(sample_tsv(per_class=31))
    cli(runtime.workdir, "drop", str(data), "--dataset", RETRY_DATASET)

    def listed():
        return json.loads(cli(runtime.workdir, "runs", "list", "--dataset", RETRY_DATASET, "--json").stdout)

    [run] = _until(listed, 60)
    cli(runtime.workdir, "runs", "stop", run["run_id"], "--reason", "wrong export")

    def status():
        return json.loads(cli(runtime.workdir, "runs", "show", run["run_id"], "--json").stdout)["status"]

    assert _until(lambda: status() in ("STOPPED", "SUCCEEDED") and status()) == "STOPPED"

    result = cli(runtime.workdir, "runs", "retry", run["run_id"], "--reason", "it was the right export", "--follow",
                 "--json")

    [done] = json.loads(result.stdout)
    assert done["outcome"]["status"] == "SUCCEEDED" and done["outcome"]["run_id"] == done["new_run_id"]
    assert done["outcome"]["retry_of"] == run["run_id"] and "tuning job " + done["new_run_id"] in result.stderr
    old = json.loads(cli(runtime.workdir, "runs", "show", run["run_id"], "--json").stdout)
    assert old["status"] == "STOPPED" and old["retried"]["new_run_id"] == done["new_run_id"]
    assert [r["run_id"] for r in listed()] == [done["new_run_id"], run["run_id"]]
    refused = cli(runtime.workdir, "runs", "retry", run["run_id"], "--reason", "again", check=False)
    assert refused.returncode == 1 and "retried already" in refused.stderr


def test_logs_of_a_run_are_its_jobs_log_files_read_back_from_the_local_runtime_s_cloudwatch_logs(two_runs):
    runtime, listed = _runs(two_runs)
    run_id = listed[0]["run_id"]

    read = json.loads(cli(runtime.workdir, "runs", "logs", run_id, "--tail", "0", "--json").stdout)

    trials = sorted(t["name"] for t in json.loads(cli(runtime.workdir, "runs", "show", run_id, "--json").stdout)
                    ["tuning"]["trials"])
    assert [entry["job"] for entry in read] == [*trials, run_id + names.EVALUATION_SUFFIX]
    jobs = runtime.workdir / "sagemaker"
    for entry in read:
        folder = jobs / ("processing" if entry["kind"] == "evaluation" else "training") / entry["job"]
        written = (folder / "log.txt").read_text(encoding="utf-8").splitlines()
        assert [e["message"] for e in entry["events"]] == [line or " " for line in written] and written
    text = cli(runtime.workdir, "runs", "logs", run_id[:16], "--job", "1", "--tail", "3").stdout
    assert f"trial {trials[0].removeprefix(run_id + '-')}: the last 3 lines" in " ".join(text.split())


def _invocations(log_file: Path) -> list[tuple[str, list[str]]]:
    """(request id, the handler's lines) of each invocation in a local function's log file."""
    found: list[tuple[str, list[str]]] = []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("=== ") and " request " in line:
            found.append((line.split(" request ", 1)[1].split(" ", 1)[0], []))
        elif found and not line.startswith(("=== ", "--- result")):
            found[-1][1].append(line)
    return found


def test_the_function_invocations_naming_a_run_are_read_back_whole_from_the_local_runtime_s_cloudwatch_logs(two_runs):
    runtime, listed = _runs(two_runs)
    run_id = listed[0]["run_id"]

    read = json.loads(cli(runtime.workdir, "runs", "logs", run_id, "--functions", "--job", "evaluation", "--tail", "0",
                          "--json").stdout)

    functions = {entry["job"]: entry for entry in read if entry["kind"] == "function"}
    assert {"StartTuningFunction", "StartEvaluationFunction", "RecordResultsFunction"} <= set(functions)
    for label, entry in functions.items():
        assert entry["group"] == f"/aws/lambda/{runtime.outputs[label + 'Name']}"
        lines = [e["message"] for e in entry["events"]]
        expected = []  # each invocation with a line on the run: START, its lines (none about another run), END, REPORT
        for request_id, written in _invocations(runtime.workdir / "logs" / f"{label}.log"):
            if any(run_id in line for line in written):
                expected += [f"START RequestId: {request_id} Version: $LATEST",
                             *[line for line in written if not job_logs.about_another_run(line, run_id)],
                             f"END RequestId: {request_id}", f"REPORT RequestId: {request_id}"]
        assert [line.split("\t", 1)[0] for line in lines] == expected and expected
    # the S3 event start_tuning logged on entry, before the run's id was known, comes with the run's lines
    assert any(job_logs.short_line(line) == "INFO event: Object Created (aws.s3)"
               for line in [e["message"] for e in functions["StartTuningFunction"]["events"]])


def test_overview_reads_the_local_runtime(two_runs):
    """`overview` on the local runtime (its endpoints from local.json): both runs, the dataset's champion, a page that
    opens without errors. (Other tests of this module add runs of their own dataset.)"""
    runtime, tmp, outputs = two_runs
    run_ids = {json.loads(result.stdout)["run_id"] for result in outputs}
    data = json.loads(cli(runtime.workdir, "overview", "--json").stdout)
    assert run_ids <= {item["run_id"] for item in data["runs"]} and data["complete"] is True
    champion = json.loads(cli(runtime.workdir, "champion", "--dataset", DATASET, "--json").stdout)
    assert {(c["dataset"], c["run_id"]) for c in data["champions"]} >= {(DATASET, champion["run_id"])}
    assert all(row["problem"] is None for row in data["files"] if row["dataset"] == DATASET)

    written = cli(runtime.workdir, "overview", "--out", str(tmp / "overview"))
    page = tmp / "overview" / "overview.html"
    assert str(page) in " ".join(written.stdout.split())
    check = chromium.inspect(page, tmp, width=1366)
    assert check["errors"] == [] and check["console_errors"] == []
    assert int(check["keys"]["succeeded"]) >= 2 and check["keys"]["owed"] == "0"
    html = page.read_text()
    assert all(run_id in html for run_id in run_ids)
