"""The champion decision told in the run's HTML report (report_annotation.py), through the handlers (moto + the
in-memory SageMaker, whose evaluation job leaves the page as run_report makes it: the decision's place pending).

GIVEN a run whose evaluation wrote its report, WHEN record_results records the results, THEN the page the message
links to tells the decision as the run item records it, once; and whatever S3 does to that write, the run ends as it
would have, with its one message.
"""

from __future__ import annotations

import html
import subprocess

import boto3
import pytest
from botocore.exceptions import ClientError
from urllib3.exceptions import SSLError

from reviewtune.core import champion as champion_module
from reviewtune.core import names, report_annotation, report_decision
from reviewtune.core.runs import RunsRepository
from tests.functional.pipeline import Pipeline, good_file, later, measured
from tests.functional.test_record_results import EVALUATION
from tests.support.aws import REGION
from tests.support.faults import Failing, client_error


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def start(pipeline: Pipeline, body: bytes | None = None) -> str:
    result = pipeline.start_tuning(pipeline.drop_event("incoming/team/a.tsv", body))
    assert result["status"] == "TUNING", result
    return result["run_id"]


def evaluated(pipeline: Pipeline) -> str:
    """A run whose evaluation job completed and wrote its report; its completion event not yet delivered."""
    run_id = start(pipeline)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=dict(EVALUATION))
    return run_id


def page(stack, run_id: str) -> tuple[str, dict]:
    got = boto3.client("s3", region_name=REGION).get_object(Bucket=stack.bucket, Key=names.report_key(run_id))
    return got["Body"].read().decode(), got


def versions(stack, run_id: str) -> int:
    listed = boto3.client("s3", region_name=REGION).list_object_versions(Bucket=stack.bucket,
                                                                         Prefix=names.report_key(run_id))
    return len(listed.get("Versions", []))


def told(text: str) -> str | None:
    """The decision sentence the page tells, unescaped; None while it is pending."""
    start = text.find('data-key="champion-decision">')
    if start < 0:
        return None
    return html.unescape(text[start + len('data-key="champion-decision">'): text.index("</p>", start)])


def test_the_first_run_s_report_tells_it_became_champion_before_the_message_goes_out(pipeline, stack):
    run_id = evaluated(pipeline)
    before, _ = page(stack, run_id)
    assert "champion-decision-pending" in before and told(before) is None

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    item = pipeline.run(run_id)
    text, got = page(stack, run_id)
    assert told(text) == item["champion"]["reason"]
    assert item["champion"]["reason"].startswith("first champion: challenger")
    assert f'<code>{item["registry"]["model_package_arn"]}</code>' in text and 'data-key="package-approval">Approved<' in text
    assert "champion-decision-pending" not in text
    assert ("the dataset's champion now, and every change since (a promotion puts the package replaced back to "
            "pending): <code>reviewtune champion --dataset team/a.tsv</code>") in html.unescape(text)
    assert text.replace(report_decision.decided(item["champion"], item["registry"], "team/a.tsv"),
                        report_decision.pending(run_id)) == before  # nothing else on the page changed
    assert got["ContentType"] == "text/html; charset=utf-8"  # a browser shows it (the job's upload said binary)
    [message] = pipeline.messages(run_id)
    assert item["results"]["report_uri"] in message["Message"]


def test_a_bidirectional_control_in_the_dataset_is_shown_as_its_escape_in_the_told_decision(pipeline, stack):
    # the page as the evaluation job writes it shows such a control as an escape (page.document); the decision
    # put in afterwards does too, so that its `--dataset` line does not read as another file's name
    rlo = "\u202e"
    result = pipeline.start_tuning(pipeline.drop_event(f"incoming/team/{rlo}vst.a.tsv"))
    run_id = result["run_id"]
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=dict(EVALUATION))
    assert rlo not in page(stack, run_id)[0]

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    text, _ = page(stack, run_id)
    assert rlo not in text
    # in the form a shell reads back: pasted, the command names the dataset itself
    word = "$'team/\\xe2\\x80\\xaevst.a.tsv'"
    assert f"reviewtune champion --dataset {word}</code>" in html.unescape(text)
    assert subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True,
                          env={"LC_ALL": "C"}).stdout.decode() == f"team/{rlo}vst.a.tsv"


def test_a_kept_champion_is_told_with_its_comparison_and_telling_it_again_writes_nothing(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(0.733, 0.731, rows=297))

    item = pipeline.run(second)
    assert item["champion"]["decision"] == "kept"
    text, _ = page(stack, second)
    assert told(text) == item["champion"]["reason"]
    assert told(text).startswith("champion kept: challenger 73.30 % vs champion 73.10 %")
    assert 'data-key="package-approval">PendingManualApproval<' in text
    assert versions(stack, second) == 2  # the job's page, and the one that tells the decision

    # told again (a repeated event's attempt, after one that died once the page was written): nothing is written
    assert report_annotation.annotate(RunsRepository(pipeline.clients.runs_table), pipeline.clients.report_s3,
                                      second) is False
    assert versions(stack, second) == 2 and page(stack, second)[0] == text
    assert len(pipeline.messages(second)) == 1


