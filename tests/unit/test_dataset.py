from __future__ import annotations

import csv
import io

import pytest

from reviewtune.core.dataset import rating_to_sentiment, split_reviews, to_tsv
from reviewtune.core.errors import DatasetError


def make_file(rows, header=("sentiment", "review_body"), delimiter="\t") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def balanced_rows(per_class=40):
    return [(label, f"review number {i} of class {label}") for label in (-1, 0, 1) for i in range(per_class)]


def test_split_is_stratified_reproducible_and_disjoint():
    data = make_file(balanced_rows(100))
    first = split_reviews(data, "a.tsv")
    second = split_reviews(data, "a.tsv")
    assert first.splits == second.splits
    texts = {name: {r.text for r in rows} for name, rows in first.splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"] and not texts["validation"] & texts["test"]
    assert sum(len(t) for t in texts.values()) == 300
    assert first.class_counts["test"] == {"-1": 5, "0": 5, "1": 5}
    assert first.class_counts["validation"] == {"-1": 5, "0": 5, "1": 5}


def test_ratings_map_to_sentiment_and_classes_are_downsampled():
    rows = [(r, f"text {r} {i}") for r in (1, 2, 3, 4, 5) for i in range(30)]
    result = split_reviews(make_file(rows, header=("Rating", "Review Text"), delimiter=","), "raw.csv")
    total = {label: sum(result.class_counts[s][label] for s in result.class_counts) for label in ("-1", "0", "1")}
    assert total == {"-1": 30, "0": 30, "1": 30}  # 60 negative, 30 neutral, 60 positive -> 30 each
    assert result.dropped_by_balancing == 60
    assert result.label_kind == "rating"
    assert [rating_to_sentiment(r) for r in (1, 2, 3, 4, 5)] == [-1, -1, 0, 1, 1]


def test_no_balancing_keeps_every_row():
    rows = balanced_rows(20) + [(1, f"extra {i}") for i in range(50)]
    result = split_reviews(make_file(rows), "a.tsv", class_balance="none")
    assert sum(len(r) for r in result.splits.values()) == 110


def test_split_column_is_used_as_given():
    rows = [(label, f"t{label}{i}", "test" if i < 2 else ("val" if i < 4 else "train")) for label in (-1, 0, 1) for i in range(12)]
    result = split_reviews(make_file(rows, header=("sentiment", "review_body", "split")), "a.tsv")
    assert result.split_source == "file"
    assert {r.text for r in result.splits["test"]} == {f"t{label}{i}" for label in (-1, 0, 1) for i in range(2)}
    assert len(result.splits["validation"]) == 6


def test_raw_kaggle_shape_with_quotes_commas_newlines_and_missing_text():
    header = ("", "Clothing ID", "Age", "Title", "Review Text", "Rating")
    rows = [(i, 1, 30, "t", f'Love it, "really"\nsecond line {i}', 1 + i % 5) for i in range(75)]
    rows.append((99, 1, 30, "t", "", 5))
    result = split_reviews(make_file(rows, header=header, delimiter=","), "Womens.csv")
    assert result.dropped_empty_text == 1
    assert result.text_column == "Review Text"
    assert all("\n" not in r.text for rows_ in result.splits.values() for r in rows_)


def test_a_row_without_a_review_is_dropped_whatever_its_label_or_split_holds():
    """An export's row with only its id (R writes NA for each value, a Kaggle row has an empty text and rating): no
    review, so nothing to label or split; dropped and counted, not a reason to refuse the file."""
    r_export = ('"","review_text","sentiment"\n'
                + "".join(f'"{i}","review {i} of {label}",{label}\n' for i, (label, _) in enumerate(balanced_rows(20)))
                + '"61",NA,NA\n"62",,positive\n').encode()
    assert split_reviews(r_export, "r.csv").dropped_empty_text == 2
    kaggle = [(i, text, {-1: 1, 0: 3, 1: 5}[label]) for i, (label, text) in enumerate(balanced_rows(20))]
    kaggle.append((999, "", ""))
    result = split_reviews(make_file(kaggle, header=("Clothing ID", "Review Text", "Rating"), delimiter=","), "k.csv")
    assert result.dropped_empty_text == 1
    names = ["train"] * 8 + ["validation", "test"]
    given = [(label, f"r{label}_{i}", name) for label in (-1, 0, 1) for i, name in enumerate(names)]
    given += [(label, f"more {label} {i}", "train") for label in (-1, 0, 1) for i in range(3)] + [(1, "", "")]
    result = split_reviews(make_file(given, header=("sentiment", "review_body", "split")), "s.tsv")
    assert result.dropped_empty_text == 1 and result.split_source == "file"
    with pytest.raises(DatasetError, match="'sentiment' is 'NA', expected one of -1, 0, 1"):  # a review: judged
        split_reviews(r_export + b'"63","a review",NA\n', "r.csv")


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\r"])
def test_a_line_of_exactly_the_line_limit_is_read_whatever_its_line_break_and_one_more_character_is_not(line_break):
    from reviewtune.core.formats import MAX_FIELD_CHARS, MAX_LINE_CHARS

    def with_long_row(length: int) -> bytes:
        fixed = "1\tthe long one\t"
        room = length - len(fixed) - 4  # four more separators
        cells = [room // 5] * 4 + [room - 4 * (room // 5)]
        assert max(cells) < MAX_FIELD_CHARS
        row = fixed + "\t".join("n" * n for n in cells)
        assert len(row) == length
        rows = "".join(f"{label}\t{text}\t\t\t\t\t{line_break}" for label, text in balanced_rows(20))
        return (f"sentiment\treview_body\tn1\tn2\tn3\tn4\tn5{line_break}{rows}{row}{line_break}").encode()

    assert split_reviews(with_long_row(MAX_LINE_CHARS), "wide.tsv").rows_read == 61
    with pytest.raises(DatasetError, match="line 62 is longer than 4,194,304 characters"):
        split_reviews(with_long_row(MAX_LINE_CHARS + 1), "wide.tsv")


def test_a_review_the_file_labels_two_ways_is_left_out_and_counted():
    rows = balanced_rows(40) + [(0, f"both ways {i}") for i in range(6)] + [(1, f"both ways {i}") for i in range(6)]
    result = split_reviews(make_file(rows), "a.tsv")
    texts = [r.text for rows_ in result.splits.values() for r in rows_]
    assert not any(t.startswith("both ways") for t in texts)
    assert result.conflicting_removed == 12 and result.summary()["conflicting_removed"] == 12


def test_a_file_short_of_reviews_once_those_labelled_two_ways_are_out_says_so():
    rows = [(0, f"both {i}") for i in range(12)] + [(1, f"both {i}") for i in range(12)]
    rows += [(1, f"pos {i}") for i in range(12)] + [(-1, f"neg {i}") for i in range(24)]
    with pytest.raises(DatasetError, match=r"not enough reviews per class in the file \(12 reviews the file labels two "
                                           r"ways left out, 24 rows; another label first at line 14, 15, 16, 17, 18 "
                                           r"\.\.\.\): neutral \(0\) has 0"):
        split_reviews(make_file(rows), "a.tsv")


def test_a_quoted_review_over_several_lines_some_of_which_read_as_rows_is_one_review():
    review = "Three problems:\n1, the zipper broke\n2, the colour faded\n3, it shrank"
    rows = balanced_rows(40) + [(-1, review)]
    result = split_reviews(make_file(rows, delimiter=","), "a.csv")
    texts = [r.text for rows_ in result.splits.values() for r in rows_]
    assert sum(t.startswith("Three problems:") and t.endswith("it shrank") for t in texts) == 1


@pytest.mark.parametrize("header", [("review_body", "sentiment"), ("sentiment", "review_body")])
def test_rows_an_unclosed_quote_swallowed_are_refused_whichever_column_comes_first(header):
    def row(label, text):
        return f"{text},{label}" if header[0] == "review_body" else f"{label},{text}"

    lines = [",".join(header)] + [row(label, f"review {i} of class {label}") for label in (-1, 0, 1) for i in range(15)]
    lines[5] = row(1, '"Great jacket') if header[0] == "sentiment" else '"Great jacket, warm,1'
    lines[6:6] = [row(0, "too small for me"), "", row(-1, "the zipper broke after a week"),
                  row(1, 'and the case for a 13"') if header[0] == "sentiment" else 'and the case for a 13",1']
    with pytest.raises(DatasetError, match="holds what looks like a row of its own"):
        split_reviews("\n".join(lines).encode(), "a.csv")


def test_a_csv_with_a_space_before_each_opening_quote_is_told_where_the_quote_must_go():
    lines = ["sentiment,review_body"] + [f'{label}, "review {i}, of class {label}"' for label in (-1, 0, 1)
                                          for i in range(12)]
    with pytest.raises(DatasetError, match=r'line 2: 3 fields, expected 2 \(a space between a comma and the quote '
                                           r'that opens a value\? .*write 1,"a, b", not 1, "a, b"\)'):
        split_reviews("\n".join(lines).encode(), "a.csv")
    lines = ["sentiment,review_body"] + [f'{label}, "Perfect" says it all {i} {label}' for label in (-1, 0, 1)
                                          for i in range(12)]
    assert split_reviews("\n".join(lines).encode(), "a.csv").rows_read == 36  # a quote inside a value: as before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        ("sentiment\treview_body\n1\tcaf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("sentiment\treview_b\xf6dy\n1\tgood\n".encode("latin-1"),
         r"^1 problem: line 1: not UTF-8: byte 0xf6 at character 19; save the file as UTF-8 \(reading stopped at line 1\)$"),
        (b"label_x\ttext\n1\thello\n", "no label column"),
        (b"sentiment\tstars_text\n1\thello\n", "no review text column"),
        (b"sentiment\treview_body\n2\thello\n", "line 2: 'sentiment' is '2', expected one of"),
        (b"rating\treview_body\n7\thello\n", "line 2"),
        (b"sep=;\nsentiment;review_body\n1;good\n", "line 1: 'sep=;' says the values are separated by semicolons; a .csv"),
        (b"\n\nsep=|\nsentiment|review_body\n", r"line 3: 'sep=\|' says the values are separated by pipes"),
        (b"sep=,\nsentiment,review_body\n1,good\n", "line 1: 'sep=,' says the values are separated by commas; a .csv"),
        (b"sep=\t\n\n", r"the file has no header after its 'sep=\\t' line"),
    ],
)
def test_bad_files_say_what_is_wrong(data, message):
    with pytest.raises(DatasetError, match=message):
        split_reviews(data, "a.tsv")


