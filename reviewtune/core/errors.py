"""Exceptions of reviewtune's core. One base class, one narrow class per failure."""

from __future__ import annotations


class ReviewtuneError(Exception):
    """Base class of every error reviewtune raises on purpose."""


class ConfigError(ReviewtuneError):
    """The function's configuration (environment) is missing or invalid."""


class DatasetError(ReviewtuneError):
    """A dropped review file cannot be used; the message says what to fix."""

    keeps_copy = True  # a copy of the file is kept under rejected/ beside the reason
    retry_of: str | None = None  # the run the rejected version tunes again (`runs retry`), when it was read


class FileTooLargeError(DatasetError):
    """The file is over the size limit: refused from its size alone, neither read nor copied."""

    keeps_copy = False


class ObjectGoneError(DatasetError):
    """The dropped version of the object no longer exists (deleted, or replaced by a newer upload) and cannot be read."""

    keeps_copy = False


class ObjectUnreadableError(DatasetError):
    """S3 refuses to give the dropped version to the function, and will refuse again (encrypted with a customer key,
    archived to Glacier, under a disabled or deleted KMS key): it can be neither read nor copied."""

    keeps_copy = False


class RangesError(ConfigError):
    """The hyperparameter ranges JSON is invalid."""


class RunNotFoundError(ReviewtuneError):
    """No run item exists for a job that belongs to this stack."""


class EvaluationOutputError(ReviewtuneError):
    """The evaluation job completed but its evaluation.json is missing or malformed."""


class RunNotReadyError(ReviewtuneError):
    """An event arrived before the run reached the state it belongs to; delivering it again later will work."""


class InvalidEventError(ReviewtuneError):
    """An event a function received lacks a field it needs, or is not the kind of event the function handles."""
