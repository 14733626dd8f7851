"""The champion decision's place in a run's HTML report.

The evaluation job writes the report before record_results decides whether its model becomes the dataset's champion.
So the page holds a marked place, between ``START`` and ``END``, whose first content (``pending``) says where the
decision will be told; record_results puts the decision there once it is recorded (report_annotation.py). A page
that is never filled (an S3 failure at that moment) still says where to read the decision.

Standard library only, and no import from reviewtune: the evaluation job writes the report with this very file
(training_code/report_decision.py links to it, and the code bundle carries the file).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

START = "<!-- reviewtune:champion-decision -->"
END = "<!-- /reviewtune:champion-decision -->"
TEXT_MAX_CHARS = 2000  # a decision's sentence is ~150 characters; an error text is bounded where it is recorded too


def pending(run_id: str) -> str:
    """The marked place as the evaluation job writes it: the decision is not taken yet."""
    command = f"reviewtune runs show {shlex.quote(run_id)}"
    return (f'{START}<p data-key="champion-decision-pending">Whether this model becomes the dataset\'s champion is '
            f"decided when the run's results are recorded, after this page was made: <code>{escape(command)}</code> "
            f"says it.</p>{END}")


def _text(value: Any) -> str:
    text = str(value)
    return escape(text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 3] + "...")


def decided(champion: Mapping[str, Any], registry: Mapping[str, Any] | None = None, dataset: str | None = None,
            quote: Callable[[str], str] = shlex.quote) -> str:
    """The marked place once record_results decided: the run item's ``champion`` field (its sentence, or the error
    that left it undecided) and the model package's approval from its ``registry`` field, as they were when the
    results were recorded; a later challenger or a promotion by hand changes the champion (and the packages'
    approvals), which the command for ``dataset`` shows, the dataset written by ``quote`` (page.shell_word: a name
    holding a control character in the form a shell reads back)."""
    if champion.get("error"):
        sentence = f"{champion.get('decision') or 'not decided'}: {champion['error']}"
    else:
        sentence = champion.get("reason") or champion.get("decision") or "not decided"
    lines = [f'<p data-key="champion-decision">{_text(sentence)}</p>']
    registry = registry or {}
    arn, error = registry.get("model_package_arn"), registry.get("error")
    if arn:
        lines.append(f'<p>Model package <code>{_text(arn)}</code>: '
                     f'<span data-key="package-approval">{_text(registry.get("approval") or "n/a")}</span></p>')
    if error:  # as the message says it: registering the model failed, or approving (or withdrawing) its package
        lines.append(f'<p data-key="registry-error">Model registry: {"" if arn else "registration failed: "}'
                     f"{_text(error)}</p>")
    if dataset:
        command = f"reviewtune champion --dataset {quote(dataset)}"
        lines.append(f'<p class="sub">As decided when the run\'s results were recorded, the package\'s approval '
                     "too; the dataset's champion now, and every change since (a promotion puts the package replaced "
                     f"back to pending): <code>{escape(command)}</code>.</p>")
    return START + "".join(lines) + END


def fill(page: str, place: str) -> str | None:
    """``page`` with its marked place replaced by ``place`` (``decided``'s), or None when the page has no such place
    (a report made before it had one)."""
    start = page.find(START)
    end = page.find(END, start + len(START)) if start >= 0 else -1
    if end < 0:
        return None
    return page[:start] + place + page[end + len(END):]