@pytest.mark.parametrize(
    ("data", "name", "said"),
    [
        (b"sentiment,review_body\n1,hello\n", "a.tsv", "holding commas"),
        (b"sentiment;review_body\n1;hello\n", "a.csv", "holding semicolons"),
        (b"review_body|stars\nhello|5\n", "a.tsv", "holding pipes"),
    ],
)
def test_a_file_separated_otherwise_than_its_name_says_is_told_so(data, name, said):
    with pytest.raises(DatasetError, match=f"{said}: a .tsv file is read as tab-separated"):
        split_reviews(data, name)


def test_a_one_column_header_without_another_separator_gets_no_such_hint():
    with pytest.raises(DatasetError, match="no review text column") as raised:
        split_reviews(b"comments\nhello\n", "a.tsv")
    assert "separated" not in str(raised.value)


def test_too_few_rows_per_class_names_the_class():
    rows = balanced_rows(40)[:-35]  # positive keeps 5 rows
    with pytest.raises(DatasetError, match=r"positive \(1\) has 5.*at least 10"):
        split_reviews(make_file(rows), "a.tsv")


def test_tsv_output_round_trips_tabs_and_quotes():
    result = split_reviews(make_file([(label, f'a\tb "q" {label} {i}') for label in (-1, 0, 1) for i in range(12)]), "a.tsv")
    text = to_tsv(result.splits["train"]).decode()
    parsed = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert {row["review_body"] for row in parsed} == {r.text for r in result.splits["train"]}
    assert all("\t" not in row["review_body"] for row in parsed)


