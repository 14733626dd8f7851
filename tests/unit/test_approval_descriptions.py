"""Which approval descriptions are reviewtune's own: a package a person rejects without a description of its own keeps
the one reviewtune gave it last, which must not be shown as the person's reason (former_champions._rejected)."""

from __future__ import annotations

import pytest

from reviewtune.core import former_champions, registry, withdrawal
from reviewtune.core.champion import Champion


def champion() -> Champion:
    return Champion(dataset="team/a.tsv", run_id="reviewtune-0123456789abcdef", accuracy=0.74, test_rows=308,
                    test_split="sha256:x", changed_at="2026-12-01T10:00:00Z", version=2)


@pytest.mark.parametrize("description", [
    former_champions.CHAMPION_APPROVED,
    withdrawal.CHAMPION_SINCE,
    f"{registry.CHAMPION_DESCRIPTION_PREFIX}new champion: challenger 75.20 % vs champion 73.10 % on the same 309 test reviews",
    f"{registry.PROMOTED_DESCRIPTION_PREFIX}arn:aws:iam::1:user/ops: rollback",
    registry.DECISION_CHANGED,
    former_champions._why(champion()),
    withdrawal.reason({"run_id": "reviewtune-0123456789abcdef", "status": "SUCCEEDED"}),
    withdrawal.reason({"run_id": "reviewtune-0123456789abcdef", "status": "FAILED", "failure_reason": "deadline"}),
    withdrawal.reason({"run_id": "reviewtune-0123456789abcdef", "status": "STOPPED"}),
    f"{registry.CHAMPION_DESCRIPTION_PREFIX}already champion",
    f"{registry.CHAMPION_DESCRIPTION_PREFIX}first champion: challenger 74.00 % on 308 test reviews",
])
def test_every_description_reviewtune_writes_is_known_as_its_own(description):
    assert registry.written_by_reviewtune(description)


@pytest.mark.parametrize("description", ["bias found in the audit", "run it again later", "champion data leak",
                                         "champion: bias found in the audit", "promoted manually by mistake", "", None])
def test_a_person_s_description_is_not_taken_for_reviewtune_s(description):
    assert not registry.written_by_reviewtune(description)
