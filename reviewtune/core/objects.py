"""Finding the object an S3 "Object Created" event is about, whichever way its key is encoded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, names
from reviewtune.core.events import S3Object
from reviewtune.core.tuning import DroppedObject

logger = Logger(child=True)


def _head(s3: Any, bucket: str, key: str, version_id: str | None, etag: str | None) -> dict[str, Any] | None:
    """HeadObject of the version the event named (its version id, its ETag); None when that version is not there.

    When S3 refuses for good (a customer-provided key, Glacier: ``aws_errors.object_unreadable``) the answer
    is {} (there, but no facts): the read then fails the same way and rejects the file with S3's reason, so even an
    object the function may not see ends in an outcome. Throttling and server errors raise: the event
    is delivered again."""
    args: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    if etag:
        args["IfMatch"] = names.if_match(etag)
    try:
        return s3.head_object(**args)
    except ClientError as exc:
        if aws_errors.object_gone(exc) is not None:
            return None
        if aws_errors.object_unreadable(exc):
            logger.warning("S3 refuses to read the dropped object", extra={"key": key, "error": aws_errors.text(exc)})
            return {}
        raise


def known_object(
    bucket: str, key: str, version_id: str | None, etag: str | None, size: int | None,
    has_run: Callable[[DroppedObject], bool],
) -> DroppedObject | None:
    """The object of one of the keys ``key`` may stand for whose run exists already (``has_run``), or None.

    Every form counts here, even one longer than S3 allows a key: a run named by it may exist from before such forms
    were left out of the lookups."""
    for candidate in names.key_forms(key):
        obj = DroppedObject(bucket, candidate, version_id, etag, size)
        if has_run(obj):
            return obj
    return None


def unlocated_object(
    bucket: str, key: str, version_id: str | None, etag: str | None, size: int | None,
    has_run: Callable[[DroppedObject], bool] | None,
) -> DroppedObject:
    """The object of an event whose lookups found nothing to go on: the key whose run exists, else the first key a
    lookup tries (the key as given, or its decoded form when the key as given is longer than S3 allows)."""
    known = known_object(bucket, key, version_id, etag, size, has_run) if has_run else None
    return known or DroppedObject(bucket, names.key_candidates(key)[0], version_id, etag, size)


def with_event(obj: DroppedObject, event: S3Object) -> DroppedObject:
    """``obj`` with its event's sequencer and time, which tell uploads of the same bytes apart (``tuning.claim_run``)."""
    return dataclasses.replace(obj, sequencer=event.sequencer, uploaded_at=event.uploaded_at)


def locate_dropped_object(
    s3: Any, bucket: str, key: str, version_id: str | None, etag: str | None, size: int | None,
    has_run: Callable[[DroppedObject], bool] | None = None,
) -> DroppedObject:
    """The dropped object with its key as stored in S3 (its identity) and its size.

    The key as the event gives it is tried first (HeadObject); only if it does not exist, its URL-decoded form
    (``names.key_candidates``: a form longer than S3 allows a key is not tried).
    The size is the event's; HeadObject's where the event has none (or no valid one).
    When neither key holds the version any more (deleted or replaced since the event), the key whose run exists
    (``has_run``: an earlier delivery claimed it before the version went away) is kept, else the first key tried
    (``unlocated_object``):
    start_tuning then rejects the object as gone, and a redelivered event finds that same run.
    Keys outside incoming/ and folder markers are not looked up: start_tuning ignores them.
    """
    if not names.is_accepted_key(key, size):
        return DroppedObject(bucket, key, version_id, etag, size)
    refused: str | None = None  # the first key S3 refused to show: it exists (a missing key is 404)
    for candidate in names.key_candidates(key):
        head = _head(s3, bucket, candidate, version_id, etag)
        if head == {}:
            refused = refused or candidate
        elif head is not None:
            return DroppedObject(bucket, candidate, version_id, etag, size if size is not None else head.get("ContentLength"))
    if refused is not None:
        return DroppedObject(bucket, refused, version_id, etag, size)
    logger.warning("the dropped object is not there any more", extra={"key": key, "version_id": version_id})
    return unlocated_object(bucket, key, version_id, etag, size, has_run)
