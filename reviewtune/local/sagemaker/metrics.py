"""MetricDefinitions applied to log lines, as SageMaker does with a training job's CloudWatch log stream."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, definition: dict) -> MetricDefinition:
        """Raises ValueError naming the metric when its Regex does not compile."""
        try:
            return cls(definition["Name"], re.compile(definition["Regex"]))
        except re.error as error:
            raise ValueError(
                f"The Regex of metric definition {definition['Name']!r} is not a valid regular expression: {error}"
            ) from error


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    timestamp: float


class MetricParser:
    """Finds metric values in one log line: the first group of each definition's regex, as a float."""

    def __init__(self, definitions: list[dict]) -> None:
        self.definitions = [MetricDefinition.compile(item) for item in definitions]

    def parse(self, line: str) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        for definition in self.definitions:
            match = definition.pattern.search(line)
            if match is None:
                continue
            text = match.group(1) if match.groups() else match.group(0)
            try:
                found.append((definition.name, float(text)))
            except (TypeError, ValueError):
                continue
        return found
