"""The numbers README "What is retried, and for how long" promises ops teams are the template's and the code's."""

from __future__ import annotations

import json
import re

import pytest

from reviewtune.console import dead_letters
from reviewtune.core import aws_errors, missed_drops, outbox, reconciler
from tests.template.helpers import FUNCTIONS, ROOT, parameter_defaults, properties

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("**What is retried, and for how long.**"):README.index("**Checked call by call.**")]


def parameter_default(name: str) -> str:
    return parameter_defaults()[name]


def _said(pattern: str) -> re.Match[str]:
    found = re.search(pattern, SECTION)
    assert found, f"README's retry table no longer says {pattern!r}"
    return found


def _seconds(amount: str, unit: str) -> int:
    return int(amount) * {"s": 1, "min": 60, "h": 3600, "day": 86400, "days": 86400}[unit]


def test_the_start_attempts_and_their_back_off():
    attempts = _said(r"`StartMaxAttempts` \((\d+)\) tries")
    assert int(attempts.group(1)) == int(parameter_default("StartMaxAttempts"))
    first, last = _said(r"after (\d+), \d+, \d+ \.\.\. (\d+) min").groups()
    assert (int(first) * 60, int(last) * 60) == (
        aws_errors.BACKOFF_BASE_SECONDS, aws_errors.BACKOFF_MAX_SECONDS
    )


def test_the_deadlines_of_each_state():
    said = _said(r"starting (\d+) (h), queued (\d+) (h), tuning (\d+) (days), evaluating (\d+) (h)").groups()
    deadlines = json.loads(parameter_default("RunStateDeadlines"))
    assert [deadlines[state] for state in ("CLAIMED", "QUEUED", "TUNING", "EVALUATING")] == [
        _seconds(said[i], said[i + 1]) for i in range(0, 8, 2)
    ]


def test_the_reconciler_s_schedule_and_its_restarts_of_claims():
    minutes = _said(r"every reconciler pass \((\d+) min\)").group(1)
    assert parameter_default("ReconcileSchedule") == f"rate({minutes} minutes)"
    stale, reserved, per_pass = _said(
        r"starts a claim untouched for (\d+) min over, last in its pass \(each while the invocation has (\d+) s left, so a "
        r"pass nearly spent restarts none; (\d+) a pass when its time is not known\)"
    ).groups()
    assert (int(stale) * 60, int(per_pass), int(reserved)) == (
        reconciler.STALE_CLAIM_SECONDS, reconciler.MAX_RESTARTS_PER_PASS, reconciler.RESTART_SECONDS_RESERVED
    )
    restart, tail = _said(r"more while its invocation has (\d+) s left when a claim waits for a restart, (\d+) s "
                          r"otherwise").groups()
    assert (int(restart), int(tail)) == (reconciler.OUTBOX_SECONDS_RESERVED, reconciler.TAIL_SECONDS_RESERVED)
    listed, left, first = _said(r"at most ([\d,]+) versions a pass, going on from where the last stopped; listing and "
                                r"claiming stop with (\d+) minutes of the pass left, after its first (\d+) versions "
                                r"looked up").groups()
    assert (int(listed.replace(",", "")), int(left) * 60, int(first)) == (
        missed_drops.MAX_VERSIONS_PER_PASS, reconciler.SWEEP_SECONDS_RESERVED, missed_drops.MIN_LOOKUPS_PER_PASS)


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_the_retries_of_eventbridge_and_lambda(function_id):
    lambda_retries = _said(r"Lambda runs it again with the same event \((\d+) retries,").group(1)
    retries, window = _said(r"EventBridge's own retries, up to (\d+) within (\d+) h, cover only").groups()
    function = properties(function_id)
    [rule] = [event["Properties"] for event in function["Events"].values() if event["Type"] == "EventBridgeRule"]
    assert rule["RetryPolicy"] == {"MaximumRetryAttempts": int(retries), "MaximumEventAgeInSeconds": int(window) * 3600}
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == int(lambda_retries)


def test_the_outbox_s_lease_and_its_tries_to_record_a_sent_message():
    tries, seconds = _said(r"\((\w+) tries over ([\d.]+) s\)").groups()
    waits = [outbox.MARK_FIRST_WAIT_SECONDS * 2**attempt for attempt in range(outbox.MARK_TRIES - 1)]
    assert (tries, float(seconds)) == ({4: "four"}.get(outbox.MARK_TRIES), pytest.approx(sum(waits)))
    minutes = _said(r"the outbox's (\d+)-minute lease").group(1)
    assert int(minutes) * 60 == outbox.LEASE_SECONDS


def test_a_dead_letter_the_command_reads_is_hidden_for_at_most_the_time_the_readme_says():
    hidden = re.search(r"a message\s+read is hidden for at most (\d+) (s|min)", README)
    assert hidden, "README no longer says how long a dead letter `reviewtune dead-letters` reads stays hidden"
    assert _seconds(*hidden.groups()) == dead_letters.PEEK_SECONDS
