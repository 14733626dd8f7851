"""A local, SageMaker-compatible service that really runs tuning, training and processing jobs.

``LocalSageMaker(workdir=...).start()`` serves the SageMaker JSON API on 127.0.0.1; point a boto3
``sagemaker`` client at the returned URL. Jobs run as subprocesses (``SubprocessRunner``) or, in tests, as
scripted output (``ScriptedRunner``); tuning is driven by Optuna; state changes go to EventBridge.
"""

from __future__ import annotations

from .errors import ResourceInUse, ResourceLimitExceeded, ResourceNotFound, SageMakerError, ValidationError
from .runners import JobRunner, RunSpec, ScriptedRun, ScriptedRunner, SubprocessRunner
from .service import LocalSageMaker

FakeRunner = ScriptedRunner

__all__ = [
    "FakeRunner",
    "JobRunner",
    "LocalSageMaker",
    "ResourceInUse",
    "ResourceLimitExceeded",
    "ResourceNotFound",
    "RunSpec",
    "SageMakerError",
    "ScriptedRun",
    "ScriptedRunner",
    "SubprocessRunner",
    "ValidationError",
]