def test_a_review_in_another_unicode_form_is_the_same_review():
    import unicodedata

    composed = "\uff23\uff41\uff46\u00e9 dress, fits well"  # full-width C, a, f; é as one letter
    decomposed = unicodedata.normalize("NFD", "Caf\u00e9 dress, fits well")  # e + combining accent
    assert unicodedata.normalize("NFC", composed).casefold() != unicodedata.normalize("NFC", decomposed).casefold()
    assert composed != decomposed
    rows = balanced_rows(40) + [(1, composed), (1, decomposed.upper())]
    result = split_reviews(make_file(rows), "a.tsv")
    assert result.duplicates_removed == 1

    # the same review in train and, in its other form, in test: removed from test as leakage
    rows = [(label, text, "train") for label, text in balanced_rows(12)] + [(1, composed, "train")]
    rows += [(label, f"held out {split} {label}", split) for split in ("validation", "test") for label in (-1, 0, 1)]
    rows.append((1, decomposed, "test"))
    result = split_reviews(make_file(rows, header=("sentiment", "review_body", "split")), "a.tsv")
    assert result.leakage_removed == 1
    assert composed in {r.text for r in result.splits["train"]}
    assert {r.text for r in result.splits["test"]} == {f"held out test {label}" for label in (-1, 0, 1)}


