"""Bounded, readable reasons: short escaped excerpts of offending values, a few examples and a count.

A reason is stored in DynamoDB, in rejected/<dataset>.error.json and sent through SNS, so it never grows with the file.
"""

from __future__ import annotations

REASON_MAX_CHARS = 2048
# a person's reason (runs stop, runs retry, promote): kept on the run, and a promotion's in the champion's history too
PERSON_REASON_MAX_CHARS = 500
EXCERPT_CHARS = 40
MAX_EXAMPLES = 5


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A value as a short quoted, escaped literal: control and invisible characters shown as escapes."""
    text = value if isinstance(value, str) else str(value)
    head = text[: limit + 1]
    shown = repr(head[:limit]) if len(head) > limit else repr(head)
    if len(text) > limit:
        shown += f"... ({len(text):,} characters)"
    return shown


def bounded(reason: str, limit: int = REASON_MAX_CHARS, *, keep_end: bool = False) -> str:
    """The reason cut to at most ``limit`` characters, saying so when it was cut. ``keep_end``: cut from the middle,
    keeping its first third and its end, where a job's failure says why it failed (SageMaker's ``AlgorithmError: <the
    last lines of its log>, exit code: N``: the error's last line, the signal that killed it)."""
    reason = str(reason)
    if len(reason) <= limit:
        return reason
    if not keep_end:
        marker = " ... (reason shortened)"
        return reason[: limit - len(marker)] + marker
    marker = " ... (shortened) ... "
    head = (limit - len(marker)) // 3
    return reason[:head] + marker + reason[len(reason) - (limit - len(marker) - head):]


class Problems:
    """Row problems found while reading: the first few kept as examples, every one counted."""

    def __init__(self, max_examples: int = MAX_EXAMPLES):
        self.max_examples = max_examples
        self.examples: list[str] = []
        self.count = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"line {line}: {message}")

    def __bool__(self) -> bool:
        return self.count > 0

    def reason(self, what: str = "invalid row") -> str:
        more = self.count - len(self.examples)
        text = f"{self.count:,} {what}{'' if self.count == 1 else 's'}: " + "; ".join(self.examples)
        if more > 0:
            text += f"; and {more:,} more"
        return bounded(text)
