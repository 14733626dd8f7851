"""A catalogue of files ops teams might drop that must be refused, each with the distinctive part of its reason.

Besides the files themselves: events whose size is over the limits (refused from the size, neither read nor copied),
events with no or an invalid size, and objects deleted or replaced between their event and the read.

Used by tests/functional/test_bad_inputs.py (every entry through the start_tuning handler on moto),
tests/local_runtime/test_bad_inputs_local.py (a few through the local runtime) and bench/bad_inputs.py (a table).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import importlib
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from reviewtune.core.formats import MAX_FILE_BYTES, file_format

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


def _quote_left_open_in_a_large_file() -> bytes:
    # line 62 starts a review with a quote that no later quote closes, and more than 1 MiB of rows follow
    return HEADER + good_rows() + b'1\t"Perfect fit, true to size\n' + good_rows(20_000, start=100)


def _rows_swallowed_by_a_stray_quote() -> bytes:
    # line 62 opens a quote as typed; the inch mark ending line 64 closes it: lines 62-64 would be one review
    return (HEADER + good_rows() + b'1\t"Perfect fit, love it\n0\tRuns small for me\n'
            + b"-1\tToo short on me, I am 5'9\"\n" + good_rows(start=100))


def _unnamed_gzip_header() -> bytes:
    # a gzip header saying a file name follows (FNAME), and a name that never ends
    return b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03" + b"A" * (2 << 20)


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


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the compound file an old .xls (or .doc) is


def _split_rows() -> bytes:
    """Rows with a split column: 10 per class in train, 1 in validation (r<label>_8) and 1 in test (r<label>_9)."""
    names = ["train"] * 8 + ["validation", "test"]
    return b"".join(f"{label}\tr{label}_{i}\t{name}\n".encode() for label in (-1, 0, 1) for i, name in enumerate(names))


def _tar() -> bytes:
    out = io.BytesIO()
    data = good_file()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("reviews.tsv")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _huge_header() -> bytes:
    return (",".join(f"column_{i}_" + "x" * 200 for i in range(10_000)) + "\nrow\n").encode()


ABSENT = "(absent)"  # an event_size: the event has no size field at all
GiB = 1024**3
COPY_MAX_BYTES = 5 * GiB  # CopyObject's limit for one request
# What happens to the object between its event and the read (the event names the version that was put):
DELETED = "deleted"  # a bucket without versioning (no version-id in the event); the key is deleted
VERSION_DELETED = "version deleted"  # a versioned bucket; that very version is deleted
REPLACED = "replaced"  # a bucket without versioning; the key is overwritten with other content


@dataclass(frozen=True)
class BadInput:
    name: str
    key: str  # below incoming/
    body: bytes | Callable[[], bytes]
    expect: str  # the distinctive part of the reason
    event_size: Any = None  # the size the event says: None the real size, ABSENT no field, else the value as sent
    limits: dict[str, int] = field(default_factory=dict)  # "<module>.<CONSTANT>" of reviewtune.core to lower
    mishap: str | None = None  # DELETED, VERSION_DELETED or REPLACED before the handler reads the object

    def data(self) -> bytes:
        return self.body() if callable(self.body) else self.body

    def size_checked(self) -> int:
        """The size the handler goes by: the event's when it is a valid one, else the object's own."""
        valid = isinstance(self.event_size, int) and not isinstance(self.event_size, bool) and self.event_size >= 0
        return self.event_size if valid else len(self.data())

    def too_large(self) -> bool:
        return self.size_checked() > self.limits.get("dataset.MAX_FILE_BYTES", MAX_FILE_BYTES)

    def read(self) -> bool:
        """Whether the handler may read the object's content: not for a type it does not take, nor a file too large."""
        return file_format(self.key) is not None and not self.too_large()

    def kept(self) -> bool:
        """The original stays in incoming/ and a copy goes under rejected/: not for a file too large to be copied
        (refused from its size), nor for an object gone before it was read."""
        return self.mishap is None and not self.too_large()