def test_a_test_review_also_in_validation_is_removed_from_test():
    # a split column can put one review in validation and test: the tuner chose on it, so it tells nothing new
    rows = [(label, text, "train") for label, text in balanced_rows(12)]
    rows += [(label, f"held out {split} {label}", split) for split in ("validation", "test") for label in (-1, 0, 1)]
    rows += [(1, "Seen while tuning, fits well", "validation"), (1, "seen while  TUNING, fits well", "test")]
    result = split_reviews(make_file(rows, header=("sentiment", "review_body", "split")), "a.tsv")
    assert result.leakage_removed == 1
    assert "Seen while tuning, fits well" in {r.text for r in result.splits["validation"]}
    assert {r.text for r in result.splits["test"]} == {f"held out test {label}" for label in (-1, 0, 1)}


@pytest.mark.parametrize(
    ("directive", "delimiter", "name"),
    [("sep=,", ",", "a.csv"), ("\ufeffSEP=\t", "\t", "a.tsv"), ("sep=\t", "\t", "a.csv"), ('"sep=,"', ",", "a.csv"),
     ("sep=,,, ", ",", "a.csv")],
)
def test_excel_s_separator_line_before_the_header_is_read_past(directive, delimiter, name):
    # a comma inside a column's name: a .csv is read as tab-separated only because its line says so
    header = ("sentiment", "review_body", "notes, if any")
    rows = [(label, text, "") for label, text in balanced_rows(20)]
    data = directive.encode() + b"\r\n" + make_file(rows, header=header, delimiter=delimiter)
    result = split_reviews(data, name)
    assert result.rows_read == 60 and sum(result.class_counts["train"].values()) == 54


def test_a_bad_row_after_a_separator_line_is_named_by_its_line_in_the_file():
    data = b"sep=,\nsentiment,review_body\n" + b"".join(f"{(i % 3) - 1},review {i}\n".encode() for i in range(60))
    with pytest.raises(DatasetError, match="line 4: 'sentiment' is '7'"):
        split_reviews(data.replace(b"\n0,review 1\n", b"\n7,review 1\n"), "a.csv")


