"""The parts of the HTML pages: a table's cells carry their column's name when the table stacks on a phone."""

from __future__ import annotations

import shlex
import subprocess
from html.parser import HTMLParser

import pytest

from reviewtune.core import page


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, str | None]] = []
        self.cells: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(dict(attrs))
        if tag == "td":
            self.cells.append(dict(attrs))


def parsed(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    return cells


def test_a_stacked_table_names_each_cell_by_its_column_escaped_and_marks_the_table():
    html = page.table(["run", 'a "quoted" <name>', ""], [["r1", "x", "y"], ["r2", "", "z"]], columns="lw", stack=True)
    found = parsed(html)
    assert found.tables == [{"class": "stack"}]
    assert [cell.get("data-label") for cell in found.cells] == ["run", 'a "quoted" <name>', None] * 2
    assert [cell.get("class") for cell in found.cells[:3]] == ["left", "text", None]


def test_a_table_that_does_not_stack_keeps_its_cells_plain():
    found = parsed(page.table(["class", "recall"], [["negative", "0.7"]]))
    assert found.tables == [{}] and all("data-label" not in cell for cell in found.cells)


def test_the_style_stacks_only_marked_tables_and_only_on_a_narrow_screen():
    narrow = page.CSS.split("@media (max-width:600px){", 1)[1]
    assert "table.stack thead{display:none}" in narrow and "content:attr(data-label)" in narrow
    assert "table.stack" not in page.CSS.split("@media", 1)[0]


def test_a_bidirectional_control_in_a_value_is_shown_as_its_escape_and_reorders_nothing():
    name = "team-a/\u202enaj-weiver.tsv \u2066x\u2069 \u200f"
    html = page.document(name, f"<p>{name}</p>")
    assert not any(ord(char) in page.REORDERING for char in html)
    assert html.count("team-a/\\u202enaj-weiver.tsv \\u2066x\\u2069 \\u200f") == 2  # the title and the body
    assert page.document("ok 👍🏽 a\u200db", "")  # a joiner (emoji, scripts) is not reordering: kept
    assert "a\u200db" in page.document("a\u200db", "")


def test_a_character_drawn_as_nothing_is_shown_as_its_escape_so_two_names_never_read_alike():
    html = page.document("t", "<p>team-a/reviews\u200b.tsv</p><p>team-a/reviews.tsv</p><p>a\ufeffb\u2028c\u00add</p>")
    assert "team-a/reviews\\u200b.tsv" in html and "a\\ufeffb\\u2028c\\u00add" in html
    assert not any(ord(char) in page.INVISIBLE for char in html)
    assert page.shown_controls("👨\u200d👩\u200d👧 ‌") == "👨\u200d👩\u200d👧 ‌"  # joiners kept
    assert page.shown_controls("ᠮᠣᠩᠭᠣᠯ\u180eᠠ") == "ᠮᠣᠩᠭᠣᠯ\u180eᠠ"  # so is the Mongolian vowel separator
    assert page.shown_controls("a\u3164b\u115f") == "a\\u3164b\\u115f"  # letters drawn as nothing


def test_every_other_control_character_of_a_value_is_shown_as_its_escape_and_the_markup_s_line_breaks_stay():
    name = "team-c/bad\x1b[31mred\ttab\x85.tsv"
    html = page.document(name, f"<p>{name}</p>\n<p>next</p>")
    assert html.count("team-c/bad\\x1b[31mred\\x09tab\\x85.tsv") == 2
    assert not any(ord(char) < 32 and char != "\n" or 0x7F <= ord(char) <= 0x9F for char in html)
    assert "</p>\n<p>next" in html and "\nth,td{" in html  # the page's own line breaks (style, markup)


@pytest.mark.parametrize("value", [
    "team-a/reviews.tsv", "team a/it's $HOME `x`.tsv", "team-b/<b>x</b> & \"q\" \u202ecba.tsv",
    "team-c/bad\x1b[31mred\\n\u2066.tsv", "line\nbreak\ttab\x85c1 ü 👍🏽.tsv", "quote ' and backslash \\ \x01",
    "team-d/reviews\u200b.tsv", "soft\u00adhyphen\ufeff\u2028x", "filler\u3164\u206a\ufff9.tsv", "only\u3164filler.tsv",
])
@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_a_shell_word_is_read_back_by_bash_as_the_value_and_shows_no_control_character(value, locale):
    word = page.shell_word(value)
    assert subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True,
                          env={"LC_ALL": locale}).stdout.decode() == value
    assert word.isprintable() and page.escaped_controls(word) == word
    assert (word == shlex.quote(value)) is (page.escaped_controls(value) == value)  # plain quotes: nothing to escape


def test_a_name_is_put_on_one_line_with_every_control_character_escaped():
    assert page.one_line("team-x/two\nlines\r\t\x1b\x85.tsv") == "team-x/two\\x0alines\\x0d\\x09\\x1b\\x85.tsv"
    assert page.one_line("équipe/avis ✓ 👍🏽.tsv") == "équipe/avis ✓ 👍🏽.tsv"
