"""What an AWS error means for a run: try again later (throttling, quotas, outages) or give up now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

# Errors that go away when tried again later. Anything else (ValidationException, AccessDeniedException,
# ResourceNotFound...) will not, and ends the run at once with AWS's own text.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ResourceLimitExceeded",
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        # a HeadObject answer has no body, so its code is the HTTP status: throttling (503 SlowDown), server errors
        "500",
        "502",
        "503",
        "504",
        # SageMaker's answer to a change that met another one (CreateModelPackage, UpdateModelPackage: two runs of a
        # dataset registering at once); the ClientToken makes a repeated CreateModelPackage safe
        "ConflictException",
    }
)
# What S3 answers when the object (or the version) an event named is no longer there. GetObject says NoSuchKey (no
# version asked; also when a delete marker is now the current version) or NoSuchVersion (that version was deleted);
# HeadObject has no body, so its code is the HTTP status: 404, or 405 when the version asked is a delete marker.
# A read with If-Match (the event's ETag) of a key overwritten since fails 412 PreconditionFailed.
# Throttling (503 SlowDown) and server errors (500) are none of these: they are retried.
OBJECT_DELETED_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound", "405", "MethodNotAllowed"})
OBJECT_REPLACED_CODES = frozenset({"PreconditionFailed", "412"})
# S3's answer for an object that is not there when no version is asked (HeadObject: its HTTP status alone). A role
# that may not list the bucket gets 403 AccessDenied instead: the functions may list it, so that this is what they see.
OBJECT_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# What S3 answers when it will not give the object to the function however often it is asked: a customer-provided
# encryption key (SSE-C: HeadObject / GetObject without the key fail 400), an object archived to a Glacier class
# (403 InvalidObjectState), a KMS key that is disabled or gone (KMS.DisabledException, KMS.NotFoundException...).
# HeadObject has no body, so its code is the HTTP status alone. AccessDenied (403) is not among them: during a stack
# update IAM may deny for a moment; it is retried, and a denial that lasts ends the run at the claim's deadline with
# S3's words (the reconciler keeps the last start error).
OBJECT_UNREADABLE_CODES = frozenset({"400", "BadRequest", "InvalidRequest", "InvalidArgument", "InvalidObjectState"})
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 1800


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def lost_race(exc: ClientError) -> bool:
    """Whether DynamoDB refused a conditional write because the item changed meanwhile (its condition failed, or a
    transaction was writing it at that moment)."""
    return code(exc) in ("ConditionalCheckFailedException", "TransactionConflictException")


def text(exc: ClientError) -> str:
    """``Code: message`` as AWS sent them."""
    message = exc.response.get("Error", {}).get("Message", "")
    return f"{code(exc)}: {message}" if message else code(exc)


def describe(exc: BaseException) -> str:
    """AWS's ``Code: message`` for an AWS error, ``Type: message`` for anything else."""
    return text(exc) if isinstance(exc, ClientError) else f"{type(exc).__name__}: {exc}"


def is_retryable(exc: ClientError) -> bool:
    return code(exc) in RETRYABLE_CODES


# A transaction's cancellation reasons that go away when it is sent again ("None": that part was not the cause).
TRANSIENT_CANCELLATION_REASONS = frozenset(
    {None, "None", "ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict"}
)


def transient(exc: BaseException) -> bool:
    """Worth another try: throttling or a server error (RETRYABLE_CODES), a DynamoDB transaction that met another one
    or was throttled, or no answer at all (a timeout, a lost connection: botocore's own errors)."""
    if isinstance(exc, BotoCoreError):
        return True
    if not isinstance(exc, ClientError):
        return False
    if is_retryable(exc) or code(exc) == "TransactionInProgressException":
        return True
    reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons") or ()}
    return code(exc) == "TransactionCanceledException" and reasons <= TRANSIENT_CANCELLATION_REASONS


# DynamoDB's writes: what refuses a value it cannot store (an empty map key, a number it cannot hold...)
DYNAMODB_WRITES = frozenset({"TransactWriteItems", "UpdateItem", "PutItem"})


def refused_value(exc: ClientError) -> bool:
    """Whether DynamoDB refused a write for what it holds (``ValidationException``, or a transaction cancelled with
    ``ValidationError``): the same write fails the same way however often it is tried."""
    if exc.operation_name not in DYNAMODB_WRITES:
        return False
    reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons") or ()}
    return code(exc) == "ValidationException" or (
        code(exc) == "TransactionCanceledException" and "ValidationError" in reasons)


def not_found(exc: ClientError) -> bool:
    """Whether SageMaker says the job asked for does not exist: ``ResourceNotFound``, or a ``ValidationException``
    saying it cannot be found (DescribeTrainingJob's and DescribeProcessingJob's answer)."""
    if code(exc) == "ResourceNotFound":
        return True
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return code(exc) == "ValidationException" and ("not find" in message or "not found" in message)


def missing(exc: ClientError) -> bool:
    """Whether S3 says the object asked for is not there."""
    return code(exc) in OBJECT_MISSING_CODES


def object_gone(exc: ClientError) -> str | None:
    """Why an S3 read failed when the object version asked for is gone ("deleted" or "replaced"); None otherwise."""
    if code(exc) in OBJECT_DELETED_CODES:
        return "deleted"
    if code(exc) in OBJECT_REPLACED_CODES:
        return "replaced"
    return None


def object_unreadable(exc: ClientError) -> bool:
    """Whether S3 refused to read an object for a reason that trying again will not change."""
    name = code(exc)
    if name.startswith("KMS."):
        return "Throttl" not in name and "LimitExceeded" not in name
    return name in OBJECT_UNREADABLE_CODES


def attempts_made(attempt: dict[str, Any]) -> str:
    """"1 attempt", "3 attempts": how often a start was tried, for the reasons people read."""
    count = attempt.get("attempts", "?")
    return f"{count} attempt{'' if count == 1 else 's'}"


def next_attempt(previous: dict[str, Any] | None, exc: BaseException, now: datetime | None = None) -> dict[str, Any]:
    """The bookkeeping of one more failed attempt: count, AWS's text (or the error's, for a call that got no answer),
    and when to try next (exponential)."""
    now = now or datetime.now(UTC)
    attempts = int((previous or {}).get("attempts", 0)) + 1
    delay = min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS)
    from reviewtune.core.runs import now_iso

    return {
        "attempts": attempts,
        "last_error": describe(exc),
        "last_attempt_at": now_iso(now),
        "next_attempt_at": now_iso(now + timedelta(seconds=delay)),
    }


def is_due(attempt: dict[str, Any] | None, now: datetime | None = None) -> bool:
    """Whether a step that failed with a retryable error may be tried again."""
    if not attempt or not attempt.get("next_attempt_at"):
        return True
    from reviewtune.core.runs import now_iso

    return attempt["next_attempt_at"] <= now_iso(now)
