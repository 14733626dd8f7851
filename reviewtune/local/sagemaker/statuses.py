"""Status values, spelled exactly as SageMaker spells them."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """TrainingJobStatus and ProcessingJobStatus."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED)


class SecondaryStatus(StrEnum):
    """The training job's SecondaryStatus (the stages inside TrainingJobStatus)."""

    STARTING = "Starting"
    DOWNLOADING = "Downloading"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    COMPLETED = "Completed"
    FAILED = "Failed"


class TuningJobStatus(StrEnum):
    """HyperParameterTuningJobStatus."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class ObjectiveStatus(StrEnum):
    """Whether a tuning trial produced its objective metric."""

    SUCCEEDED = "Succeeded"
    PENDING = "Pending"
    FAILED = "Failed"
