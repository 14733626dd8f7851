"""Publishing run notifications to SNS, always within SNS's limits."""

from __future__ import annotations

import re
from typing import Any

from reviewtune.core import page

SUBJECT_MAX = 99  # SNS: "less than 100 characters long"
# SNS: a message (body plus attribute names, types and values) is at most 256 KiB in UTF-8. The body is cut to leave
# room for the attributes and a margin.
MESSAGE_MAX_BYTES = 256 * 1024
MESSAGE_MARGIN_BYTES = 8 * 1024
ATTRIBUTE_MAX_CHARS = 256
TRUNCATED = "\n\n[message shortened to fit SNS; the full record is in DynamoDB]"
_NOT_ALLOWED = re.compile(r"[^\x20-\x7e]")
# Control characters other than tab and line feed, and lone surrogates (not encodable as UTF-8).
_UNSENDABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def subject_line(text: Any) -> str:
    """SNS subjects: printable ASCII, no line breaks, fewer than 100 characters, never empty."""
    clean = _NOT_ALLOWED.sub("?", " ".join(str(text).split())) or "reviewtune"
    return clean if len(clean) <= SUBJECT_MAX else clean[: SUBJECT_MAX - 3] + "..."


def _attribute(value: Any) -> str:
    text = _UNSENDABLE.sub("?", str(value)).strip() or "?"
    return text[:ATTRIBUTE_MAX_CHARS]


def message_body(body: Any, room: int) -> str:
    """The body as valid UTF-8 text of at most ``room`` bytes, cut on a character boundary, saying so when cut. A
    control character but the line break (from a file name, a person's reason), a bidirectional control or a
    character drawn as nothing is written as its escape (``\\x1b``, ``\\u202e``), as the console and the report show
    it: in a mail it would reverse the rest of its line, or hide itself, and name another file; a lone surrogate
    (no UTF-8 can carry it) too."""
    text = _SURROGATES.sub(lambda found: f"\\u{ord(found.group()):04x}",
                           page.escaped_controls(str(body).replace("\r\n", "\n"))) or "(no text)"
    data = text.encode("utf-8")
    if len(data) <= room:
        return text
    keep = room - len(TRUNCATED.encode("utf-8"))
    return data[:keep].decode("utf-8", "ignore") + TRUNCATED


def publish(sns: Any, topic_arn: str, subject: Any, body: Any, *, run_id: Any, status: Any) -> str:
    attributes = {
        "run_id": {"DataType": "String", "StringValue": _attribute(run_id)},
        "status": {"DataType": "String", "StringValue": _attribute(status)},
    }
    attribute_bytes = sum(
        len(name.encode()) + len(a["DataType"]) + len(a["StringValue"].encode()) for name, a in attributes.items()
    )
    subject_text = subject_line(subject)
    room = MESSAGE_MAX_BYTES - attribute_bytes - len(subject_text) - MESSAGE_MARGIN_BYTES
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=subject_text,
        Message=message_body(body, room),
        MessageAttributes=attributes,
    )
    return response["MessageId"]
