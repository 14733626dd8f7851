"""The embedded sample `make run` trains on: real reviews, balanced, small, reproducible from the public file."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from reviewtune import real_sample
from reviewtune.cli import main
from reviewtune.core.dataset import split_reviews
from reviewtune.core.train_hashes import normalize_text

RAW_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "Womens_Clothing_E-Commerce_Reviews.csv"


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8")), delimiter="\t"))


def test_the_committed_sample_is_small_balanced_and_distinct() -> None:
    body = real_sample.sample_bytes()
    assert len(body) < 1024 * 1024
    rows = _rows(body)
    assert len(rows) == 3 * real_sample.PER_CLASS <= 2000
    assert tuple(rows[0]) == real_sample.COLUMNS
    counts = {label: sum(row["sentiment"] == label for row in rows) for label in ("-1", "0", "1")}
    assert counts == {"-1": real_sample.PER_CLASS, "0": real_sample.PER_CLASS, "1": real_sample.PER_CLASS}
    texts = [normalize_text(row["review_body"]) for row in rows]
    assert len(set(texts)) == len(texts) and all(texts)
    assert not any("\n" in text or "\t" in text for text in texts)


def test_the_pipeline_accepts_it_whole() -> None:
    summary = split_reviews(real_sample.sample_bytes(), real_sample.SAMPLE_KEY).summary()
    assert summary["rows_read"] == 3 * real_sample.PER_CLASS
    assert summary["duplicates_removed"] == 0 and summary["dropped_by_balancing"] == 0
    assert sum(summary["rows"].values()) == 3 * real_sample.PER_CLASS - summary["leakage_removed"]


@pytest.mark.parametrize(("rating", "expected"), [("1", -1), ("2", -1), ("3", 0), ("4", 1), ("5", 1), ("0", None), ("x", None)])
def test_sentiment_from_the_rating(rating: str, expected: int | None) -> None:
    assert real_sample.sentiment(rating) == expected


@pytest.mark.skipif(not RAW_CSV.is_file(), reason=f"the public dataset is not at {RAW_CSV}")
def test_the_sample_is_what_the_public_file_gives() -> None:
    assert real_sample.build(RAW_CSV) == real_sample.sample_bytes()
    assert main(["sample-data", "/dev/null"]) == 0


def test_build_draws_per_class_from_a_raw_file_and_refuses_too_few(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    lines = [",Clothing ID,Age,Title,Review Text,Rating,Recommended IND,Positive Feedback Count,Division Name,Department Name,Class Name"]
    for index in range(12):
        rating = (1, 3, 5)[index % 3]
        lines.append(f'{index},1,30,t,"review\tnumber {index}\nwith a break",{rating},1,0,D,D,Dresses')
    lines.append('99,1,30,t,"Review   number 0 WITH a break",1,1,0,D,D,Dresses')  # a repeat, case and spaces aside
    lines.append('98,1,30,t,"\uff52eview number 0 with a break",1,1,0,D,D,Dresses')  # a repeat, in full-width letters
    lines.append("100,1,30,t,,5,1,0,D,D,Dresses")  # no text
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _rows(real_sample.build(raw, per_class=4, seed=1))
    assert len(rows) == 12 and {row["product_category"] for row in rows} == {"Dresses"}
    assert {row["review_body"] for row in rows if row["review_body"].endswith("number 0 with a break")} == {
        "review number 0 with a break"
    }
    assert real_sample.build(raw, per_class=4, seed=1) == real_sample.build(raw, per_class=4, seed=1)
    with pytest.raises(ValueError, match="fewer than 5"):
        real_sample.build(raw, per_class=5)


def test_sample_data_makes_the_folders_it_needs_and_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    target = tmp_path / "data" / "new" / "sample.tsv"
    assert main(["sample-data", str(target)]) == 0
    assert target.read_bytes() == real_sample.sample_bytes()
    with pytest.raises(SystemExit, match=f"error: cannot write {tmp_path}: Is a directory"):
        main(["sample-data", str(tmp_path)])


def test_sample_data_never_replaces_a_file_unasked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "reviews-march.tsv"
    mine.write_bytes(b"sentiment\treview_body\n1\tmy own review\n")
    with pytest.raises(SystemExit, match=r"reviews-march.tsv exists and is not the sample: nothing written \(--force"):
        main(["sample-data", str(mine)])
    assert mine.read_bytes() == b"sentiment\treview_body\n1\tmy own review\n"

    same = tmp_path / "sample.tsv"
    assert main(["sample-data", str(same)]) == 0
    assert main(["sample-data", str(same)]) == 0  # again: the file already holds it
    assert "already holds the embedded sample dataset" in capsys.readouterr().out

    assert main(["sample-data", "--force", str(mine)]) == 0
    assert mine.read_bytes() == real_sample.sample_bytes()


def test_sample_data_to_its_own_stdout_writes_where_the_shell_points_and_an_empty_file_is_filled(tmp_path: Path) -> None:
    """`sample-data /dev/stdout > f.tsv` (the shell made f.tsv: it exists) and `>> f.tsv` (appended, nothing of the
    file lost); an empty file (`mktemp`) holds nothing to lose."""
    mine = tmp_path / "appended.tsv"
    mine.write_bytes(b"first line\n")
    for mode, target in (("wb", tmp_path / "new.tsv"), ("ab", mine)):
        with target.open(mode) as out:
            done = subprocess.run([sys.executable, "-m", "reviewtune.cli", "sample-data", "/dev/stdout"], stdout=out,
                                  stderr=subprocess.PIPE, text=True, check=False)
        assert done.returncode == 0 and "wrote the embedded sample dataset to /dev/stdout" in done.stderr
    assert (tmp_path / "new.tsv").read_bytes() == real_sample.sample_bytes()
    assert mine.read_bytes() == b"first line\n" + real_sample.sample_bytes()

    empty = tmp_path / "made-by-mktemp.tsv"
    empty.touch()
    assert main(["sample-data", str(empty)]) == 0 and empty.read_bytes() == real_sample.sample_bytes()
