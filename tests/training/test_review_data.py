"""Reading review files and building batches (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from review_data import BucketedBatches, ReviewDataError, collate, read_reviews, sorted_batches

from .conftest import write_tsv


def test_reads_every_tsv_of_the_folder_in_name_order(tmp_path: Path) -> None:
    write_tsv(tmp_path / "b.tsv", [(1, "second file")])
    write_tsv(tmp_path / "a.tsv", [(-1, 'a "quoted"\tfield'), (0, "neutral")])
    (tmp_path / "notes.txt").write_text("ignored")

    reviews = read_reviews(tmp_path)

    assert reviews.texts == ['a "quoted"\tfield', "neutral", "second file"]
    assert reviews.label_ids == [0, 1, 2]


def test_accepts_labels_written_as_floats(tmp_path: Path) -> None:
    write_tsv(tmp_path / "a.tsv", [("1.0", "x"), ("-1", "y"), ("+0", "z")])
    assert read_reviews(tmp_path).label_ids == [2, 0, 1]


def test_missing_column_names_the_file_and_the_expected_header(tmp_path: Path) -> None:
    write_tsv(tmp_path / "bad.tsv", [(1, "x")], header=("label", "review_body"))
    with pytest.raises(
        ReviewDataError, match=r"bad\.tsv: missing column\(s\) sentiment.*sentiment<TAB>review_body"
    ):
        read_reviews(tmp_path)


def test_unknown_label_names_the_line(tmp_path: Path) -> None:
    write_tsv(tmp_path / "a.tsv", [(1, "fine"), (5, "five stars")])
    with pytest.raises(
        ReviewDataError, match=r"a\.tsv, line 3: sentiment must be one of -1, 0, 1, found '5'"
    ):
        read_reviews(tmp_path)


def test_folder_without_tsv_files(tmp_path: Path) -> None:
    with pytest.raises(ReviewDataError, match="no \\*.tsv file"):
        read_reviews(tmp_path)
    with pytest.raises(ReviewDataError, match="does not exist"):
        read_reviews(tmp_path / "missing")


def test_files_in_subfolders_and_in_capitals_are_read_too(tmp_path: Path) -> None:
    """SageMaker copies a channel's nested prefixes as folders: their files are the channel's."""
    write_tsv(tmp_path / "a.tsv", [(1, "top")])
    write_tsv(tmp_path / "part" / "b.TSV", [(0, "nested")])
    write_tsv(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.tsv", [(1, "top")])  # a hidden folder's copies: not
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._a.tsv").write_bytes(b"\x00\x05\x16\x07")  # macOS's resource forks: not
    assert read_reviews(tmp_path).texts == ["top", "nested"]


@pytest.mark.parametrize(("content", "said"), [
    (b"sentiment\treview_body\n1\tgood\n1\n", r"a\.tsv, line 3: 1 value where the header names 2: a review "
                                                  r"missing, or a line break inside an unquoted one\?"),
    (b"sentiment\treview_body\n1\tgreat\tfit\n", r"a\.tsv, line 2: 3 values where the header names 2: a tab inside "
                                                  r"an unquoted review\? quote it"),
    (b"sentiment\treview_body\n1\tcaf\xe9\n", r"a\.tsv, line 2: not UTF-8 text \(byte 0xe9: invalid continuation byte\)"),
    (b"\x1f\x8b\x08\x00\xff\xfe", r"a\.tsv: a gzip file: the channel's files are plain UTF-8 TSV"),
], ids=["fewer values", "more values", "latin-1", "gzip"])
def test_a_row_or_file_read_wrong_is_an_error_naming_it(tmp_path: Path, content: bytes, said: str) -> None:
    (tmp_path / "a.tsv").write_bytes(content)
    with pytest.raises(ReviewDataError, match=said):
        read_reviews(tmp_path)


def test_a_byte_order_mark_is_no_part_of_the_first_column_s_name(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_bytes("\ufeffsentiment\treview_body\n1\tgood\n".encode())
    assert read_reviews(tmp_path).texts == ["good"]


def test_header_only_file_is_an_error(tmp_path: Path) -> None:
    write_tsv(tmp_path / "a.tsv", [])
    with pytest.raises(ReviewDataError, match="no rows"):
        read_reviews(tmp_path)


def test_collate_pads_to_the_longest_row() -> None:
    batch = collate([[5, 6, 7], [8]], [2, 0], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [2, 0]


def _token_rows(count: int) -> list[list[int]]:
    # row i has (i % 23) + 1 tokens, all equal to i + 1, so a token identifies its row
    return [[i + 1] * ((i % 23) + 1) for i in range(count)]


def _rows_of(batch) -> list[int]:
    return [int(row[0]) - 1 for row in batch.input_ids]


def test_bucketed_batches_cover_every_row_once_per_epoch_in_a_new_order() -> None:
    rows = _token_rows(203)
    batches = BucketedBatches(
        rows, [i % 3 for i in range(203)], batch_size=8, pad_id=0, seed=3, chunk_batches=4
    )

    first = [_rows_of(b) for b in batches.epoch()]
    second = [_rows_of(b) for b in batches.epoch()]

    assert len(first) == len(batches) == 26
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(203))
    assert first != second


def test_bucketed_batches_are_reproducible_and_hold_similar_lengths() -> None:
    rows = _token_rows(400)
    labels = [i % 3 for i in range(400)]
    one = BucketedBatches(rows, labels, batch_size=16, pad_id=0, seed=11)
    two = BucketedBatches(rows, labels, batch_size=16, pad_id=0, seed=11)

    epoch_one = list(one.epoch())
    assert [_rows_of(b) for b in epoch_one] == [_rows_of(b) for b in two.epoch()]
    padding = sum(int((b.attention_mask == 0).sum()) for b in epoch_one)
    real = sum(int(b.attention_mask.sum()) for b in epoch_one)
    assert padding < 0.1 * real  # random batches of 16 would pad about 60 %
    for batch in epoch_one:
        assert torch.equal(batch.labels, torch.tensor([labels[i] for i in _rows_of(batch)]))


def test_batches_drawn_in_advance_are_those_the_epochs_would_give_with_their_rows() -> None:
    rows = _token_rows(203)
    labels = [i % 3 for i in range(203)]
    ahead = BucketedBatches(rows, labels, batch_size=8, pad_id=0, seed=5, chunk_batches=4).plan(3, steps_per_epoch=10)
    by_epoch = BucketedBatches(rows, labels, batch_size=8, pad_id=0, seed=5, chunk_batches=4)
    assert [len(epoch) for epoch in ahead] == [10, 10, 10]
    for planned in ahead:
        batches = list(by_epoch.epoch())[:10]
        assert [list(rows) for rows in planned] == [_rows_of(batch) for batch in batches]
        assert all(batch.rows == tuple(_rows_of(batch)) for batch in batches)


def test_sorted_batches_return_row_indices_with_each_batch() -> None:
    rows = [[1, 1, 1], [2], [3, 3]]
    seen = {}
    for indices, batch in sorted_batches(rows, [0, 1, 2], batch_size=2, pad_id=0):
        for index, labels in zip(indices, batch.labels.tolist(), strict=True):
            seen[int(index)] = labels
    assert seen == {0: 0, 1: 1, 2: 2}
