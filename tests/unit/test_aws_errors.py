"""What an AWS error means: a write DynamoDB refuses for what it holds fails the same way however often it is tried."""

from __future__ import annotations

import pytest

from reviewtune.core import aws_errors
from tests.support.faults import cancelled, client_error


@pytest.mark.parametrize(("error", "refused"), [
    (client_error("ValidationException", "Empty attribute name", "UpdateItem"), True),
    (client_error("ValidationException", "Item size has exceeded the maximum allowed size", "PutItem"), True),
    (client_error("ValidationException", "Empty attribute name", "TransactWriteItems"), True),
    (cancelled("None", "ValidationError"), True),
    (cancelled("ConditionalCheckFailed", "None"), False),  # another writer: decided again, not refused
    (cancelled("ThrottlingError", "None"), False),  # transient: tried again
    (client_error("ProvisionedThroughputExceededException", "slow down", "UpdateItem"), False),
    (client_error("ValidationException", "bad job name", "CreateProcessingJob"), False),  # not DynamoDB's write
    (client_error("AccessDeniedException", "not allowed", "TransactWriteItems"), False),
], ids=["update", "put", "transaction", "cancelled-validation", "condition", "throttled", "throughput",
        "sagemaker", "denied"])
def test_only_dynamodb_writes_refused_for_their_values_count_as_refused(error, refused):
    assert aws_errors.refused_value(error) is refused
    assert not (refused and aws_errors.transient(error))


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_a_head_object_server_error_known_by_its_http_status_alone_is_retried(status):
    # HeadObject's answer has no body: botocore's code is the status ("503", not "SlowDown")
    assert aws_errors.is_retryable(client_error(status, "Service Unavailable", "HeadObject"))
