"""Validate, deduplicate, balance and split a dropped review file, streaming. Pure Python: it runs inside the Lambda.

Reading is ``reader.ReviewReader``'s (strict, streaming); this module keeps only what the split needs (the label and the
cleaned text of each distinct valid row), balances and splits it with a fixed seed, removes from validation and test
every review also present in train, and writes the splits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, display, names
from reviewtune.core.errors import DatasetError, FileTooLargeError, ObjectGoneError, ObjectUnreadableError
from reviewtune.core.formats import MAX_FILE_BYTES, FileFormat, accepted_formats_text, file_format
from reviewtune.core.reader import (  # noqa: F401  (re-exported: the column rules live with the reader)
    RATING_COLUMNS,
    SENTIMENT_COLUMNS,
    SPLIT_ALIASES,
    SPLIT_COLUMN,
    TEXT_COLUMNS,
    ReviewReader,
    clean_text,
    rating_to_sentiment,
)
from reviewtune.core.reasons import excerpt
from reviewtune.core.train_hashes import digest_of, normalize_text

LABELS = (-1, 0, 1)
LABEL_NAMES = {-1: "negative", 0: "neutral", 1: "positive"}
SPLIT_SEED = 42
TSV_HEADER = ("sentiment", "review_body")
_SPOOL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Review:
    """A review kept from the file; ``digest``: its normalized text's SHA-256 (``review_key``), computed once while
    reading, by which reviews are compared (repeats, leakage) and the train reviews' hashes written."""

    text: str
    sentiment: int
    digest: bytes


@dataclass
class SplitDataset:
    """The three splits and what was done to get them."""

    splits: dict[str, list[Review]]
    text_column: str
    label_column: str
    label_kind: str  # "sentiment" or "rating"
    split_source: str  # "file" (a split column) or "stratified"
    rows_read: int
    dropped_empty_text: int
    dropped_by_balancing: int
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicates_removed: int = 0
    conflicting_removed: int = 0  # rows of reviews the file labels two ways (each copy left out)
    leakage_removed: int = 0
    content_sha256: str = ""
    file_format: str = ""
    content_bytes: int = 0
    retry_of: str | None = None  # the run this object version tunes again (`reviewtune runs retry`), from its metadata

    def summary(self) -> dict:
        return {
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_kind": self.label_kind,
            "split_source": self.split_source,
            "file_format": self.file_format,
            "content_sha256": self.content_sha256,
            "content_bytes": self.content_bytes,
            "rows_read": self.rows_read,
            "dropped_empty_text": self.dropped_empty_text,
            "duplicates_removed": self.duplicates_removed,
            "conflicting_removed": self.conflicting_removed,
            "dropped_by_balancing": self.dropped_by_balancing,
            "leakage_removed": self.leakage_removed,
            "rows": {name: len(rows) for name, rows in self.splits.items()},
            "class_counts": self.class_counts,
        }


# Under NFKC review text keeps about its length (an accent or a ligature may add a character); a few symbols grow up
# to 18-fold (U+FDFA), so a file of them would make the comparison of reviews take minutes past the function's
# timeout. Past this growth over the whole file (and the slack, so that a few odd reviews never count), it is refused.
MAX_NORMALIZED_GROWTH = 4
NORMALIZED_GROWTH_SLACK = 1_000_000  # characters


def review_key(text: str) -> bytes:
    """Two reviews are the same review when their normalized texts match (the SHA-256 of
    ``train_hashes.normalize_text``: Unicode NFKC, casefolded, whitespace collapsed, the champion comparison's
    hashes), so a review typed with a combining accent is the one typed with the accented letter.
    """
    return digest_of(normalize_text(text))


class _Growth:
    """The characters read and what Unicode normalization made of them, over the file: refused past
    ``MAX_NORMALIZED_GROWTH``-fold (and the slack) at the line where it happens."""

    def __init__(self) -> None:
        self.read = self.normalized = 0

    def key(self, text: str, line: int) -> bytes:
        normalized = normalize_text(text)
        self.read += len(text)
        self.normalized += len(normalized)
        if self.normalized > MAX_NORMALIZED_GROWTH * self.read + NORMALIZED_GROWTH_SLACK:
            raise DatasetError(
                f"by line {line:,} the reviews' {self.read:,} characters had become {self.normalized:,} once "
                f"Unicode-normalized (NFKC, as reviews are compared): more than {MAX_NORMALIZED_GROWTH}-fold, which no "
                "review text grows (symbols such as U+FDFA grow up to 18-fold): keep only the reviews' text"
            )
        return digest_of(normalized)