class _CountedReads(io.RawIOBase):
    """A body that counts the reads asked of it (each a call on the S3 stream in the function)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(size)


@pytest.mark.parametrize("padding", ["name", "zeros"])
def test_a_gz_is_read_from_its_body_in_large_pieces_whatever_its_header_or_padding(padding):
    """gzip reads a header's file name and the zeros after a stream a byte at a time; on the S3 body that was one
    call per byte (a few MiB of either took the function past its timeout)."""
    from reviewtune.core.dataset import split_stream

    body = b"sentiment\treview_body\n" + "".join(f"{c}\treview {i} of {c}\n" for c in (-1, 0, 1) for i in range(20)).encode()
    if padding == "name":  # FNAME set, the name never ends: refused as not gzip, after reading it all
        data = b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03" + b"A" * (1 << 20)
    else:  # a valid stream followed by zero padding: read
        import gzip

        data = gzip.compress(body) + b"\x00" * (1 << 20)
    source = _CountedReads(data)
    if padding == "name":
        with pytest.raises(DatasetError, match="not valid gzip data"):
            split_stream(source, "reviews.tsv.gz")
    else:
        assert split_stream(source, "reviews.tsv.gz").summary()["rows"]["train"] > 0
    assert source.reads < 100, f"{source.reads:,} reads for {len(data):,} bytes"


def test_real_reviews_never_come_near_the_limit_on_how_text_grows_under_normalization(monkeypatch):
    """The embedded sample's 1,200 real reviews split with no slack at all: NFKC keeps review text about its length."""
    from reviewtune.core import dataset
    from reviewtune.real_sample import sample_bytes

    monkeypatch.setattr(dataset, "NORMALIZED_GROWTH_SLACK", 0)
    ligatures = make_file([(label, f"Très jolie robe, ﬁne et légère, ½ taille ™ {label} {n}") for n in range(20)
                           for label in (-1, 0, 1)])  # each grows by a few characters: ﬁ, ½ and ™ become 2 to 3
    assert sum(len(rows) for rows in split_reviews(sample_bytes(), "sample.tsv").splits.values()) > 1_000
    assert sum(len(rows) for rows in split_reviews(ligatures, "ligatures.tsv").splits.values()) == 60


def test_text_that_grows_many_fold_under_normalization_is_refused_where_it_passes_the_limit():
    """A file of U+FDFA (18 characters each under NFKC): refused within its first hundred lines, not read to its end
    (comparing 256 MiB of it took minutes, past the function's timeout)."""
    rows = [(label, "\ufdfa" * 1_000 + f" {n}") for n in range(2_000) for label in (-1, 0, 1)]

    with pytest.raises(DatasetError, match=r"by line (\d+) the reviews' [\d,]+ characters had become [\d,]+ once "
                                           r"Unicode-normalized \(NFKC, as reviews are compared\): more than 4-fold") as err:
        split_reviews(make_file(rows), "symbols.tsv")
    assert int(err.value.args[0].split()[2].replace(",", "")) < 100


@pytest.mark.parametrize("minus", ["\u2212", "\u2013", "\u2010", "\u2011", "\ufe63", "\uff0d"])
def test_minus_one_written_with_another_minus_sign_is_negative(minus):
    rows = [(f"{minus}1" if label == -1 else label, text) for label, text in balanced_rows(20)]
    result = split_reviews(make_file(rows), "a.tsv")
    assert sum(result.class_counts[name]["-1"] for name in result.class_counts) == 20
    assert {r.sentiment for r in result.splits["train"] if r.text.endswith("class -1")} == {-1}


def test_a_dash_before_another_digit_is_still_refused():
    rows = balanced_rows(20) + [("\u22122", "two below")]
    with pytest.raises(DatasetError, match="'sentiment' is '\u22122', expected one of -1, 0, 1"):
        split_reviews(make_file(rows), "a.tsv")


def test_a_file_of_three_classes_that_also_uses_0_and_1_is_not_taken_for_a_two_class_file():
    rows = balanced_rows(20) + [(0, f"more neutral {i}") for i in range(40)]
    assert split_reviews(make_file(rows), "a.tsv", class_balance="none").class_counts["train"]["-1"] > 0


def test_ratings_that_map_only_to_neutral_and_positive_are_not_taken_for_a_two_class_file():
    rows = [(r, f"text {r} {i}") for r in (3, 4, 5) for i in range(20)]
    with pytest.raises(DatasetError, match=r"negative \(-1\) has 0") as raised:
        split_reviews(make_file(rows, header=("rating", "text")), "a.tsv")
    assert "holds only 0" not in str(raised.value)


