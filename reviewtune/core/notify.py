"""Publishing run notifications to SNS."""

from __future__ import annotations

import re
from typing import Any

SUBJECT_MAX = 100
_NOT_ALLOWED = re.compile(r"[^\x20-\x7e]")


def subject_line(text: str) -> str:
    """SNS subjects: printable ASCII, no line breaks, at most 100 characters."""
    clean = _NOT_ALLOWED.sub("?", " ".join(text.split()))
    return clean if len(clean) <= SUBJECT_MAX else clean[: SUBJECT_MAX - 3] + "..."


def publish(sns: Any, topic_arn: str, subject: str, body: str, *, run_id: str, status: str) -> str:
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=subject_line(subject),
        Message=body,
        MessageAttributes={
            "run_id": {"DataType": "String", "StringValue": run_id},
            "status": {"DataType": "String", "StringValue": status},
        },
    )
    return response["MessageId"]
