"""Putting a succeeded run's champion decision into its HTML report (the marked place of report_decision.py).

record_results does it once the decision is recorded, before the run's message goes out, so that the page the
message links to tells it; a repeated event for the run does it again if that attempt did not. Writing the same
decision twice changes nothing: a page that already tells it is not written again. The report is a convenience
beside the run item, the message and the CLI, which all tell the decision: whatever goes wrong here (S3 refusing,
stalling or dropping the connection, a page too large, an older page without the marked place) is logged and never
fails the run's end or holds its message back longer than the report client's few short tries
(``clients.REPORT_S3_*``); the page then still says where to read the decision.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, names, page, report_decision
from reviewtune.core.runs import RunsRepository, RunStatus

logger = Logger(child=True)

# The evaluation job's page holds its images inline: ~190 KB with four charts. A page far larger is not the report.
MAX_REPORT_BYTES = 8 * 1024 * 1024
TEXT_HTML = "text/html; charset=utf-8"


def annotate(runs: RunsRepository, s3: Any, run_id: str) -> bool:
    """Tell the recorded decision of the run, if it SUCCEEDED, in its report (its ``champion`` and ``registry``
    fields as the run item holds them now). ``s3``: the clients' ``report_s3``. True when the page was written now;
    False when there was nothing to do or it could not be done (logged). Never raises."""
    uri = None
    try:
        item = runs.get(run_id)
        if item is None or item.get("status") != RunStatus.SUCCEEDED:
            return False
        uri = (item.get("results") or {}).get("report_uri")
        champion = item.get("champion")
        if not uri or not isinstance(champion, dict):
            return False
        registry = item.get("registry")
        # as page.document shows the rest of the page: a bidirectional control of a value (the dataset, a reason)
        # shown as its escape, so that no file name in the decision reads as another
        place = page.escaped_controls(
            report_decision.decided(champion, registry if isinstance(registry, dict) else None, item.get("dataset"),
                                    quote=page.shell_word))
        return _annotate(s3, uri, place)
    except Exception as exc:  # noqa: BLE001  (best effort: an SSL error mid-read is no botocore error)
        logger.warning("the report does not tell the champion decision; the run item and its message do",
                       extra={"run_id": run_id, "report_uri": uri, "error": aws_errors.describe(exc)})
        return False


def _annotate(s3: Any, uri: str, place: str) -> bool:
    bucket, key = names.parse_s3_uri(uri)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws_errors.missing(exc):  # a run whose evaluation wrote no page
            logger.info("no report to tell the champion decision in", extra={"report_uri": uri})
            return False
        raise
    size = response.get("ContentLength")
    too_large = isinstance(size, int) and size > MAX_REPORT_BYTES
    raw = b"" if too_large else response["Body"].read(MAX_REPORT_BYTES + 1)
    if too_large or len(raw) > MAX_REPORT_BYTES:
        response["Body"].close()
        logger.warning("the report is too large to tell the champion decision in",
                       extra={"report_uri": uri, "bytes": size, "max_bytes": MAX_REPORT_BYTES})
        return False
    text = raw.decode("utf-8")
    filled = report_decision.fill(text, place)
    if filled is None:
        logger.info("the report has no place for the champion decision (made by an older evaluation job)",
                    extra={"report_uri": uri})
        return False
    if filled == text:
        return False  # told already (an earlier attempt)
    # written as the HTML page it is, whatever type the job's upload gave it, so that a browser shows it
    s3.put_object(Bucket=bucket, Key=key, Body=filled.encode("utf-8"), ContentType=TEXT_HTML)
    return True