def _counts(rows: list[Review]) -> dict[str, int]:
    counts = Counter(r.sentiment for r in rows)
    return {str(label): counts.get(label, 0) for label in LABELS}


def _check_enough(counts: Counter[int], minimum: int, where: str) -> None:
    """``counts``: reviews by sentiment."""
    short = [
        f"{LABEL_NAMES[label]} ({label}) has {counts.get(label, 0)}"
        for label in LABELS
        if counts.get(label, 0) < minimum
    ]
    if short:
        raise DatasetError(
            f"not enough reviews per class {where}: "
            + ", ".join(short)
            + f"; at least {minimum} per class are needed"
        )


def _check_every_split_marked(marked: Counter[str | None]) -> None:
    """A split column that marks no review for one of the splits (only train and test): say so, and the two ways out.
    ``marked`` counts the reviews read (with a text) by their split, before any is left out."""
    unmarked = [name for name in names.SPLITS if not marked[name]]
    if unmarked:
        marked_names = ", ".join(name for name in names.SPLITS if marked[name]) or "none"
        aliases = {name: ", ".join(alias for alias, split in SPLIT_ALIASES.items() if split == name) for name in unmarked}
        raise DatasetError(
            f"the split column marks no review {' or '.join(unmarked)} (only {marked_names}): mark some reviews "
            + " and some ".join(f"{name} ({aliases[name]})" for name in unmarked)
            + ", or leave the split column out to have the file split 90 / 5 / 5 per class"
        )


def _check_not_binary(counts: Counter[int], column: str) -> None:
    """Refuse sentiments (``counts``: reviews by sentiment) that are only 0 and 1: most likely a two-class file whose 0
    means negative, which would train its negative reviews as neutral; reviewtune does not guess which it is."""
    if counts.get(-1, 0) == 0 and counts.get(0, 0) and counts.get(1, 0):
        raise DatasetError(
            f"{excerpt(column)} holds only 0 ({counts[0]:,} reviews) and 1 ({counts[1]:,}); reviewtune's classes are "
            "-1 negative, 0 neutral and 1 positive, so this file has no negative reviews: if its 0 means negative, "
            "write -1 instead; or give ratings 1-5 in a 'rating' column"
        )


def format_of(filename: str) -> FileFormat:
    """The file's format from its name, or a DatasetError naming the accepted ones."""
    fmt = file_format(filename)
    if fmt is None:
        # the file's own name; a key ending in "/" has none: its last folder, slash kept
        name = filename.rsplit("/", 1)[-1] or filename.rstrip("/").rsplit("/", 1)[-1] + "/"
        raise DatasetError(f"{excerpt(name, 80)} is not a file reviewtune reads: drop {accepted_formats_text()} files")
    return fmt


def check_size(size: int | None) -> None:
    """Refuse a file over the limit from its size alone, before anything is read (or copied)."""
    if size is not None and size > MAX_FILE_BYTES:
        raise FileTooLargeError(
            f"the file is {display.size(size)} ({size:,} bytes); at most {display.size(MAX_FILE_BYTES)} "
            f"({MAX_FILE_BYTES:,} bytes) are accepted: split it into smaller files"
        )


