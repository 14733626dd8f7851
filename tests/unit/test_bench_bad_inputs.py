"""`python bench/bad_inputs.py > table.md`: the catalogue's table alone on standard output, whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.bad_inputs import CATALOGUE

REPO = Path(__file__).resolve().parents[2]


def test_the_table_is_alone_on_stdout_and_the_function_s_logs_go_to_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "bench/bad_inputs.py", "--width", "60"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["| # | bad input | bytes | outcome | messages | as expected | reason |", "|---|---|---|---|---|---|---|"]
    rows = lines[2:2 + len(CATALOGUE)]
    assert [row.split(" | ")[1] for row in rows] == [bad.name for bad in CATALOGUE]
    assert all(row.startswith("| ") and row.endswith(" |") and " | REJECTED | 1 | yes | " in row for row in rows)
    assert lines[2 + len(CATALOGUE):] == ["", f"{len(CATALOGUE)} of {len(CATALOGUE)} rejected as expected"]
    assert '"level":"WARNING"' in done.stderr.replace(" ", "")  # the rejections' log lines, kept