@contextlib.contextmanager
def lowered_limits(bad: BadInput) -> Iterator[None]:
    """The entry's limits set on their reviewtune.core modules for the duration, then restored."""
    saved = []
    try:
        for qualified, value in bad.limits.items():
            module_name, _, name = qualified.rpartition(".")
            module = importlib.import_module(f"reviewtune.core.{module_name}")
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def drop_event(
    bad: BadInput, data: bytes, bucket: str, key: str, template: dict[str, Any], s3: Any = None
) -> dict[str, Any]:
    """Put ``data`` (the entry's, made once) at ``key``, build the EventBridge "Object Created" event AWS sends for
    it (the key as stored, not URL-encoded) from ``template``, then let the entry's mishap happen. Returns the event."""
    s3 = s3 or boto3.client("s3")
    response = s3.put_object(Bucket=bucket, Key=key, Body=data)
    detail = template["detail"]
    detail["bucket"]["name"] = bucket
    detail["object"].update({"key": key, "etag": response["ETag"].strip('"'), "version-id": response["VersionId"]})
    if bad.event_size is ABSENT:
        detail["object"].pop("size", None)
    else:
        detail["object"]["size"] = len(data) if bad.event_size is None else bad.event_size
    if bad.mishap in (DELETED, REPLACED):
        detail["object"].pop("version-id")  # the event of a bucket without versioning
    if bad.mishap == DELETED:
        s3.delete_object(Bucket=bucket, Key=key)
    elif bad.mishap == VERSION_DELETED:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=response["VersionId"])
    elif bad.mishap == REPLACED:
        s3.put_object(Bucket=bucket, Key=key, Body=data + b"1\ta review added later\n")
    return template


