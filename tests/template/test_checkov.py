"""The IaC gate: checkov finds no failed check in template.yaml, and every check it skips is one the template
skips on purpose, with a reason, in the resource's Metadata."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.template.helpers import ROOT, TEMPLATE_PATH, resources

CHECKOV_VENV = Path(os.environ.get("CHECKOV_VENV", ROOT / ".venv-checkov"))
CHECKOV = CHECKOV_VENV / "bin" / "checkov"


def declared_skips() -> dict[tuple[str, str], str]:
    """(check id, logical id) -> the reason written in the resource's Metadata."""
    found = {}
    for logical_id, resource in resources().items():
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
            found[(skip["id"], logical_id)] = skip.get("comment", "")
    return found


def test_every_skip_names_a_check_and_says_why():
    skips = declared_skips()
    assert skips, "the template skips some checks (see the Metadata of the functions, queues, tables)"
    for (check_id, logical_id), comment in skips.items():
        assert re.fullmatch(r"CKV2?_AWS_\d+", check_id), (logical_id, check_id)
        assert len(comment.split()) >= 8, f"{logical_id} skips {check_id} without a reason"


@pytest.mark.skipif(
    not CHECKOV.exists(),
    reason=f"no checkov at {CHECKOV} (`make checkov` creates {CHECKOV_VENV}; set CHECKOV_VENV to use another one)",
)
def test_checkov_finds_no_failed_check_and_skips_only_what_the_template_declares():
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--framework", "cloudformation", "-f", str(TEMPLATE_PATH), "-o", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert result.returncode == 0, result.stderr[-2000:]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 30
    skipped = {
        (c["check_id"], c["resource"].split(".", 1)[1]): c["check_result"]["suppress_comment"]
        for c in report["results"]["skipped_checks"]
    }
    assert skipped == declared_skips()
