"""A catalogue of files ops teams might drop that must be refused, each with the distinctive part of its reason.

Used by tests/functional/test_bad_inputs.py (every entry through the start_tuning handler on moto),
tests/local_runtime/test_bad_inputs_local.py (a few through the local runtime) and bench/bad_inputs.py (a table).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

HEADER = b"sentiment\treview_body\n"


def good_rows(per_class: int = 20, start: int = 0) -> bytes:
    """Valid TSV rows, distinct texts, balanced over the three classes."""
    return b"".join(
        f"{label}\treview {i} of class {label}\n".encode() for label in (-1, 0, 1) for i in range(start, start + per_class)
    )


def good_file(per_class: int = 20) -> bytes:
    return HEADER + good_rows(per_class)


def _unterminated_quote() -> bytes:
    # 300 rows; row 252 opens a quote that is never closed: the last 49 rows would have folded into one review.
    lines = [f"{(i % 3) - 1}\treview {i}\n" for i in range(300)]
    lines[250] = '1\t"this review opens a quote and never closes it\n'
    return HEADER + "".join(lines).encode()


def _with_row(row: bytes, position: int = 10) -> bytes:
    lines = good_rows().splitlines(keepends=True)
    lines.insert(position, row)
    return HEADER + b"".join(lines)


def _gzip_bomb() -> bytes:
    # Valid rows expanding to ~3 MiB, compressed ~100x; the expansion limit is lowered to 1 MiB for this entry.
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(HEADER)
        for _ in range(3 * 1024):
            gz.write(b"1\tthe same line again and again, padding the expanded size of the file...\n" * 14)
    return out.getvalue()


def _xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


def _huge_header() -> bytes:
    return (",".join(f"column_{i}_" + "x" * 200 for i in range(10_000)) + "\nrow\n").encode()


@dataclass(frozen=True)
class BadInput:
    name: str
    key: str  # below incoming/
    body: bytes | Callable[[], bytes]
    expect: str  # the distinctive part of the reason
    event_size: int | None = None  # the size the event says (None: the real size)
    limits: dict[str, int] = field(default_factory=dict)  # reviewtune.core.reader module constants to lower

    def data(self) -> bytes:
        return self.body() if callable(self.body) else self.body


CATALOGUE: tuple[BadInput, ...] = (
    # --- type and size, decided from the name and the event before anything is read
    BadInput("excel workbook", "reviews.xlsx", _xlsx, "is not a file reviewtune reads: drop .tsv, .csv, .tsv.gz"),
    BadInput("upper-case other type", "REVIEWS.XLSX", _xlsx, "'REVIEWS.XLSX' is not a file reviewtune reads"),
    BadInput("gzip without inner type", "reviews.gz", lambda: gzip.compress(good_file()), "'reviews.gz' is not a file"),
    BadInput("text file", "notes.txt", b"hello", "'notes.txt' is not a file reviewtune reads"),
    BadInput("json", "reviews.json", b"[]", "is not a file reviewtune reads"),
    BadInput("no extension", "team/reviews", good_file, "'reviews' is not a file reviewtune reads"),
    BadInput("over the size limit", "big.tsv", good_file, "at most 268,435,456 bytes (256 MiB)", event_size=300 * 2**20),
    # --- encoding and binary content
    BadInput("empty file", "empty.tsv", b"", "the file is empty"),
    BadInput("blank lines only", "blank.csv", b"\n \n\r\n", "the file is empty"),
    BadInput("latin-1, not UTF-8", "latin.tsv", HEADER + "1\tcaf\xe9 cr\xe8me\n".encode("latin-1"), "line 2: not UTF-8: byte 0xe9"),
    BadInput("UTF-16", "utf16.csv", lambda: "sentiment,review_body\n1,good\n".encode("utf-16"), "the file is UTF-16"),
    BadInput("NUL byte in a review", "nul.tsv", lambda: _with_row(b"1\tgood\x00product\n"), "line 12: control character '\\x00'"),
    BadInput("bell character", "bell.tsv", lambda: _with_row(b"0\tmeh\x07\n", 3), "line 5: control character '\\x07'"),
    BadInput("excel file renamed .csv", "renamed.csv", _xlsx, "a ZIP archive or an Excel workbook"),
    BadInput("gzip named .csv", "packed.csv", lambda: gzip.compress(good_file()), "gzip-compressed but its name does not end in .gz"),
    BadInput("not gzip, named .gz", "plain.tsv.gz", good_file, "not valid gzip data"),
    BadInput("truncated gzip", "cut.csv.gz", lambda: gzip.compress(good_file())[:-40], "not valid gzip data"),
    BadInput("gzip bomb", "bomb.tsv.gz", _gzip_bomb, "expands to more than 1 MiB", limits={"MAX_DECOMPRESSED_BYTES": 2**20}),
    BadInput("invalid UTF-8 inside gzip", "latin.tsv.gz", lambda: gzip.compress(HEADER + b"1\tna\xefve\n"), "not UTF-8: byte 0xef"),
    # --- structure
    BadInput("unterminated quote", "unterminated.tsv", _unterminated_quote, "line 252: a quoted value is never closed"),
    BadInput("text after a closing quote", "quote.csv", b'sentiment,review_body\n1,"good" product\n', "text follows a closing quote"),
    BadInput("unquoted tab in a review", "tab.tsv", lambda: _with_row(b"1\tgood\tproduct\n"), "line 12: 3 fields, expected 2 (an unquoted tab"),
    BadInput("unquoted comma in a review", "comma.csv", b"sentiment,review_body\n1,good,cheap\n", "3 fields, expected 2 (an unquoted comma"),
    BadInput("missing field", "short.tsv", lambda: _with_row(b"1\n"), "line 12: 1 fields, expected 2"),
    BadInput("value over the field limit", "cell.tsv", lambda: HEADER + b"1\t" + b"x" * 2_000_000 + b"\n", "a value is longer than 1,048,576 characters"),
    BadInput("line over the line limit", "line.tsv", lambda: HEADER + b"1\t" + b"x," * 2_200_000 + b"\n", "line 2 is longer than 4,194,304 characters"),
    # --- header
    BadInput("duplicate text column", "dup.tsv", b"sentiment\treview_body\treview_body\n1\ta\tb\n", "duplicate review text column, 2 times"),
    BadInput("ambiguous text columns", "amb.tsv", b"sentiment\ttext\treview_body\n1\ta\tb\n", "ambiguous review text columns"),
    BadInput("sentiment and rating", "labels.csv", b"sentiment,rating,text\n1,5,a\n", "ambiguous label columns"),
    BadInput("split column twice", "splits.tsv", b"sentiment\ttext\tsplit\tSplit\n1\ta\ttrain\ttest\n", "duplicate split column, 2 times"),
    BadInput("no text column", "notext.csv", b"text_x,score\nhello,5\n", "no review text column"),
    BadInput("no label column", "nolabel.csv", b"text,score\nhello,5\n", "no label column"),
    BadInput("huge header without a text column", "wide.csv", _huge_header, "no review text column: the header has 10,000 columns"),
    # --- values
    BadInput("sentiment out of range", "label.tsv", lambda: _with_row(b"2\thello\n"), "line 12: 'sentiment' is '2', expected one of -1, 0, 1"),
    BadInput("rating out of range", "rating.csv", b"Rating,Review Text\n7,hello\n", "'Rating' is '7', expected one of 1, 2, 3, 4, 5"),
    BadInput("600 KB label cell", "hugecell.tsv", lambda: HEADER + b"y" * 600_000 + b"\thello\n", "(600,000 characters), expected one of"),
    BadInput("many bad rows", "many.tsv", lambda: HEADER + b"".join(b"5\treview %d\n" % i for i in range(212)), "212 problems: line 2:"),
    BadInput("unknown split value", "split.tsv", b"sentiment\ttext\tsplit\n1\ta\tholdout\n", "split is 'holdout', expected train, validation or test"),
    # --- content
    BadInput("header only", "header.tsv", HEADER, "not enough reviews per class in the file"),
    BadInput(
        "too few of one class",
        "few.tsv",
        lambda: HEADER + b"".join(f"{label}\tr {label} {i}\n".encode() for label, n in ((-1, 20), (0, 20), (1, 5)) for i in range(n)),
        "positive (1) has 5; at least 10 per class are needed",
    ),
    BadInput("duplicates only", "dups.tsv", lambda: HEADER + good_rows(3) * 20, "negative (-1) has 3"),
    BadInput("empty texts only", "emptytext.tsv", lambda: HEADER + b"1\t \n0\t\n-1\t\n" * 20, "not enough reviews per class in the file"),
    BadInput(
        "split column without a test class",
        "nosplit.tsv",
        lambda: b"sentiment\treview_body\tsplit\n"
        + b"".join(f"{label}\tr {label} {i}\t{'train' if i > 1 else ('validation' if i == 1 else ('train' if label == 1 else 'test'))}\n".encode() for label in (-1, 0, 1) for i in range(12)),
        "not enough reviews per class in the test split: positive (1) has 0",
    ),
)
