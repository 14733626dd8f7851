"""Errors of the local SageMaker service, each one an AWS error code that botocore turns into a ClientError."""

from __future__ import annotations


class SageMakerError(Exception):
    """An API error answered as HTTP 400 with ``{"__type": code, "message": message}``."""

    code = "InternalFailure"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(SageMakerError):
    """The request is malformed or inconsistent (AWS ``ValidationException``)."""

    code = "ValidationException"


class ResourceInUse(SageMakerError):
    """A resource with that name already exists (names are unique case-insensitively)."""

    code = "ResourceInUse"


class ResourceNotFound(SageMakerError):
    """No resource with that name or ARN."""

    code = "ResourceNotFound"


class ResourceLimitExceeded(SageMakerError):
    """The request asks for more than a service limit allows."""

    code = "ResourceLimitExceeded"


class UnknownOperation(SageMakerError):
    """The ``X-Amz-Target`` names an operation this service does not implement."""

    code = "UnknownOperationException"


class SerializationError(SageMakerError):
    """The request body is not a JSON object."""

    code = "SerializationException"
