"""The champion decision told in the run's HTML report (report_annotation.py), through the handlers (moto + the
in-memory SageMaker, whose evaluation job leaves the page as run_report makes it: the decision's place pending).

GIVEN a run whose evaluation wrote its report, WHEN record_results records the results, THEN the page the message
links to tells the decision as the run item records it, once; and whatever S3 does to that write, the run ends as it
would have, with its one message.
"""

from __future__ import annotations

import html

import boto3
import pytest
from botocore.exceptions import ClientError

from reviewtune.core import names, report_decision
from tests.functional.pipeline import Pipeline, good_file, measured
from tests.functional.test_record_results import EVALUATION
from tests.support.aws import REGION
from tests.support.faults import Failing


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
    assert "the dataset's champion now, and every change since: <code>reviewtune champion --dataset team/a.tsv</code>" in html.unescape(text)
    assert text.replace(report_decision.decided(item["champion"], item["registry"], "team/a.tsv"),
                        report_decision.pending(run_id)) == before  # nothing else on the page changed
    assert got["ContentType"] == "text/html; charset=utf-8"  # a browser shows it (the job's upload said binary)
    [message] = pipeline.messages(run_id)
    assert item["results"]["report_uri"] in message["Message"]


def test_a_kept_champion_is_told_with_its_comparison_and_a_repeated_event_writes_nothing(pipeline, stack):
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

    pipeline.evaluation_ended(second)  # the same completion again (a new invocation of the event)
    pipeline.reconcile()

    assert versions(stack, second) == 2 and page(stack, second)[0] == text
    assert len(pipeline.messages(second)) == 1


def test_s3_refusing_the_page_leaves_it_pending_and_the_run_ends_with_its_one_message(pipeline, stack):
    run_id = evaluated(pipeline)
    refusing = Failing(pipeline.clients.s3, "put_object", "AccessDenied", failures=None,
                       when=lambda kwargs: kwargs.get("Key") == names.report_key(run_id))
    pipeline.use("s3", refusing)

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
    pipeline.use("s3", Failing(pipeline.clients.s3, "put_object", "ServiceUnavailable", failures=1,
                               when=lambda kwargs: kwargs.get("Key") == names.report_key(run_id)))
    pipeline.use("sns", Failing(pipeline.clients.sns, "publish", "Throttling", failures=1))

    with pytest.raises(ClientError):
        pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "SUCCEEDED" and told(page(stack, run_id)[0]) is None

    assert pipeline.evaluation_ended(run_id)["duplicate"] is True

    item = pipeline.run(run_id)
    assert told(page(stack, run_id)[0]) == item["champion"]["reason"]
    assert len(pipeline.messages(run_id)) == 1


@pytest.mark.parametrize("fault", ["get_object", "put_object"])
def test_s3_throttling_the_page_does_not_hold_the_run_back(pipeline, stack, fault):
    run_id = evaluated(pipeline)
    pipeline.use("s3", Failing(pipeline.clients.s3, fault, "SlowDown", failures=None,
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
