"""Whether something is in S3: one object (HeadObject) or any object under a folder (ListObjectsV2). "Not there"
is S3's 404 (``aws_errors.missing``); throttling, outages and denials raise, for the caller to try again."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, names


def exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether the object ``bucket``/``key`` is there."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws_errors.missing(exc):
            return False
        raise
    return True


def holds_objects(s3: Any, uri: str) -> bool:
    """Whether an S3 folder (``s3://bucket/prefix/``) holds at least one object."""
    bucket, prefix = names.parse_s3_uri(uri)
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))
