"""Finding the object an S3 "Object Created" event is about, whichever way its key is encoded."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import names
from reviewtune.core.tuning import DroppedObject

logger = Logger(child=True)
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


def _head(s3: Any, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
    args: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    try:
        return s3.head_object(**args)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise


def locate_dropped_object(
    s3: Any, bucket: str, key: str, version_id: str | None, etag: str | None, size: int | None
) -> DroppedObject:
    """The dropped object with its key as stored in S3 (its identity) and its size.

    The key as the event gives it is tried first (HeadObject); only if it does not exist, its URL-decoded form.
    Keys outside incoming/ and folder markers are not looked up: start_tuning ignores them.
    """
    if not names.is_accepted_key(key):
        return DroppedObject(bucket, key, version_id, etag, size)
    for candidate in names.key_candidates(key):
        head = _head(s3, bucket, candidate, version_id)
        if head is not None:
            # The event's size first (what the brief limit is checked on), HeadObject's where the event has none.
            return DroppedObject(bucket, candidate, version_id, etag, size if size is not None else head.get("ContentLength"))
    logger.warning("the dropped object does not exist (deleted since?)", extra={"key": key})
    return DroppedObject(bucket, key, version_id, etag, size)
