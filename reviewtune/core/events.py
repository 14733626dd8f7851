"""Event models for the Powertools parser: the S3 and SageMaker EventBridge events the functions receive.

The S3 model accepts both ``etag`` (AWS) and ``eTag``; the SageMaker details keep every other field as sent.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


class _Detail(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class S3Bucket(_Detail):
    name: str


class S3Object(_Detail):
    key: str
    size: int | None = None  # None when the event has none or an invalid one: HeadObject's size is used then
    etag: str | None = Field(default=None, validation_alias=AliasChoices("etag", "eTag"))
    version_id: str | None = Field(default=None, validation_alias=AliasChoices("version-id", "versionId"))

    @field_validator("size", mode="before")
    @classmethod
    def _valid_size(cls, value: Any) -> int | None:
        """A whole number of bytes, 0 or more (a digit string too); anything else counts as no size, never as an
        invalid event: the object still gets its outcome."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value >= 0 else None
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value.strip())
        return None


class ObjectCreatedDetail(_Detail):
    bucket: S3Bucket
    object: S3Object


class ObjectCreatedEvent(EventBridgeModel):
    detail: ObjectCreatedDetail


class TuningJobDetail(_Detail):
    HyperParameterTuningJobName: str
    HyperParameterTuningJobStatus: str
    FailureReason: str | None = None


class TuningJobStateChange(EventBridgeModel):
    detail: TuningJobDetail


class ProcessingJobDetail(_Detail):
    ProcessingJobName: str
    ProcessingJobStatus: str
    FailureReason: str | None = None
    ExitMessage: str | None = None
    ProcessingOutputConfig: dict[str, Any] | None = None


class ProcessingJobStateChange(EventBridgeModel):
    detail: ProcessingJobDetail