def test_thirty_combining_marks_in_a_row_are_text_and_thirty_one_are_refused_wherever_the_marks_are_from():
    stacked = "a" + "\u0301\u0316" * 15  # 30 marks
    result = split_reviews(make_file(balanced_rows(20) + [(1, stacked)]), "a.tsv")
    assert any(r.text == stacked for rows in result.splits.values() for r in rows)
    for extra in ("\u0301", "\U0001d165"):  # one more, from the Basic Multilingual Plane or past it
        with pytest.raises(DatasetError, match=r"line 62: 31 combining marks in a row at character 4 "):
            split_reviews(make_file(balanced_rows(20) + [(1, stacked + extra)]), "a.tsv")
    for decomposing in ("\u0f73" * 31, "\uff9e\u0301" * 16):  # no class of their own, marks once normalized
        with pytest.raises(DatasetError, match=r"line 62: (31|32) combining marks in a row at character 4 "):
            split_reviews(make_file(balanced_rows(20) + [(1, "a" + decomposing)]), "a.tsv")
    accented = "tr" + "\u00e8" * 40 + "s bien"  # letters that carry a mark each: no run of marks
    assert split_reviews(make_file(balanced_rows(20) + [(1, accented)]), "a.tsv").rows_read == 61
    emoji = "fits 👗 well " * 500  # characters past U+FFFF that are not marks
    assert split_reviews(make_file(balanced_rows(20) + [(1, emoji)]), "a.tsv").rows_read == 61


@pytest.mark.parametrize("start", [b"sep=,\n\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf"])
def test_a_byte_order_mark_before_the_header_that_is_not_the_file_s_first_bytes_is_not_part_of_a_column_name(start):
    data = start + make_file(balanced_rows(20), delimiter=",")
    result = split_reviews(data, "a.csv")
    assert (result.label_column, result.text_column) == ("sentiment", "review_body")


def test_a_review_of_only_invisible_characters_is_an_empty_review():
    rows = balanced_rows(20) + [(1, "\u200b"), (0, "\ufeff \u200d"), (-1, "\u00ad\u2060")]
    result = split_reviews(make_file(rows), "a.tsv")
    assert result.dropped_empty_text == 3 and result.rows_read == 63


def test_every_copy_of_a_review_labelled_two_ways_is_counted_as_left_out_not_as_repeated():
    rows = balanced_rows(20) + [(0, "same"), (0, "same"), (0, "same"), (1, "same"), (1, "again"), (1, "again")]
    result = split_reviews(make_file(rows), "a.tsv")
    assert (result.conflicting_removed, result.duplicates_removed) == (4, 1)


@pytest.mark.parametrize(("header", "review"), [
    (("rating", "review_text"), "Cons:\n1, runs small\n2, thin fabric"),  # every line of the list reads as a rating row
    (("sentiment", "review_body"), "Sizing notes:\n1, it runs small\n2, sleeves are long"),
    (("sentiment", "review_body"), "Pros:\n1, fits well"),
    (("review_text", "rating"), "Ordered sizes 4, 5\nboth too small, returned them"),  # its first line reads as a row
])
def test_a_quoted_list_whose_lines_look_like_rows_written_by_a_person_is_one_review(header, review):
    label = 2 if "rating" in header else -1
    rows = [(r, f"r{r}_{i}") for r in ((1, 3, 5) if "rating" in header else (-1, 0, 1)) for i in range(10)]
    rows = [row if header[0] in ("rating", "sentiment") else row[::-1] for row in rows + [(label, review)]]
    result = split_reviews(make_file(rows, header=header, delimiter=","), "a.csv", class_balance="none")
    assert " ".join(review.split()) in {r.text for rows_ in result.splits.values() for r in rows_}


def test_a_quoted_value_whose_lines_read_as_rows_as_a_program_writes_them_says_how_to_keep_it_one_review():
    rows = [(r, f"r{r}_{i}") for r in (1, 3, 5) for i in range(10)] + [(2, "Cons:\n1,runs small\n2,thin fabric")]
    with pytest.raises(DatasetError, match="if the value is one review as written, put it on one line"):
        split_reviews(make_file(rows, header=("rating", "review_text"), delimiter=","), "a.csv")


@pytest.mark.parametrize(("written", "label"), [("1.00", 1), ("1,0", 1), ("-1,00", -1), ("+1", 1), ("-0.0", 0),
                                                ("01", 1), ("\uff11", 1), ("\uff0d\uff11", -1), ("\uff11\uff0e\uff10", 1)])