CATALOGUE: tuple[BadInput, ...] = (
    # --- type and size, decided from the name and the event before anything is read
    BadInput("excel workbook", "reviews.xlsx", _xlsx, "is not a file reviewtune reads: drop .tsv, .csv, .tsv.gz"),
    BadInput("upper-case other type", "REVIEWS.XLSX", _xlsx, "'REVIEWS.XLSX' is not a file reviewtune reads"),
    BadInput("gzip without inner type", "reviews.gz", lambda: gzip.compress(good_file()), "'reviews.gz' is not a file"),
    BadInput("text file", "notes.txt", b"hello", "'notes.txt' is not a file reviewtune reads"),
    BadInput("json", "reviews.json", b"[]", "is not a file reviewtune reads"),
    BadInput("no extension", "team/reviews", good_file, "'reviews' is not a file reviewtune reads"),
    BadInput("over the size limit", "big.tsv", good_file, "at most 256 MiB (268,435,456 bytes) are accepted", event_size=300 * 2**20),
    BadInput(
        "over CopyObject's 5 GB", "huge.csv.gz", good_file, "the file is 6 GiB (6,442,450,944 bytes); at most 256 MiB",
        event_size=6 * GiB,
    ),
    BadInput(
        "other type over 5 GB", "dump.parquet", b"PAR1", "'dump.parquet' is not a file reviewtune reads",
        event_size=COPY_MAX_BYTES + 1,
    ),
    BadInput(
        "no size in the event, too large", "nosize.tsv", lambda: b"x" * (2**20 + 1),
        "the file is 1.0 MiB (1,048,577 bytes); at most 1 MiB (1,048,576 bytes)", event_size=ABSENT, limits={"dataset.MAX_FILE_BYTES": 2**20},
    ),
    BadInput(
        "invalid size in the event, too large", "badsize.tsv", lambda: b"x" * (2**20 + 1),
        "the file is 1.0 MiB (1,048,577 bytes); at most 1 MiB (1,048,576 bytes)", event_size="6 GB", limits={"dataset.MAX_FILE_BYTES": 2**20},
    ),
    BadInput(
        "negative size in the event, too large", "negative.tsv", lambda: b"x" * (2**20 + 1),
        "the file is 1.0 MiB (1,048,577 bytes); at most 1 MiB (1,048,576 bytes)", event_size=-1, limits={"dataset.MAX_FILE_BYTES": 2**20},
    ),
    # --- gone between the event and the read
    BadInput("deleted before it was read", "gone.tsv", good_file, "the object was deleted before it could be read", mishap=DELETED),
    BadInput(
        "version deleted before it was read", "gone version.tsv", good_file,
        "the object was deleted before it could be read", mishap=VERSION_DELETED,
    ),
    BadInput(
        "replaced before it was read", "replaced.tsv", good_file,
        "the object was replaced by a newer upload before it could be read", mishap=REPLACED,
    ),
    BadInput(
        "other type deleted before it was read", "gone.xlsx", _xlsx, "'gone.xlsx' is not a file reviewtune reads",
        mishap=DELETED,
    ),
    # --- encoding and binary content
    BadInput("empty file", "empty.tsv", b"", "the file is empty"),
    BadInput("blank lines only", "blank.csv", b"\n \n\r\n", "the file is empty"),
    BadInput("latin-1, not UTF-8", "latin.tsv", HEADER + "1\tcaf\xe9 cr\xe8me\n".encode("latin-1"), "line 2: not UTF-8: byte 0xe9"),
    BadInput(
        "latin-1 header", "latin-header.csv", "Rating,Review Text,Cat\xe9gorie\n5,good\n".encode("latin-1"),
        "line 1: not UTF-8: byte 0xe9 at character 23; save the file as UTF-8 (reading stopped at line 1)",
    ),
    BadInput("UTF-16", "utf16.csv", lambda: "sentiment,review_body\n1,good\n".encode("utf-16"), "the file is UTF-16"),
    BadInput("UTF-32", "utf32.csv", lambda: "sentiment,review_body\n1,good\n".encode("utf-32"), "the file is UTF-32"),
    BadInput("line break from a sheet cell", "vt.tsv", lambda: _with_row(b"1\tfits\x0bwell\n"),
             "line 12: control character '\\x0b' (a line break from a spreadsheet cell or Word: replace it with a space)"),
    BadInput("NUL byte in a review", "nul.tsv", lambda: _with_row(b"1\tgood\x00product\n"), "line 12: control character '\\x00'"),
    BadInput("C1 control character (Windows-1252 read as Latin-1)", "c1.tsv", lambda: _with_row("1\tgood \u0096 cheap\n".encode()),
             "line 12: control character '\\x96' (a character of Windows-1252, such as a dash or a curly quote, read as "
             "Latin-1 when the file was made UTF-8) at character 8"),
    BadInput("accents stacked on one letter", "zalgo.tsv", lambda: _with_row(("1\ta" + "\u0301\u0316" * 40_000 + "\n").encode()),
             "line 12: 80,000 combining marks in a row at character 4 (accents stacked on one letter; text has at most 30"),
    BadInput("bell character", "bell.tsv", lambda: _with_row(b"0\tmeh\x07\n", 3), "line 5: control character '\\x07'"),
    BadInput("excel file renamed .csv", "renamed.csv", _xlsx, "a ZIP archive or an Excel workbook"),
    BadInput("old excel file renamed .csv", "old.csv", lambda: _OLE2 + b"\x00" * 504, "an old Excel workbook (.xls)"),
    BadInput("tar archive named .tsv", "reviews.tsv", _tar, "the file is a tar archive; drop the review file itself"),
    BadInput("PDF named .csv", "reviews.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "the file is a PDF document"),
    BadInput("bzip2 named .csv", "reviews.csv", lambda: bz2.compress(good_file()), "the file is bzip2-compressed"),
    BadInput("xz named .gz", "reviews.tsv.gz", lambda: lzma.compress(good_file()), "the file is not valid gzip data"),
    BadInput("xz named .tsv", "reviews.tsv", lambda: lzma.compress(good_file()), "the file is xz-compressed"),
    BadInput("UTF-16 without a BOM", "utf16le.csv", lambda: "sentiment,review_body\n1,good\n".encode("utf-16-le"),
             "UTF-16 without a byte-order mark"),
    BadInput("UTF-16 big-endian without a BOM", "utf16be.tsv", lambda: HEADER.decode().encode("utf-16-be"),
             "UTF-16 without a byte-order mark"),
    BadInput("gzip named .csv", "packed.csv", lambda: gzip.compress(good_file()), "gzip-compressed but its name does not end in .gz"),
    BadInput("not gzip, named .gz", "plain.tsv.gz", good_file, "not valid gzip data"),
    BadInput("truncated gzip", "cut.csv.gz", lambda: gzip.compress(good_file())[:-40], "not valid gzip data"),
    BadInput("gzip bomb", "bomb.tsv.gz", _gzip_bomb, "expands to more than 1 MiB", limits={"reader.MAX_DECOMPRESSED_BYTES": 2**20}),
    BadInput("text that grows 18-fold under NFKC", "ligatures.tsv", lambda: _with_row(b"0\t" + "\ufdfa".encode() * 3000 + b"\n", 12),
             "by line 14 the reviews' 3,", limits={"dataset.NORMALIZED_GROWTH_SLACK": 10_000}),
    BadInput("gzip twice", "twice.tsv.gz", lambda: gzip.compress(gzip.compress(good_file())), "gzip-compressed twice; decompress it once"),
    BadInput("gzip header whose file name never ends", "unnamed.tsv.gz", _unnamed_gzip_header, "not valid gzip data"),
    BadInput("invalid UTF-8 inside gzip", "latin.tsv.gz", lambda: gzip.compress(HEADER + b"1\tna\xefve\n"), "not UTF-8: byte 0xef"),
    # --- structure
    BadInput("unterminated quote", "unterminated.tsv", _unterminated_quote, "line 252: a quoted value is never closed"),
    BadInput(
        "quote left open in a large file", "open.tsv", _quote_left_open_in_a_large_file,
        "line 62: a quoted value is not closed within 1,048,576 characters (it runs past line",
    ),
    BadInput(
        "rows swallowed by a stray quote", "stray.tsv", _rows_swallowed_by_a_stray_quote,
        "line 62: a quoted value runs to line 64 and holds what looks like a row of its own ('0\\tRuns small for me')",
    ),
    BadInput(
        "stray quote before the label column", "textfirst.csv",
        lambda: b'review_text,rating\n"Best dress ever!,5\nNice fabric,4\nToo short for a 5\'9",2\n'
        + b"".join(b"r%d_%d,%d\n" % (r, i, r) for r in (1, 3, 5) for i in range(12)),
        "line 2: a quoted value runs to line 4 and holds what looks like a row of its own ('Nice fabric,4')",
    ),
    BadInput(
        "stray quote in a middle column", "middle.tsv",
        lambda: b'sentiment\treview_body\tsplit\n1\t"Perfect fit\ttrain\n-1\tToo tight\ttrain\n0\tRuns small"\ttrain\n'
        + _split_rows(),
        "line 2: a quoted value runs to line 4 and holds what looks like a row of its own ('-1\\tToo tight\\ttrain')",
    ),
    BadInput("blank lines past the line limit", "blank.tsv", lambda: good_file() + b"\n" * 200,
             "the file has more than 100 lines", limits={"reader.MAX_LINES": 100}),
    BadInput("text after a closing quote", "quote.csv", b'sentiment,review_body\n1,"good" product\n', "text follows a closing quote"),
    BadInput("space before a quote in a .tsv", "space.tsv", lambda: _with_row(b'1\t "a\tb"\n'),
             "line 12: 3 fields, expected 2 (a space between a tab and the quote that opens a value? a value is quoted "
             "only when the quote comes right after the tab: remove the space before the quote)"),
    BadInput("unquoted tab in a review", "tab.tsv", lambda: _with_row(b"1\tgood\tproduct\n"), "line 12: 3 fields, expected 2 (an unquoted tab"),
    BadInput("unquoted comma in a review", "comma.csv", b"sentiment,review_body\n1,good,cheap\n", "3 fields, expected 2 (an unquoted comma"),
    BadInput("missing field", "short.tsv", lambda: _with_row(b"1\n"), "line 12: 1 fields, expected 2"),
    BadInput("value over the field limit", "cell.tsv", lambda: HEADER + b"1\t" + b"x" * 2_000_000 + b"\n", "a value is longer than 1,048,576 characters"),
    BadInput("line over the line limit", "line.tsv", lambda: HEADER + b"1\t" + b"x," * 2_200_000 + b"\n", "line 2 is longer than 4,194,304 characters"),
    # --- header
    BadInput("duplicate text column", "dup.tsv", b"sentiment\treview_body\treview_body\n1\ta\tb\n", "duplicate review text column, 2 times"),
    BadInput("text column 50 times", "many.tsv", b"sentiment" + b"\ttext" * 50 + b"\n1" + b"\tx" * 50 + b"\n",
             "duplicate review text column, 50 times: 'text' (column 2), 'text' (column 3), 'text' (column 4), 'text' "
             "(column 5), 'text' (column 6) and 45 more; keep exactly one"),
    BadInput("ambiguous text columns", "amb.tsv", b"sentiment\ttext\treview_body\n1\ta\tb\n", "ambiguous review text columns"),
    BadInput("sentiment and rating", "labels.csv", b"sentiment,rating,text\n1,5,a\n", "ambiguous label columns"),
    BadInput("split column twice", "splits.tsv", b"sentiment\ttext\tsplit\tSplit\n1\ta\ttrain\ttest\n", "duplicate split column, 2 times"),
    BadInput("no text column", "notext.csv", b"text_x,score\nhello,5\n", "no review text column"),
    BadInput("semicolons in a .csv", "semi.csv", b"sentiment;review_body\n1;good\n", "the header is one column holding semicolons"),
    BadInput("quoted names and semicolons in a .csv", "semi.csv", b'"sentiment";"review_body"\n1;"good"\n',
             "line 1: the header '\"sentiment\";\"review_body\"' is separated by semicolons; a .csv file is read as comma"),
    BadInput("quoted names and commas in a .tsv", "comma.tsv", b'"sentiment","review_body"\n1,"good"\n',
             "is separated by commas; a .csv file is read as comma-separated, a .tsv file as tab-separated"),
    BadInput(
        "Excel separator line for semicolons", "excel.csv", b"sep=;\nsentiment;review_body\n1;good\n",
        "line 1: 'sep=;' says the values are separated by semicolons; a .csv file is read as comma-separated",
    ),
    BadInput("no label column", "nolabel.csv", b"text,score\nhello,5\n", "no label column"),
    BadInput("a row of 20,000 values over two lines each", "wide.csv",
             lambda: b"rating,review," + b",".join(b"c%d" % i for i in range(20_000)) + b"\n5,wide" + b',"\nx"' * 20_000 + b"\n",
             "not enough reviews per class in the file"),
    BadInput("huge header without a text column", "wide.csv", _huge_header, "no review text column: the header has 10,000 columns"),
    # --- values
    BadInput("sentiment out of range", "label.tsv", lambda: _with_row(b"7\thello\n"), "line 12: 'sentiment' is '7', expected one of -1, 0, 1"),
    BadInput("rating out of range", "rating.csv", b"Rating,Review Text\n7,hello\n", "'Rating' is '7', expected one of 1, 2, 3, 4, 5"),
    BadInput("ratings in a sentiment column", "stars.tsv", lambda: _with_row(b"5\thello\n"),
             "line 12: 'sentiment' is '5', expected one of -1, 0, 1 (ratings 1-5? name the column 'rating')"),
    BadInput("classes numbered 0, 1, 2", "012.tsv", lambda: _with_row(b"2\thello\n"),
             "line 12: 'sentiment' is '2', expected one of -1, 0, 1 (ratings 1-5? name the column 'rating'; classes "
             "numbered 0, 1, 2? write them -1, 0, 1)"),
    BadInput("sentiments in a rating column", "signs.csv", b"rating,text\n-1,hello\n",
             "'rating' is '-1', expected one of 1, 2, 3, 4, 5 (sentiments -1/0/1? name the column 'sentiment')"),
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
    BadInput(
        "split column whose validation reviews are all in train", "leak.tsv",
        lambda: b"sentiment\treview_body\tsplit\n" + _split_rows() + b"1\tr1_8\ttrain\n",  # r1_8: the validation one
        "not enough reviews per class in the validation split once reviews also in train, and test reviews also in "
        "validation, are removed (1 were): positive (1) has 0",
    ),
    BadInput(
        "split column with only train and test", "twosplits.csv",
        lambda: b"sentiment,review_body,split\n" + b"".join(
            f"{label},r{label}_{i},{'test' if i < 3 else 'train'}\n".encode() for label in (-1, 0, 1) for i in range(12)),
        "the split column marks no review validation (only train, test): mark some reviews validation (validation, "
        "val, valid, dev), or leave the split column out to have the file split 90 / 5 / 5 per class",
    ),
    BadInput(
        "two classes as 0 and 1",
        "binary.tsv",
        lambda: HEADER + b"".join(f"{label}\tr {label} {i}\n".encode() for label in (0, 1) for i in range(30)),
        "'sentiment' holds only 0 (30 reviews) and 1 (30); reviewtune's classes are -1 negative, 0 neutral and 1 "
        "positive, so this file has no negative reviews: if its 0 means negative, write -1 instead",
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
