"""bench/start_memory.py: the largest file the start takes, made on the fly, and the start's path measured over it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.start_memory import REPO, LargestFile, limits, measure
from reviewtune.cfn_yaml import load_template
from reviewtune.core.dataset import split_stream


@pytest.mark.parametrize("marker", ["", "\U0001f600 "])
def test_the_file_holds_the_rows_distinct_and_fills_the_size(marker: str) -> None:
    whole = io.BufferedReader(LargestFile(marker, rows=2_000, size=600_000), buffer_size=7_001).read()
    lines = whole.decode("utf-8").splitlines()
    assert lines[0] == "sentiment\treview_body" and len(lines) == 2_001
    assert 600_000 - 2_000 < len(whole) <= 600_000
    assert len({line.split("\t")[1] for line in lines[1:]}) == 2_000
    assert all(marker in line for line in lines[1:])
    dataset = split_stream(io.BytesIO(whole), "largest.tsv")
    assert dataset.rows_read == 2_000 and dataset.duplicates_removed == 0


def test_the_limits_are_those_of_the_functions_that_start_runs() -> None:
    resources = load_template(REPO / "template.yaml")["Resources"]
    for name in ("StartTuningFunction", "ReconcileFunction"):
        assert (resources[name]["Properties"]["MemorySize"], resources[name]["Properties"]["Timeout"]) == (2048, 300)
    assert limits() == {"memory_mb": 2048, "timeout_s": 300, "ephemeral_mb": 512}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux /proc")
def test_a_review_with_an_emoji_takes_more_memory_than_one_of_plain_ascii() -> None:
    plain, astral = (measure(case, rows=30_000, size=8_000_000) for case in ("ascii", "astral"))
    assert plain["rows_read"] == astral["rows_read"] == 30_000
    assert sum(plain["rows"].values()) == 30_000 and plain["largest_object_mib"] < 8
    assert plain["peak_mib"] > plain["after_import_mib"] > 20  # the handler's imports are counted
    # 30,000 reviews of ~265 characters at 4 bytes a character instead of 1: about 23 MiB more
    assert astral["peak_mib"] - plain["peak_mib"] > 12