def test_a_label_as_spreadsheets_write_whole_numbers_under_other_formats_is_that_number(written, label):
    rows = balanced_rows(20) + [(written, "the odd one")]
    result = split_reviews(make_file(rows), "a.tsv", class_balance="none")
    assert [r.sentiment for rows_ in result.splits.values() for r in rows_ if r.text == "the odd one"] == [label]


@pytest.mark.parametrize("written", ["1,000", "1.5", "1.05", "10", "1e0", "1,", "(1)", "\u00b9", "\u2460", "1" * 5000])
def test_a_label_that_is_not_a_whole_number_written_so_is_refused(written):
    with pytest.raises(DatasetError, match="expected one of -1, 0, 1"):
        split_reviews(make_file(balanced_rows(20) + [(written, "the odd one")]), "a.tsv")


def test_a_missing_value_marker_as_a_text_is_an_empty_review():
    """R's write.csv writes a missing text as an unquoted NA; pandas NaN; spreadsheets #N/A; databases NULL."""
    data = (b'"","review_text","sentiment"\n' + b"".join(f'"{i}","review {i} of {label}",{label}\n'.encode()
                                                         for i, label in enumerate([-1, 0, 1] * 20))
            + b'"61",NA,1\n"62",NA,-1\n"63",NaN,0\n"64",#N/A,0\n"65",NULL,1\n"66",n/a,1\n')
    result = split_reviews(data, "r.csv")
    assert (result.dropped_empty_text, result.conflicting_removed, result.duplicates_removed) == (6, 0, 0)


def test_rows_that_leave_out_empty_cells_at_their_end_are_refused_saying_how_excel_makes_them():
    """Excel leaves out the separators of empty cells that end some rows: taking such rows would also take rows whose
    review holds an unquoted line break or separator, with a wrong text or label, so they are refused, saying why."""
    lines = ["review_text,sentiment,notes"] + [f"review {i} of {label},{label}," for i, label in enumerate([-1, 0, 1] * 20)]
    with pytest.raises(DatasetError, match=r"line 62: 2 fields, expected 3 \(empty cells at the row's end left out, "
                                           r"as Excel does for some rows\? delete the empty columns"):
        split_reviews("\n".join(lines + ["one more,1"]).encode(), "a.csv")
    with pytest.raises(DatasetError, match=r"line 62: 4 fields, expected 3 \(an unquoted comma"):
        split_reviews("\n".join(lines + ["good, fits well,1,"]).encode(), "a.csv")
    with pytest.raises(DatasetError, match=r"line 62: 1 fields, expected 3 \(a missing value"):
        split_reviews("\n".join(lines + ["no label here"]).encode(), "a.csv")


@pytest.mark.parametrize("before", [",\r\n", ",,,\n", ";\n", "\xef\xbb\xbf,\r\n"])
def test_a_line_of_only_separators_before_the_header_is_blank(before):
    data = before.encode("latin-1") + make_file(balanced_rows(20), delimiter=",")
    assert split_reviews(data, "a.csv").label_column == "sentiment"


@pytest.mark.parametrize("header", [("\uff53\uff45\uff4e\uff54\uff49\uff4d\uff45\uff4e\uff54", "review_body"),
                                    ("sentiment", "Review.Text")])
def test_header_names_in_full_width_letters_or_with_dots_for_spaces_match(header):
    assert split_reviews(make_file(balanced_rows(20), header=header), "a.tsv").rows_read == 60


def test_full_width_split_values_are_split_values():
    rows = [(label, f"t{label}{i}", "\uff54\uff45\uff53\uff54" if i < 2 else ("dev" if i < 4 else "train"))
            for label in (-1, 0, 1) for i in range(12)]
    result = split_reviews(make_file(rows, header=("sentiment", "review_body", "split")), "a.tsv")
    assert len(result.splits["test"]) == 6