def split_stream(
    body: BinaryIO,
    filename: str,
    *,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_rows_per_class: int = 10,
    class_balance: str = "downsample",
    seed: int = SPLIT_SEED,
) -> SplitDataset:
    """Validate a review file read from ``body`` and split it into train / validation / test, reproducibly."""
    fmt = format_of(filename)
    reader = ReviewReader(body, fmt)
    kept: list[tuple[Review, str | None]] = []
    seen: set[bytes] = set()
    label_of: dict[bytes, int] = {}  # each review's first label
    conflicting: dict[bytes, int] = {}  # a review given another label too -> the line where it first was
    repeats: Counter[bytes] = Counter()  # a review's copies counted once, by review
    marked: Counter[str | None] = Counter()  # reviews by the split the file marks them for
    growth = _Growth()
    for row in reader.rows():
        marked[row.split] += 1
        key = growth.key(row.text, row.line)
        first = label_of.setdefault(key, row.sentiment)
        if first != row.sentiment and key not in conflicting:
            conflicting[key] = row.line
        marker = key + f"{row.sentiment}:{row.split or ''}".encode()
        if marker in seen:
            repeats[key] += 1
            continue
        seen.add(marker)
        kept.append((Review(row.text, row.sentiment, key), row.split))
    del seen, label_of
    conflicted = 0
    if conflicting:  # a review the file labels two ways teaches neither label: every copy of it is left out
        before = len(kept)
        kept = [entry for entry in kept if entry[0].digest not in conflicting]
        conflicted = before - len(kept) + sum(repeats.pop(key, 0) for key in conflicting)
    duplicates = repeats.total()
    del repeats
    info = reader.info
    reviews = [review for review, _ in kept]
    notes = [f"{duplicates:,} repeated reviews counted once"] if duplicates else []
    if conflicting:
        lines = ", ".join(f"{line:,}" for line in sorted(conflicting.values())[:5])
        more = " ..." if len(conflicting) > 5 else ""
        notes.append(f"{len(conflicting):,} reviews the file labels two ways left out, {conflicted:,} rows; another "
                     f"label first at line {lines}{more}")
    noted = f" ({'; '.join(notes)})" if notes else ""
    counts = Counter(r.sentiment for r in reviews)
    if info.label_kind == "sentiment":
        _check_not_binary(counts, info.label_column)
    _check_enough(counts, min_rows_per_class, f"in the file{noted}")
    rng = random.Random(seed)
    dropped_by_balancing = 0
    if info.has_split_column:
        splits = {name: [r for r, s in kept if s == name] for name in names.SPLITS}
        source = "file"
        _check_every_split_marked(marked)
    else:
        by_class = {label: [r for r in reviews if r.sentiment == label] for label in LABELS}
        if class_balance == "downsample":
            size = min(len(rows) for rows in by_class.values())
            for label, rows in by_class.items():
                dropped_by_balancing += len(rows) - size
                by_class[label] = rng.sample(rows, size)
        splits = {name: [] for name in names.SPLITS}
        for label in LABELS:
            rows = list(by_class[label])
            rng.shuffle(rows)
            n_test = max(1, round(len(rows) * test_fraction))
            n_val = max(1, round(len(rows) * validation_fraction))
            splits["test"].extend(rows[:n_test])
            splits["validation"].extend(rows[n_test : n_test + n_val])
            splits["train"].extend(rows[n_test + n_val :])
        for rows in splits.values():
            rng.shuffle(rows)
        source = "stratified"
    del kept, reviews
    leakage = remove_leakage(splits)
    removed = (f" once reviews also in train, and test reviews also in validation, are removed ({leakage:,} were)"
               if leakage else "")
    # split here, the fractions may leave train nothing of a small class (VALIDATION_FRACTION + TEST_FRACTION near 1)
    fractions = ("" if info.has_split_column else
                 f" (VALIDATION_FRACTION {validation_fraction:g} and TEST_FRACTION {test_fraction:g} of each class "
                 "leave it too few: add reviews, or lower them)")
    for name in names.SPLITS:
        _check_enough(Counter(r.sentiment for r in splits[name]), 1,
                      f"in the {name} split" + (fractions if name == "train" else removed))
    return SplitDataset(
        splits=splits,
        text_column=info.text_column,
        label_column=info.label_column,
        label_kind=info.label_kind,
        split_source=source,
        rows_read=info.rows_read,
        dropped_empty_text=info.dropped_empty_text,
        dropped_by_balancing=dropped_by_balancing,
        class_counts={name: _counts(rows) for name, rows in splits.items()},
        duplicates_removed=duplicates,
        conflicting_removed=conflicted,
        leakage_removed=leakage,
        content_sha256=info.content_sha256,
        file_format=fmt.suffix,
        content_bytes=info.content_bytes,
    )


def remove_leakage(splits: dict[str, list[Review]]) -> int:
    """Remove from validation every review also in train, and from test every review also in train or validation
    (the same review: the same digest): the test reviews are ones no choice was made on, the tuner's included."""
    seen = {r.digest for r in splits["train"]}
    removed = 0
    for name in ("validation", "test"):
        rows = splits[name]
        kept = [r for r in rows if r.digest not in seen]
        removed += len(rows) - len(kept)
        splits[name] = kept
        seen.update(r.digest for r in kept)
    return removed


def split_reviews(data: bytes, filename: str, **options: Any) -> SplitDataset:
    """``split_stream`` on bytes already in memory (tests, tools)."""
    return split_stream(io.BytesIO(data), filename, **options)


