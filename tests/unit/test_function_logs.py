"""The local runtime writes each invocation's lines to CloudWatch Logs as Lambda does (reviewtune/local/function_logs)."""

from __future__ import annotations

from datetime import UTC, datetime

from reviewtune.local import function_logs

STARTED = datetime(2026, 12, 4, 23, 19, 55, 500_000, tzinfo=UTC)
START_MS = 1_796_426_395_500


def test_an_invocation_is_framed_by_lambda_s_start_end_and_report_lines():
    events = function_logs.invocation_events(STARTED, "c242f13b-649e-4f3a", 1.25, 256, '{"message":"sent"}\n\nTraceback')

    assert [e["message"] for e in events] == [
        "START RequestId: c242f13b-649e-4f3a Version: $LATEST", '{"message":"sent"}', " ", "Traceback",
        "END RequestId: c242f13b-649e-4f3a", "REPORT RequestId: c242f13b-649e-4f3a\tDuration: 1250.00 ms\tMemory Size: 256 MB"]
    assert [e["timestamp"] for e in events] == [START_MS] * 4 + [START_MS + 1250] * 2


def test_each_invocation_has_its_own_stream_named_as_lambda_names_them():
    assert function_logs.log_group("reviewtune-local-StartTuningFunction") == "/aws/lambda/reviewtune-local-StartTuningFunction"
    assert function_logs.stream_name(STARTED, "c242f13b-649e-4f3a") == "2026/12/04/[$LATEST]c242f13b649e4f3a"
