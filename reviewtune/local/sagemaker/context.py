"""What every job of one service shares: where it works, its AWS clients, its runner, its tags."""

from __future__ import annotations

import copy
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import EventPublisher
    from .runners import JobRunner


def now() -> float:
    """Timestamps are epoch seconds (floats), which is how the JSON protocol carries them."""
    return time.time()


class TagStore:
    """Tags by resource ARN (ARNs compare case-insensitively, as SageMaker lower-cases job names in them)."""

    def __init__(self) -> None:
        self._tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def register(self, arn: str, tags: list[dict[str, str]] | None = None) -> None:
        with self._lock:
            self._tags.setdefault(arn.lower(), {})
        if tags:
            self.add(arn, tags)

    def known(self, arn: str) -> bool:
        return arn.lower() in self._tags

    def add(self, arn: str, tags: list[dict[str, str]]) -> None:
        with self._lock:
            current = self._tags.setdefault(arn.lower(), {})
            for tag in tags:
                current[tag["Key"]] = tag["Value"]

    def as_dict(self, arn: str) -> dict[str, str]:
        with self._lock:
            return dict(self._tags.get(arn.lower(), {}))

    def as_list(self, arn: str) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in self.as_dict(arn).items()]


@dataclass
class ServiceContext:
    workdir: Path
    region: str
    account_id: str
    s3: Any
    events: EventPublisher
    runner: JobRunner
    total_cpus: int
    image_entrypoints: dict[str, list[str]] = field(default_factory=dict)
    tags: TagStore = field(default_factory=TagStore)
    logs: Any = None  # a CloudWatch Logs client: jobs' lines go there too (cloudwatch_logs.py)
    shutting_down: threading.Event = field(default_factory=threading.Event)

    def arn(self, resource: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource}/{name.lower()}"


def resolve_python(command: list[str]) -> list[str]:
    """A leading ``python``/``python3`` runs with this interpreter (the one with the project's packages)."""
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def drop_none(value: Any) -> Any:
    """Deep copy without None values, so optional members are absent rather than null in responses."""
    if isinstance(value, dict):
        return {key: drop_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_none(item) for item in value]
    return copy.copy(value)