def _named(key: str, version_id: str | None) -> str:
    """An object version as a reason names it: its key and version, each cut."""
    return excerpt(key, 200) + (f" version {excerpt(version_id, 80)}" if version_id else "")


def object_gone(kind: str, key: str, version_id: str | None, etag: str | None) -> ObjectGoneError:
    """The rejection of an object version that no longer exists, naming the key and the version (or ETag)."""
    named = _named(key, version_id)
    if kind == "replaced":
        tag = f" (ETag {excerpt(names.if_match(etag)[1:-1], 80)})" if etag else ""
        return ObjectGoneError(
            f"the object was replaced by a newer upload before it could be read: {named}{tag}; "
            "the newer upload is a run of its own"
        )
    return ObjectGoneError(
        f"the object was deleted before it could be read: {named}; drop the file again to have it tuned"
    )


def object_unreadable(exc: ClientError, key: str, version_id: str | None) -> ObjectUnreadableError:
    """The rejection of an object version S3 will not give the function, with S3's own words."""
    named = _named(key, version_id)
    return ObjectUnreadableError(
        f"S3 refused to read the file: {named}: {excerpt(aws_errors.text(exc), 300)}. A file encrypted with a "
        "customer-provided key (SSE-C), archived to a Glacier storage class, or under a KMS key that is disabled or "
        "gone cannot be tuned; upload it again as a plain object"
    )


def _version_args(bucket: str, key: str, version_id: str | None, etag: str | None) -> dict[str, str]:
    """The arguments that read exactly the version the event named: its version id, and its ETag (If-Match), so a
    key overwritten since (in a bucket without versioning) is not read in its place."""
    args: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    if etag:
        args["IfMatch"] = names.if_match(etag)
    return args


def read_dropped_file(
    s3: Any,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int | None,
    etag: str | None = None,
    **options: Any,
) -> SplitDataset:
    """The type and the size are checked from the name and the event (nothing read); then the object is streamed.

    Without a size in the event, HeadObject's is checked before anything is read. A version that no longer exists
    (deleted, or replaced by a newer upload) raises ObjectGoneError; other S3 errors (throttling, outages) raise as
    they are, so the event is delivered again."""
    format_of(key)
    args = _version_args(bucket, key, version_id, etag)
    try:
        if size is None:
            size = s3.head_object(**args)["ContentLength"]
        check_size(size)
        response = s3.get_object(**args)
        body = response["Body"]
    except ClientError as exc:
        if aws_errors.object_unreadable(exc):
            raise object_unreadable(exc, key, version_id) from exc
        kind = aws_errors.object_gone(exc)
        if kind is None:
            raise
        raise object_gone(kind, key, version_id, etag) from exc
    try:
        dataset = split_stream(body, key, **options)
    except DatasetError as exc:  # a retry's copy rejected still names the run it retries
        exc.retry_of = names.retry_of(response.get("Metadata"))
        raise
    finally:
        body.close()
    dataset.retry_of = names.retry_of(response.get("Metadata"))
    return dataset


def write_tsv(rows: list[Review], out: BinaryIO) -> None:
    """The split format train.py and the evaluation script read: header sentiment, review_body."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_HEADER)
    for row in rows:
        writer.writerow((row.sentiment, row.text))
    text.flush()
    text.detach()


def to_tsv(rows: list[Review]) -> bytes:
    out = io.BytesIO()
    write_tsv(rows, out)
    return out.getvalue()


def write_splits(s3: Any, bucket: str, run_id: str, dataset: SplitDataset) -> dict[str, str]:
    """Upload each split as TSV, written through a spooled temporary file (on disk past a few MiB).

    Returns the SHA-256 (hex) of each split's TSV as uploaded: two runs whose train and validation hashes match
    trained on the very same data (warm start), two whose test hashes match were measured on the same test split."""
    digests: dict[str, str] = {}
    for split, rows in dataset.splits.items():
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            write_tsv(rows, spool)
            spool.seek(0)
            digest = hashlib.sha256()
            while chunk := spool.read(1024 * 1024):
                digest.update(chunk)
            digests[split] = digest.hexdigest()
            spool.seek(0)
            s3.put_object(
                Bucket=bucket,
                Key=names.split_key(run_id, split),
                Body=spool,
                ContentType="text/tab-separated-values",
            )
    return digests
