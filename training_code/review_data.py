"""Reading review TSV files and turning them into length-bucketed, dynamically padded batches.

A review file has the header ``sentiment<TAB>review_body``; ``sentiment`` is -1, 0 or 1. Files are written with
Python's ``csv`` module, so they are read with it too (quoted fields may hold quotes).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

LABELS: tuple[int, ...] = (-1, 0, 1)
LABEL2ID: dict[str, int] = {str(label): index for index, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = {index: str(label) for index, label in enumerate(LABELS)}
REQUIRED_COLUMNS: tuple[str, ...] = ("sentiment", "review_body")

# Reviews longer than the csv module's default field limit (128 KiB) are legal.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class ReviewDataError(ValueError):
    """A review file is missing, malformed or holds an unknown label."""


@dataclass(frozen=True)
class Reviews:
    """Texts with their class ids (0, 1, 2 for sentiment -1, 0, 1)."""

    texts: list[str]
    label_ids: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def review_files(folder: str | Path) -> list[Path]:
    """The ``.tsv`` files of ``folder`` and its subfolders (SageMaker copies a channel's nested prefixes as folders;
    any letter case; not hidden ones, nor macOS's __MACOSX copies), sorted by path; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReviewDataError(f"data folder {folder} does not exist")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() == ".tsv"
                   and not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(folder).parts))
    if not files:
        raise ReviewDataError(
            f"no *.tsv file in {folder} (expected files with the header sentiment<TAB>review_body)"
        )
    return files


def read_reviews(folder: str | Path) -> Reviews:
    """Read every ``.tsv`` file of ``folder`` (``review_files``): a clear error for a file that is not UTF-8 text, a
    row with more or fewer values than the header names, or a label that is not -1, 0 or 1."""
    texts: list[str] = []
    label_ids: list[int] = []
    for path in review_files(folder):
        try:
            _read_file(path, texts, label_ids)
        except UnicodeDecodeError:
            raise ReviewDataError(_not_utf8(path)) from None
    if not texts:
        raise ReviewDataError(f"{folder}: the *.tsv files hold a header but no rows")
    return Reviews(texts=texts, label_ids=label_ids)


def _not_utf8(path: Path) -> str:
    """Why ``path``, which did not decode, is no UTF-8 text: a gzip file, or the line and byte where it stops being."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return f"{path}: a gzip file: the channel's files are plain UTF-8 TSV"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}: {error.reason})"
    return f"{path}: not UTF-8 text"


def _read_file(path: Path, texts: list[str], label_ids: list[int]) -> None:
    """Append the reviews of one TSV file (UTF-8, a byte-order mark allowed) to ``texts`` and ``label_ids``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        header = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ReviewDataError(
                f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                f"'sentiment<TAB>review_body', found {header!r}"
            )
        for row in reader:
            if None in row:  # more values than the header names
                raise ReviewDataError(
                    f"{path}, line {reader.line_num}: {len(header) + len(row[None])} values where the header names "
                    f"{len(header)}: a tab inside an unquoted review? quote it"
                )
            if row["review_body"] is None:  # fewer
                given = sum(value is not None for value in row.values())
                raise ReviewDataError(
                    f"{path}, line {reader.line_num}: {given} value{'' if given == 1 else 's'} where the header "
                    f"names {len(header)}: a review missing, or a line break inside an unquoted one?"
                )
            raw_label = (row["sentiment"] or "").strip()
            label_id = LABEL2ID.get(_normalise_label(raw_label))
            if label_id is None:
                raise ReviewDataError(
                    f"{path}, line {reader.line_num}: sentiment must be one of -1, 0, 1, found {raw_label!r}"
                )
            texts.append(row["review_body"] or "")
            label_ids.append(label_id)


def _normalise_label(raw: str) -> str:
    """'1', '+1', '1.0' -> '1'; anything that is not a whole number is returned unchanged."""
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value.is_integer() else raw


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``, unpadded (padding happens per batch)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    rows: tuple[int, ...] = ()  # the training rows of the batch, in order (BucketedBatches)

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def collate(
    token_ids: Sequence[Sequence[int]], labels: Sequence[int], pad_id: int, rows: Sequence[int] = ()
) -> Batch:
    """Pad ``token_ids`` to the longest sequence of the batch (``rows``: where they come from)."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return Batch(
        input_ids, attention_mask, torch.as_tensor(list(labels), dtype=torch.long), tuple(int(r) for r in rows)
    )


class BucketedBatches:
    """Training batches of similar length: shuffle, sort by length inside chunks of ``chunk_batches`` batches,
    cut into batches, shuffle the batches. Each call of :meth:`epoch` draws a new order from one seeded generator.
    """

    def __init__(
        self,
        token_ids: Sequence[Sequence[int]],
        label_ids: Sequence[int],
        batch_size: int,
        pad_id: int,
        seed: int,
        chunk_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._token_ids = token_ids
        self._label_ids = label_ids
        self._lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        self._batch_size = batch_size
        self._pad_id = pad_id
        self._chunk = batch_size * chunk_batches
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self._token_ids) // self._batch_size)

    def order(self) -> list[np.ndarray]:
        """The next epoch's batches, as arrays of row indices."""
        order = self._rng.permutation(len(self._token_ids))
        batches: list[np.ndarray] = []
        for start in range(0, len(order), self._chunk):
            chunk = order[start : start + self._chunk]
            chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self._batch_size] for i in range(0, len(chunk), self._batch_size))
        return [batches[index] for index in self._rng.permutation(len(batches))]

    def plan(self, epochs: int, steps_per_epoch: int) -> list[list[np.ndarray]]:
        """The batches of ``epochs`` epochs drawn in advance (the same as :meth:`epoch` would give), each epoch's
        first ``steps_per_epoch``."""
        return [self.order()[:steps_per_epoch] for _ in range(epochs)]

    def batch(self, rows: Sequence[int]) -> Batch:
        return collate([self._token_ids[i] for i in rows], [self._label_ids[i] for i in rows], self._pad_id, rows)

    def epoch(self) -> Iterator[Batch]:
        for rows in self.order():
            yield self.batch(rows)


def sorted_batches(
    token_ids: Sequence[Sequence[int]], label_ids: Sequence[int], batch_size: int, pad_id: int
) -> Iterator[tuple[np.ndarray, Batch]]:
    """Evaluation batches in length order (least padding); yields the original row indices with each batch."""
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, collate([token_ids[i] for i in rows], [label_ids[i] for i in rows], pad_id)
