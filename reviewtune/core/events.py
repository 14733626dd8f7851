"""The S3 and SageMaker EventBridge events the functions receive, read into small frozen dataclasses.

Each reader checks the envelope (``source``, ``detail-type``, a ``detail`` object) and the fields the functions use,
and raises :class:`InvalidEventError` naming the first one that is missing or of the wrong type: the invocation
fails and the event ends in the function's dead-letter queue. The rest of a detail is kept as sent.

Plain code rather than pydantic models: the functions read a handful of fields, and importing pydantic was about
a fifth of a handler's cold start. The S3 object accepts both ``etag`` (AWS) and ``eTag`` (moto), and both
``version-id`` and ``versionId``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reviewtune.core import names
from reviewtune.core.errors import InvalidEventError
from reviewtune.core.runs import parse_iso

OBJECT_CREATED = ("aws.s3", "Object Created")
TUNING_JOB_STATE_CHANGE = ("aws.sagemaker", "SageMaker HyperParameter Tuning Job State Change")
PROCESSING_JOB_STATE_CHANGE = ("aws.sagemaker", "SageMaker Processing Job State Change")


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int | None = None  # None when the event has none or an invalid one: HeadObject's size is used then
    etag: str | None = None
    version_id: str | None = None  # None for an object written while the bucket had no versioning ("null" too)
    sequencer: str | None = None  # S3's order of the key's events: one upload's events share it, a later upload's is higher
    uploaded_at: str | None = None  # the event's time (ISO 8601): when S3 wrote the object


@dataclass(frozen=True)
class ObjectCreated:
    """The detail of an S3 "Object Created" event."""

    bucket: str
    object: S3Object


@dataclass(frozen=True)
class JobStateChange:
    """The detail of a SageMaker tuning or processing job's state-change event: its name, status and every field."""

    name: str
    status: str
    detail: Mapping[str, Any] = field(repr=False)


def _detail(event: Any, expected: tuple[str, str]) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"the event must be a JSON object, got {type(event).__name__}")
    source, detail_type = expected
    if (event.get("source"), event.get("detail-type")) != expected:
        raise InvalidEventError(
            f"expected a {detail_type!r} event from {source}, got detail-type {event.get('detail-type')!r} "
            f"from {event.get('source')!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError(f"the {detail_type!r} event has no detail object")
    return detail


def _text(mapping: Mapping[str, Any], where: str, *names: str, required: bool = True) -> str | None:
    """The first of ``names`` present in ``mapping``: a non-empty string (or None when absent and not required)."""
    for name in names:
        value = mapping.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or (required and not value):
            raise InvalidEventError(f"{where}.{name} must be a non-empty string, got {value!r}")
        return value
    if required:
        raise InvalidEventError(f"{where}.{names[0]} is missing")
    return None


def _time(value: Any) -> str | None:
    """The event's time as given when it is one (ISO 8601), else none, never an invalid event."""
    try:
        parse_iso(value)
    except (AttributeError, TypeError, ValueError):
        return None
    return value


def _sequencer(value: Any) -> str | None:
    """S3's sequencer (hex digits); anything else counts as none, never as an invalid event."""
    text = value.strip() if isinstance(value, str) else ""
    return text if text.isascii() and text.isalnum() else None


def _size(value: Any) -> int | None:
    """A whole number of bytes, 0 or more (a digit string too); anything else counts as no size, never as an invalid
    event: the object still gets its outcome (start_tuning then uses HeadObject's size)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def sagemaker_time(value: Any) -> datetime | None:
    """A time of a SageMaker event (milliseconds since the epoch, a number or, in some events, a string of digits) or
    description (a datetime); None when it is neither."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e14:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def object_created(event: Any) -> ObjectCreated:
    """The bucket and object of an S3 "Object Created" EventBridge event."""
    detail = _detail(event, OBJECT_CREATED)
    bucket, obj = detail.get("bucket"), detail.get("object")
    if not isinstance(bucket, Mapping):
        raise InvalidEventError("detail.bucket is missing")
    if not isinstance(obj, Mapping):
        raise InvalidEventError("detail.object is missing")
    return ObjectCreated(
        bucket=_text(bucket, "detail.bucket", "name"),
        object=S3Object(
            key=_text(obj, "detail.object", "key"),
            size=_size(obj.get("size")),
            etag=_text(obj, "detail.object", "etag", "eTag", required=False),
            version_id=names.object_version(_text(obj, "detail.object", "version-id", "versionId", required=False)),
            sequencer=_sequencer(obj.get("sequencer")),
            uploaded_at=_time(event.get("time")),
        ),
    )


def _job_state_change(event: Any, detail_type: str, job: str) -> JobStateChange:
    """The ``{job}Name`` and ``{job}Status`` fields of a SageMaker job's state change event of ``detail_type``."""
    detail = _detail(event, detail_type)
    return JobStateChange(
        name=_text(detail, "detail", f"{job}Name"), status=_text(detail, "detail", f"{job}Status"), detail=detail
    )


def tuning_job_state_change(event: Any) -> JobStateChange:
    """The name, status and detail of a "SageMaker HyperParameter Tuning Job State Change" event."""
    return _job_state_change(event, TUNING_JOB_STATE_CHANGE, "HyperParameterTuningJob")


def processing_job_state_change(event: Any) -> JobStateChange:
    """The name, status and detail of a "SageMaker Processing Job State Change" event."""
    return _job_state_change(event, PROCESSING_JOB_STATE_CHANGE, "ProcessingJob")