def test_a_list_in_a_quoted_review_is_text_whatever_the_rows_before_it():
    """Rows before it that start their text with a space say nothing of how the list's lines were written."""
    lines = ["sentiment,review_body", "1, Love it", "0, It is ok", "-1, Too small",
             '1,"Three problems:\n1, the zipper broke\n0, runs small\nstill love it"']
    lines += [f"{label},review {i} of {label}" for label in (-1, 0, 1) for i in range(15)]
    result = split_reviews("\n".join(lines).encode(), "a.csv", class_balance="none")
    assert "Three problems: 1, the zipper broke 0, runs small still love it" in {
        r.text for rows in result.splits.values() for r in rows}


def test_empty_cells_past_the_header_s_columns_are_named_as_such():
    lines = ["review_text,sentiment"] + [f"review {i} of {label},{label}" for i, label in enumerate([-1, 0, 1] * 20)]
    with pytest.raises(DatasetError, match=r"line 62: 4 fields, expected 2 \(empty cells past the header's columns "
                                           r"\(a comma at the end of the row\)\? remove them"):
        split_reviews("\n".join(lines + ["one more,1,,"]).encode(), "a.csv")


def test_a_stray_quote_is_found_where_the_rows_name_their_split_in_full_width_letters():
    train = "\uff54\uff52\uff41\uff49\uff4e"
    rows = [f"{label}\tr{label}_{i}\t{train if i < 8 else ('dev' if i < 9 else 'test')}"
            for label in (-1, 0, 1) for i in range(10)]
    rows[3:3] = ['1\t"Perfect fit', f"0\tRuns small for me\t{train}", "-1\tI am 5'9\"\ttest"]
    with pytest.raises(DatasetError, match=r"holds what looks like a row of its own"):
        split_reviews(("sentiment\treview_body\tsplit\n" + "\n".join(rows)).encode(), "a.tsv")


def test_a_split_whose_marked_reviews_were_all_left_out_is_not_called_unmarked():
    rows = [(label, f"t{label}{i}", "test" if i < 2 else "train") for label in (-1, 0, 1) for i in range(12)]
    rows += [(1, "same words", "validation"), (0, "same words", "validation")]  # labelled two ways: left out
    with pytest.raises(DatasetError, match="not enough reviews per class in the validation split") as raised:
        split_reviews(make_file(rows, header=("sentiment", "review_body", "split")), "a.tsv")
    assert "marks no review" not in str(raised.value)


def test_a_quoted_review_whose_first_line_with_the_values_before_it_reads_as_a_row_is_one_review():
    lines = ["Title,Review Text,Rating,Age", 'Great,"I tried sizes 2,4,6\nThe 4 fit best.",5,30']
    lines += [f"t{i},review {i} of {r},{r},40" for r in (1, 3, 5) for i in range(12)]
    result = split_reviews("\n".join(lines).encode(), "a.csv", class_balance="none")
    assert "I tried sizes 2,4,6 The 4 fit best." in {r.text for rows in result.splits.values() for r in rows}


def test_a_split_cell_of_stacked_marks_is_refused_without_normalizing_it():
    rows = [f"good {i},1,train" + "\u0301\u0316" * 100_000 for i in range(3)]
    data = ("review_body,sentiment,split\n" + "\n".join(rows)).encode()
    with pytest.raises(DatasetError, match="line 2: 200,000 combining marks in a row"):
        split_reviews(data, "a.csv")


def test_fractions_that_leave_the_train_split_no_review_of_a_class_are_refused_with_the_way_out():
    rows = [(label, f"review {i} of class {label}", None) for label in (-1, 0, 1) for i in range(10)]
    data = make_file([(label, text) for label, text, _ in rows], header=("sentiment", "review_body"))
    with pytest.raises(DatasetError, match=r"not enough reviews per class in the train split \(VALIDATION_FRACTION "
                                           r"0\.49 and TEST_FRACTION 0\.49 of each class leave it too few: add "
                                           r"reviews, or lower them\): negative \(-1\) has 0"):
        split_reviews(data, "a.tsv", validation_fraction=0.49, test_fraction=0.49, min_rows_per_class=1)
    split = split_reviews(data, "a.tsv", validation_fraction=0.3, test_fraction=0.3, min_rows_per_class=1)
    assert split.class_counts["train"] == {"-1": 4, "0": 4, "1": 4}
