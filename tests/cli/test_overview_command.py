"""`reviewtune overview` against moto: one HTML page of the last days, read through the CLI's own queries: what
needs attention (files owed an outcome, failed and rejected runs with their reasons), each dataset's champion and
latest run, the runs newest first; values escaped; the page shown in headless Chromium without errors or sideways
scrolling.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console import audit, overview
from reviewtune.console.target import Target
from reviewtune.core.runs import RunStatus
from tests.cli.test_audit_command import drop, repository, with_run
from tests.cli.test_runs_commands import STACK, deployed, put_run  # noqa: F401  (deployed: a fixture)
from tests.support import chromium
from tests.support.champion import challenge

DATASET = "team-a/<b>reviews</b>.tsv"
WHY = "line 3: sentiment is '<script>alert(1)</script>', expected one of -1, 0, 1"


@pytest.fixture
def stack(deployed):  # noqa: F811
    return deployed


def keys(html: str) -> dict[str, str]:
    return {key: unescape(value) for key, value in re.findall(r'data-key="([^"]+)">([^<]*)<', html)}


def runs_of_a_week(stack) -> None:
    """Two succeeded runs of one dataset (the first its champion), a failed run, a rejected file, a run in progress,
    and a run of last month."""
    with_run(stack, "reviewtune-a1", f"incoming/{DATASET}", "SUCCEEDED", sent=True)
    with_run(stack, "reviewtune-a2", f"incoming/{DATASET}", "SUCCEEDED", sent=True)
    runs = repository(stack)
    runs.update("reviewtune-a1", metrics={"accuracy": {"value": 0.7412}})
    runs.update("reviewtune-a2", metrics={"accuracy": {"value": 0.7301}},
                champion={"decision": "kept", "reason": "champion kept: challenger 73.01 % vs champion 74.12 %"})
    challenge(runs.table, DATASET, run_id="reviewtune-a1", accuracy=0.7412, test_rows=309, test_split="sha256:t",
              comparison=None)
    with_run(stack, "reviewtune-b1", "incoming/team-b/r.tsv", "FAILED")
    runs.update("reviewtune-b1", failure_reason="the tuning job failed: ResourceLimitExceeded")
    with_run(stack, "reviewtune-c1", "incoming/team-c/bad.csv")
    assert runs.transition("reviewtune-c1", RunStatus.CLAIMED, RunStatus.REJECTED, notice=("rejected", "why"),
                           failure_reason=WHY)
    with_run(stack, "reviewtune-d1", "incoming/team-d/r.tsv", "TUNING")
    put_run(stack, "reviewtune-z9", "team-z/old.tsv", "SUCCEEDED", 1, 0.70)  # 2026-11-01: out of the window


def test_overview_writes_one_page_of_the_week_that_needs_no_network_and_escapes_every_value(stack, tmp_path, capsys):
    runs_of_a_week(stack)

    assert main(["overview", "--stack", STACK, "--out", str(tmp_path)]) == 0

    page = tmp_path / "overview.html"
    out = " ".join(capsys.readouterr().out.split())
    assert f"{page} (5 runs in the last 7 days; 0 files owed an outcome)" in out
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    found = keys(html)
    assert (found["runs"], found["succeeded"], found["in-progress"], found["failed"], found["rejected"],
            found["owed"]) == ("5", "2", "1", "1", "1", "0")
    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "reviewtune-b1" in attention and "ResourceLimitExceeded" in attention
    assert "reviewtune-c1" in attention and "&lt;script&gt;alert(1)&lt;/script&gt;" in attention
    assert "reviewtune-a1" not in attention and "reviewtune-d1" not in attention
    # the dataset's row: its champion (the first run) and its latest run
    row = re.search(r"<tr[^>]*><td[^>]*>team-a/&lt;b&gt;reviews&lt;/b&gt;.tsv</td>(.*?)</tr>", html).group(1)
    cells = [re.sub(r"<[^>]+>", " ", cell).split() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[0][:4] == ["reviewtune-a1", "74.12", "%", "test,"] and cells[0][5].startswith("20")
    assert cells[1] == ["reviewtune-a2", "SUCCEEDED,", "73.01", "%", "test"] and cells[2] == ["2", "succeeded"]
    runs_section = html.split("<h2>Runs, newest first", 1)[1]
    listed = re.findall(r"<tr[^>]*><td[^>]*>(reviewtune-[a-z0-9]+)</td>", runs_section)
    assert listed == ["reviewtune-d1", "reviewtune-c1", "reviewtune-b1", "reviewtune-a2", "reviewtune-a1"]
    assert "<code>reviewtune runs report RUN --open</code>" in runs_section
    assert "reviewtune-z9" not in html  # last month's


def test_overview_json_holds_what_the_page_shows(stack, capsys):
    runs_of_a_week(stack)
    capsys.readouterr()
    assert main(["overview", "--stack", STACK, "--json", "--days", "60"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [item["run_id"] for item in data["runs"]][-1] == "reviewtune-z9"  # 60 days reach last month's run
    assert [c["run_id"] for c in data["champions"]] == ["reviewtune-a1"] and data["complete"] is True
    assert data["days"] == 60 and data["owed"] == []


def test_a_file_without_a_run_past_the_grace_is_the_first_thing_the_page_shows(stack):
    version = drop(stack, "incoming/team-e/lost.tsv")  # its event never came
    later = datetime.now(UTC) + timedelta(seconds=audit.DEFAULT_GRACE_SECONDS + 60)

    data = overview.collect(moto_target(stack), 7, now=later)

    html = overview.render(data)
    assert keys(html)["owed"] == "1"
    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "incoming/team-e/lost.tsv" in attention and version in attention and audit.MISSING in attention
    assert html.index('data-key="attention"') < html.index("<h2>Datasets</h2>")


def test_an_empty_week_says_so(stack, tmp_path):
    assert main(["overview", "--stack", STACK, "--out", str(tmp_path)]) == 0
    html = (tmp_path / "overview.html").read_text()
    assert keys(html)["nothing-to-do"].startswith("Nothing: every file has its outcome")
    assert "No run in this window." in html and "No dataset has a run in this window or a champion." in html


def test_the_page_reads_on_a_wide_screen_and_a_phone(stack, tmp_path):
    runs_of_a_week(stack)
    for number in range(30):  # long ids, names and reasons, some with nowhere to break but anywhere
        run_id = f"reviewtune-{number:02d}{'f' * 28}"
        word = "long-name-" if number % 2 else "long_name_"
        with_run(stack, run_id, f"incoming/team-f/{word * 6}{number}.tsv", "FAILED")
        if number % 3 == 0:
            repository(stack).update(run_id, failure_reason=f"ClientError: s3://bucket/{'x' * 200}/model.tar.gz")
    assert main(["overview", "--stack", STACK, "--out", str(tmp_path)]) == 0
    page = tmp_path / "overview.html"
    for width in (1366, 400):
        check = chromium.inspect(page, tmp_path, width=width)
        assert check["errors"] == [] and check["console_errors"] == []
        assert check["scrollWidth"] <= check["innerWidth"], f"the page scrolls sideways at {width} px"
        assert check["wideTables"] == [], f"tables scroll sideways at {width} px"  # a phone gets each row as lines
        assert check["keys"]["failed"] == "31"
    png = chromium.screenshot(page, tmp_path / "overview.png", 1366, 1600)
    assert png.stat().st_size > 10_000


def test_a_long_reason_keeps_its_end_and_a_name_cannot_reorder_the_page(stack, tmp_path):
    traceback = "AlgorithmError: Traceback (most recent call last):\n" + "  File \"/opt/ml/x.py\", line 3\n" * 30
    with_run(stack, "reviewtune-e1", "incoming/team-e/\u202enaj-weiver.tsv", "FAILED")
    repository(stack).update("reviewtune-e1", failure_reason=traceback + "MemoryError, exit code: -9 (killed by SIGKILL)")
    html = overview.render(overview.collect(moto_target(stack), 7))

    assert "exit code: -9 (killed by SIGKILL)" in html  # the error's last line, not only the top of the traceback
    assert "\u202e" not in html and "team-e/\\u202enaj-weiver.tsv" in html  # shown as the console shows it


def moto_target(stack) -> Target:
    return Target("moto", boto3.session.Session(), {"RunsTableName": stack.runs_table, "DataBucketName": stack.bucket})


def test_a_window_with_more_runs_of_a_status_than_are_read_says_so_and_shows_the_newest(stack):
    for number in range(3):
        with_run(stack, f"reviewtune-f{number}", f"incoming/team-f/{number}.tsv", "FAILED")
    with_run(stack, "reviewtune-s0", "incoming/team-s/0.tsv", "SUCCEEDED")

    data = overview.collect(moto_target(stack), 7, runs_read=2)

    assert data["complete"] is False
    assert [item["run_id"] for item in data["runs"]] == ["reviewtune-s0", "reviewtune-f2", "reviewtune-f1"]
    html = overview.render(data)
    assert "More runs were made in these days than the 2 per status read" in keys(html)["partial"]
    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "reviewtune-f2" in attention and "reviewtune-f1" in attention and "reviewtune-f0" not in attention
    assert overview.collect(moto_target(stack), 7, runs_read=3)["complete"] is True


def test_a_failed_run_retried_already_needs_no_attention_and_says_it_was_retried(stack):
    with_run(stack, "reviewtune-r1", "incoming/team-r/r.tsv", "FAILED")
    with_run(stack, "reviewtune-r2", "incoming/team-r/q.tsv", "FAILED")
    repository(stack).update("reviewtune-r1", retried={"by": "ops", "why": "quota raised", "new_run_id": "reviewtune-r3"})

    html = overview.render(overview.collect(moto_target(stack), 7))

    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "reviewtune-r2" in attention and "reviewtune-r1" not in attention
    assert "1 retried already are left out." in attention
    runs_section = html.split("<h2>Runs, newest first", 1)[1]
    assert re.search(r"reviewtune-r1</td>.*?<td[^>]*>FAILED, retried</td>", runs_section)


@pytest.mark.parametrize("statuses", [["FAILED"], ["REJECTED"], ["FAILED", "REJECTED"]])
def test_what_to_do_about_failed_or_rejected_runs_fits_the_runs_listed(stack, statuses):
    for n, status in enumerate(statuses):
        with_run(stack, f"reviewtune-w{n}", f"incoming/team-w/w{n}.tsv")
        assert repository(stack).transition(f"reviewtune-w{n}", RunStatus.CLAIMED, RunStatus(status),
                                            notice=(status, "why"), failure_reason="why")

    html = overview.render(overview.collect(moto_target(stack), 7))

    attention = re.sub(r"<[^>]+>", "", unescape(html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]))
    # retry refuses a rejected file's bytes (unless S3 could not read them)
    assert ("reviewtune runs retry RUN --reason TEXT tunes a failed run's file again" in attention) == (
        "FAILED" in statuses)
    assert ("a rejected file is fixed and dropped again" in attention) == ("REJECTED" in statuses)


def test_a_champion_whose_package_a_person_rejected_needs_attention(stack):
    runs = repository(stack)
    with_run(stack, "reviewtune-a1", f"incoming/{DATASET}", "SUCCEEDED", sent=True)
    challenge(runs.table, DATASET, run_id="reviewtune-a1", accuracy=0.7412, test_rows=309, test_split="sha256:t",
              comparison=None)
    html = overview.render(overview.collect(moto_target(stack), 7))
    assert "whose model package was rejected" not in html and "its package Rejected" not in html
    runs.table.update_item(Key={"run_id": f"champion#{DATASET}"}, UpdateExpression="SET package_rejected = :r",
                           ExpressionAttributeValues={":r": {"found_at": "2026-12-06T08:35:00Z",
                                                             "description": "<i>bias</i> in the audit"}})

    html = overview.render(overview.collect(moto_target(stack), 7))

    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "<h3>Champions whose model package was rejected or deleted</h3>" in attention
    assert "nothing-to-do" not in attention
    assert "reviewtune-a1" in attention and "2026-12-06 08:35:00" in attention
    assert "&lt;i&gt;bias&lt;/i&gt; in the audit" in attention and "<i>bias" not in html
    datasets = html.split("<h2>Datasets</h2>", 1)[1].split("</section>", 1)[0]
    assert "; its package Rejected" in datasets
    runs.table.update_item(Key={"run_id": f"champion#{DATASET}"}, UpdateExpression="SET package_rejected = :r",
                           ExpressionAttributeValues={":r": {"found_at": "2026-12-06T08:35:00Z", "deleted": True}})

    html = overview.render(overview.collect(moto_target(stack), 7))

    attention = html.split('data-key="attention"', 1)[1].split("</section>", 1)[0]
    assert "reviewtune-a1" in attention and ">deleted</td>" in attention
    assert "; its package deleted" in html and "its package Rejected" not in html


def test_the_cards_add_up_to_the_runs_and_the_runs_table_says_why_a_champion_was_kept(stack, tmp_path):
    runs_of_a_week(stack)
    runs = repository(stack)
    with_run(stack, "reviewtune-e1", "incoming/team-e/r.tsv")
    assert runs.transition("reviewtune-e1", RunStatus.CLAIMED, RunStatus.STOPPED, notice=("stopped", "why"),
                           failure_reason="stopped by ops: dropped by mistake")
    with_run(stack, "reviewtune-e2", "incoming/team-e/again.tsv")
    assert runs.transition("reviewtune-e2", RunStatus.CLAIMED, RunStatus.DUPLICATE, notice=("duplicate", "why"),
                           duplicate_of="reviewtune-e1")

    assert main(["overview", "--stack", STACK, "--out", str(tmp_path)]) == 0

    html = (tmp_path / "overview.html").read_text()
    found = keys(html)
    counted = ("succeeded", "in-progress", "failed", "rejected", "stopped", "duplicates")
    assert (found["runs"], found["stopped"], found["duplicates"]) == ("7", "1", "1")
    assert sum(int(found[key]) for key in counted) == int(found["runs"])
    table = html.split("<h2>Runs, newest first", 1)[1].split("</section>", 1)[0]
    row = re.search(r"<tr[^>]*><td[^>]*>reviewtune-a2</td>(.*?)</tr>", table).group(1)
    decision = " ".join(re.sub(r"<[^>]+>", " ", unescape(row)).split())
    assert decision.endswith("kept champion kept: challenger 73.01 % vs champion 74.12 %")
    status = {run: " ".join(re.sub(r"<[^>]+>", " ", unescape(cells)).split()) for run, cells in re.findall(
        r"<tr[^>]*><td[^>]*>(reviewtune-e[12])</td><td[^>]*>[^<]*</td><td[^>]*>(.*?)</td>", table)}
    assert status == {"reviewtune-e1": "STOPPED, not told yet stopped by ops: dropped by mistake",
                      "reviewtune-e2": "DUPLICATE, not told yet of reviewtune-e1"}
