"""Read, validate, balance and split a dropped review file. Pure Python: it runs inside the Lambda."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from reviewtune.core.errors import DatasetError
from reviewtune.core.names import SPLITS

LABELS = (-1, 0, 1)
LABEL_NAMES = {-1: "negative", 0: "neutral", 1: "positive"}
TEXT_COLUMNS = ("review_body", "review_text", "text", "review", "body", "content")
SENTIMENT_COLUMNS = ("sentiment", "label")
RATING_COLUMNS = ("rating", "stars", "star_rating")
SPLIT_COLUMN = "split"
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
MAX_FILE_BYTES = 256 * 1024 * 1024
SPLIT_SEED = 42
TSV_HEADER = ("sentiment", "review_body")
_MAX_LISTED_ERRORS = 5
_WHITESPACE = re.compile(r"\s+")

csv.field_size_limit(16 * 1024 * 1024)


def rating_to_sentiment(rating: int) -> int:
    """Ratings 1-2 are negative, 3 neutral, 4-5 positive."""
    return -1 if rating <= 2 else (0 if rating == 3 else 1)


@dataclass(frozen=True)
class Review:
    text: str
    sentiment: int


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

    def summary(self) -> dict:
        return {
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_kind": self.label_kind,
            "split_source": self.split_source,
            "rows_read": self.rows_read,
            "dropped_empty_text": self.dropped_empty_text,
            "dropped_by_balancing": self.dropped_by_balancing,
            "rows": {name: len(rows) for name, rows in self.splits.items()},
            "class_counts": self.class_counts,
        }


def _normalise(column: str) -> str:
    return _WHITESPACE.sub("_", column.strip().lower()).replace("-", "_")


def _find(header: list[str], candidates: tuple[str, ...]) -> int | None:
    normalised = [_normalise(c) for c in header]
    for candidate in candidates:
        if candidate in normalised:
            return normalised.index(candidate)
    return None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"the file is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) is invalid; "
            "save it as UTF-8 and drop it again"
        ) from exc


def _delimiter(text: str, filename: str) -> str:
    first_line = text.split("\n", 1)[0]
    if filename.lower().endswith(".tsv") or ("\t" in first_line and "," not in first_line):
        return "\t"
    return ","


def clean_text(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def parse_reviews(data: bytes, filename: str) -> tuple[list[tuple[Review, str | None]], dict]:
    """Parse a CSV/TSV file into (review, given split) pairs, or raise DatasetError saying what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise DatasetError(f"the file is {len(data)} bytes; at most {MAX_FILE_BYTES} bytes are accepted")
    text = _decode(data)
    if not text.strip():
        raise DatasetError("the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text, filename))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DatasetError(f"the header line cannot be read: {exc}") from exc
    text_idx = _find(header, TEXT_COLUMNS)
    if text_idx is None:
        raise DatasetError(
            f"no review text column: the header has {header!r}; name the text column one of {', '.join(TEXT_COLUMNS)}"
        )
    label_idx, kind = _find(header, SENTIMENT_COLUMNS), "sentiment"
    if label_idx is None:
        label_idx, kind = _find(header, RATING_COLUMNS), "rating"
    if label_idx is None:
        raise DatasetError(
            f"no label column: the header has {header!r}; add a 'sentiment' column (-1, 0, 1) or a 'rating' column (1-5)"
        )
    split_idx = _find(header, (SPLIT_COLUMN,))
    allowed = {"-1", "0", "1"} if kind == "sentiment" else {"1", "2", "3", "4", "5"}
    reviews: list[tuple[Review, str | None]] = []
    errors: list[str] = []
    error_count = 0
    dropped_empty = 0
    rows_read = 0
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            rows_read += 1
            line = reader.line_num
            if len(row) <= max(text_idx, label_idx):
                error_count += 1
                if len(errors) < _MAX_LISTED_ERRORS:
                    errors.append(f"line {line}: {len(row)} fields, expected {len(header)}")
                continue
            body = clean_text(row[text_idx])
            raw_label = row[label_idx].strip()
            if raw_label.endswith(".0"):
                raw_label = raw_label[:-2]
            if raw_label not in allowed:
                error_count += 1
                if len(errors) < _MAX_LISTED_ERRORS:
                    errors.append(
                        f"line {line}: {header[label_idx]!r} is {row[label_idx]!r}, expected one of {sorted(allowed, key=int)}"
                    )
                continue
            if not body:
                dropped_empty += 1
                continue
            given_split = None
            if split_idx is not None:
                raw_split = row[split_idx].strip().lower() if len(row) > split_idx else ""
                given_split = SPLIT_ALIASES.get(raw_split)
                if given_split is None:
                    error_count += 1
                    if len(errors) < _MAX_LISTED_ERRORS:
                        errors.append(
                            f"line {line}: split is {raw_split!r}, expected train, validation or test"
                        )
                    continue
            label = int(raw_label)
            sentiment = label if kind == "sentiment" else rating_to_sentiment(label)
            reviews.append((Review(body, sentiment), given_split))
    except csv.Error as exc:
        raise DatasetError(
            f"line {reader.line_num}: the file cannot be parsed as {'TSV' if reader.dialect.delimiter == chr(9) else 'CSV'}: {exc}"
        ) from exc
    if error_count:
        more = f" (and {error_count - len(errors)} more)" if error_count > len(errors) else ""
        raise DatasetError(
            f"{error_count} invalid row{'' if error_count == 1 else 's'}: " + "; ".join(errors) + more
        )
    info = {
        "text_column": header[text_idx],
        "label_column": header[label_idx],
        "label_kind": kind,
        "has_split_column": split_idx is not None,
        "rows_read": rows_read,
        "dropped_empty_text": dropped_empty,
    }
    return reviews, info


def _counts(rows: list[Review]) -> dict[str, int]:
    counts = Counter(r.sentiment for r in rows)
    return {str(label): counts.get(label, 0) for label in LABELS}


def _check_enough(rows: list[Review], minimum: int, where: str) -> None:
    counts = Counter(r.sentiment for r in rows)
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


def split_reviews(
    data: bytes,
    filename: str,
    *,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_rows_per_class: int = 10,
    class_balance: str = "downsample",
    seed: int = SPLIT_SEED,
) -> SplitDataset:
    """Validate a review file and split it into train / validation / test, reproducibly."""
    pairs, info = parse_reviews(data, filename)
    reviews = [review for review, _ in pairs]
    _check_enough(reviews, min_rows_per_class, "in the file")
    rng = random.Random(seed)
    dropped_by_balancing = 0
    if info["has_split_column"]:
        splits = {name: [r for r, s in pairs if s == name] for name in SPLITS}
        for name in SPLITS:
            _check_enough(splits[name], 1, f"in the {name} split")
        source = "file"
    else:
        by_class = {label: [r for r in reviews if r.sentiment == label] for label in LABELS}
        if class_balance == "downsample":
            size = min(len(rows) for rows in by_class.values())
            for label, rows in by_class.items():
                dropped_by_balancing += len(rows) - size
                by_class[label] = rng.sample(rows, size)
        splits = {name: [] for name in SPLITS}
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
    return SplitDataset(
        splits=splits,
        text_column=info["text_column"],
        label_column=info["label_column"],
        label_kind=info["label_kind"],
        split_source=source,
        rows_read=info["rows_read"],
        dropped_empty_text=info["dropped_empty_text"],
        dropped_by_balancing=dropped_by_balancing,
        class_counts={name: _counts(rows) for name, rows in splits.items()},
    )


def to_tsv(rows: list[Review]) -> bytes:
    """The split format train.py and the evaluation script read: header sentiment, review_body."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_HEADER)
    for row in rows:
        writer.writerow((row.sentiment, row.text))
    return out.getvalue().encode("utf-8")