def test_s3_refusing_the_page_leaves_it_pending_and_the_run_ends_with_its_one_message(pipeline, stack):
    run_id = evaluated(pipeline)
    refusing = Failing(pipeline.clients.report_s3, "put_object", "AccessDenied", failures=None,
                       when=lambda kwargs: kwargs.get("Key") == names.report_key(run_id))
    pipeline.use("report_s3", refusing)

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    assert refusing.failed == 1
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and item["champion"]["decision"] == "first champion"
    text, _ = page(stack, run_id)
    assert told(text) is None and f"reviewtune runs show {run_id}" in text  # still says where the decision is
    assert len(pipeline.messages(run_id)) == 1

    pipeline.evaluation_ended(run_id)  # the same event again: the idempotency layer answers, nothing is redone
    assert told(page(stack, run_id)[0]) is None and refusing.failed == 1


def test_an_attempt_that_failed_after_recording_the_run_is_delivered_again_and_tells_the_page(pipeline, stack):
    """SNS refused the message and S3 the page: the invocation fails after the SUCCEEDED write, EventBridge delivers
    the event again, and that attempt finishes both."""
    run_id = evaluated(pipeline)
    pipeline.use("report_s3", Failing(pipeline.clients.report_s3, "put_object", "ServiceUnavailable", failures=1,
                               when=lambda kwargs: kwargs.get("Key") == names.report_key(run_id)))
    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "Throttling", failures=1))

    with pytest.raises(ClientError):
        pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "SUCCEEDED" and told(page(stack, run_id)[0]) is None

    assert pipeline.evaluation_ended(run_id)["duplicate"] is True

    item = pipeline.run(run_id)
    assert told(page(stack, run_id)[0]) == item["champion"]["reason"]
    assert len(pipeline.messages(run_id)) == 1


@pytest.mark.parametrize(("fault", "error"), [
    ("get_object", client_error("SlowDown", "Please reduce your request rate.", "GetObject")),
    ("put_object", client_error("SlowDown", "Please reduce your request rate.", "PutObject")),
    # urllib3 raises it mid-read ("EOF occurred in violation of protocol"), and botocore passes it on as it is
    ("get_object", SSLError("EOF occurred in violation of protocol")),
])
def test_s3_throttling_or_dropping_the_page_does_not_hold_the_run_back(pipeline, stack, fault, error):
    run_id = evaluated(pipeline)
    pipeline.use("report_s3", Failing(pipeline.clients.report_s3, fault, error=error, failures=None,
                                      when=lambda kwargs: kwargs.get("Key") == names.report_key(run_id)))

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    assert pipeline.run(run_id)["status"] == "SUCCEEDED"
    assert told(page(stack, run_id)[0]) is None
    assert len(pipeline.messages(run_id)) == 1


def test_a_page_without_the_decision_s_place_is_left_as_it_is(pipeline, stack):
    """A report made by an evaluation job of before the place existed."""
    run_id = evaluated(pipeline)
    s3 = boto3.client("s3", region_name=REGION)
    older = b"<html><body><h2>Against the champion</h2></body></html>"
    s3.put_object(Bucket=stack.bucket, Key=names.report_key(run_id), Body=older)

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    assert page(stack, run_id)[0].encode() == older and versions(stack, run_id) == 2
    assert len(pipeline.messages(run_id)) == 1


def test_a_page_over_the_size_bound_is_left_as_it_is(pipeline, stack, monkeypatch):
    run_id = evaluated(pipeline)
    before, _ = page(stack, run_id)
    monkeypatch.setattr(report_annotation, "MAX_REPORT_BYTES", len(before.encode()) - 1)

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    assert page(stack, run_id)[0] == before and versions(stack, run_id) == 1
    assert len(pipeline.messages(run_id)) == 1


def test_a_run_that_did_not_succeed_is_not_told(pipeline, stack):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.processing[f"{run_id}-eval"]["status"] = "Failed"

    assert pipeline.evaluation_ended(run_id, "Failed")["status"] == "FAILED"

    assert report_annotation.annotate(RunsRepository(pipeline.clients.runs_table), pipeline.clients.report_s3,
                                      run_id) is False
    assert told(page(stack, run_id)[0]) is None and versions(stack, run_id) == 1


def test_a_recorder_that_finds_the_run_recorded_by_another_tells_the_page_that_one_could_not(pipeline, stack,
                                                                                             monkeypatch):
    """The event's record_results and a reconciler pass record the run at once; the pass lands first but S3 refuses
    its page. The event's attempt, finding the run moved on to SUCCEEDED, tells the page before its duplicate answer."""
    run_id = evaluated(pipeline)
    refusing = Failing(pipeline.clients.report_s3, "put_object", "ServiceUnavailable", failures=None)
    pipeline.use("report_s3", refusing)
    write, passes = champion_module._put_with_run_update, []

    def reconciler_first(*args, **kwargs):
        if not passes:  # once: the pass's own record_results comes through this same function
            passes.append(None)
            passes[0] = pipeline.reconcile(later(0))
            assert refusing.failed >= 1 and told(page(stack, run_id)[0]) is None  # the pass's write was refused
            refusing.heal()
        return write(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_with_run_update", reconciler_first)
    pipeline.evaluation_ended(run_id)

    assert passes[0]["steps"][run_id].startswith("evaluation Completed: SUCCEEDED")
    item = pipeline.run(run_id)
    assert told(page(stack, run_id)[0]) == item["champion"]["reason"]
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]
