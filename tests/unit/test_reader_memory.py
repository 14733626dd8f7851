"""Validating a file takes memory independent of its size (beyond the distinct reviews kept for the split).

Each size runs in its own process, reading a file generated on the fly (never held in memory), and reports how much
its peak resident memory grew while the file was validated and split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20

SCRIPT = """
import json, re, sys
from reviewtune.core.dataset import split_stream
from tests.support.generated import GeneratedReviews

def status(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

body = GeneratedReviews(int(sys.argv[1]))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
result = split_stream(body, "generated.tsv")
print(json.dumps({"grew_kib": status("VmHWM") - before, "bytes": body.total, "summary": result.summary()}))
"""


def validate_in_subprocess(size: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(size)], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak RSS")
def test_peak_memory_of_validation_does_not_grow_with_the_file():
    small = validate_in_subprocess(20 * MiB)
    large = validate_in_subprocess(200 * MiB)
    assert large["bytes"] >= 200 * MiB - 2 * MiB
    # Both files hold the same 3,000 distinct reviews, repeated: the same split, ten times the rows read.
    assert large["summary"]["rows"] == small["summary"]["rows"] == {"train": 2700, "validation": 150, "test": 150}
    assert large["summary"]["rows_read"] > 9 * small["summary"]["rows_read"]
    assert large["summary"]["duplicates_removed"] == large["summary"]["rows_read"] - 3000
    grew_small, grew_large = small["grew_kib"] / 1024, large["grew_kib"] / 1024
    print(f"\npeak RSS growth while validating: 20 MiB file {grew_small:.1f} MiB, 200 MiB file {grew_large:.1f} MiB")
    assert grew_large < 32  # MiB, for a 200 MiB file (the old reader took 9-13x the file)
    assert grew_large < grew_small + 8
