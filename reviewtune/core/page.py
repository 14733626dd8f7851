"""The parts of reviewtune's self-contained HTML pages (the run report, the overview): style, tables, cards, the
document around them. Inline CSS, no script, a Content-Security-Policy that forbids any request.

Standard library only, and no import from reviewtune: the evaluation job writes the run report with this very file
(training_code/page.py links to it, and the code bundle carries the file).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from html import escape

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#f5f6f8;margin:0}
main{max-width:1120px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0;overflow-wrap:anywhere}
h2{font-size:1.2em;margin:0 0 .6em;border-bottom:2px solid #d8dee8;padding-bottom:.2em}
section{background:#fff;border-radius:8px;padding:14px 18px;margin:14px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.sub{color:#5a6475;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{flex:1 1 150px;background:#eef3fb;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:1.45em}
.card>span{color:#5a6475;font-size:.85em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.4em 0;font-size:.92em}
th,td{padding:4px 10px;border-bottom:1px solid #e3e7ee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
.text{white-space:normal;text-align:left;min-width:16em;overflow-wrap:anywhere}
.name{white-space:normal;text-align:left;min-width:10em;overflow-wrap:anywhere}
th.left,td.left{text-align:left}
tr.best td{background:#fff4e0}
img{max-width:100%;height:auto;display:block;margin:8px 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}
dt{color:#5a6475}dd{margin:0;overflow-wrap:anywhere}
code{overflow-wrap:anywhere}
@media (max-width:600px){main{padding:8px}section{padding:10px}body{font-size:14px}.card b{font-size:1.2em}
th,td{white-space:normal;overflow-wrap:break-word;padding:4px 6px}dl{grid-template-columns:1fr}dd{margin-bottom:6px}
.plot{overflow-x:auto}.plot img{width:auto;max-width:680px}
table.stack,table.stack tbody,table.stack tr,table.stack td{display:block}
table.stack thead{display:none}
table.stack tr{border-bottom:1px solid #d8dee8;padding:6px 0}
table.stack td{border:0;padding:1px 0 1px 8em;text-indent:-8em;text-align:left;white-space:normal;
overflow-wrap:anywhere;min-width:0}
table.stack td:empty{display:none}
table.stack td::before{content:attr(data-label);display:inline-block;width:9.4em;padding-right:.5em;text-indent:0;
color:#5a6475;font-size:.85em;vertical-align:top;overflow-wrap:anywhere}}
"""


# Nothing outside the file may load: images are data: URIs, the style is inline, there is no script.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'"


def table(header: list[str], rows: list[list[str]], row_class: Callable[[int], str] | None = None,
          columns: str = "", stack: bool = False) -> str:
    """A table that scrolls inside its section when wider than it. Cells are HTML; the header is text. ``columns``:
    one letter per column, ``l`` for text aligned left, ``w`` for text that wraps (a review), ``n`` for a name that
    may wrap (a file's key), anything else for the default (the first column left, the others right, as numbers). ``stack``: on a phone's width each row is a block of
    lines, each cell after its column's name (empty cells left out), instead of a table wider than the screen."""
    kinds = {"l": ' class="left"', "w": ' class="text"', "n": ' class="name"'}
    css = [kinds.get(letter, "") for letter in columns] + [""] * (len(header) - len(columns))
    head = "".join(f"<th{css[n]}>{escape(h)}</th>" for n, h in enumerate(header))
    labels = [f' data-label="{escape(h)}"' if stack and h else "" for h in header]
    body = []
    for i, row in enumerate(rows):
        row_css = row_class(i) if row_class else ""
        body.append(f'<tr class="{row_css}">' + "".join(
            f"<td{css[n] if n < len(css) else ''}{labels[n] if n < len(labels) else ''}>{cell}</td>"
            for n, cell in enumerate(row)) + "</tr>")
    kind = ' class="stack"' if stack else ""
    return (f'<div class="scroll"><table{kind}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


def card(label: str, value: str, key: str | None = None) -> str:
    attribute = f' data-key="{key}"' if key else ""
    return f'<div class="card"><b{attribute}>{value}</b><span>{escape(label)}</span></div>'


# Unicode's bidirectional controls: in a file name or a reason they would reverse or isolate the text after them
# (a dataset "team-a/\u202enaj-weiver.tsv" read as "vst.review-jan", and the line's date with it).
REORDERING = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
# Characters drawn as nothing, or as a line break where none is: "team-a/reviews\u200b.tsv" reads as
# "team-a/reviews.tsv", which is another dataset. Those that scripts or emoji need are left as they are: the joiners
# (U+200C, U+200D) and the Mongolian vowel separator (U+180E).
INVISIBLE = frozenset({
    0x00AD,  # soft hyphen
    0x034F,  # combining grapheme joiner
    0x115F, 0x1160, 0x3164, 0xFFA0,  # Hangul fillers
    0x200B,  # zero width space
    0x2028, 0x2029,  # line and paragraph separators
    *range(0x2060, 0x2065), *range(0x206A, 0x2070),  # word joiner, invisible operators, deprecated format characters
    0xFEFF,  # zero width no-break space (a byte order mark)
    *range(0xFFF9, 0xFFFC),  # interlinear annotation characters
})
_ESCAPED_CHARS = re.compile("[" + "".join(map(chr, sorted(REORDERING | INVISIBLE))) + "]")


def shown_controls(text: str) -> str:
    """``text`` with each bidirectional control, and each character drawn as nothing (``INVISIBLE``), written as its
    escape (``\\u202e``, ``\\u200b``), as the console shows it."""
    return _ESCAPED_CHARS.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


# Every other control character but the line break: the page's own markup and style hold line breaks (a value's is
# white space in HTML), and nothing else of the kind, so each such character came from a value (an ESC, a tab).
_CONTROL_CHARS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_EVERY_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f-\x9f]")  # the line break too: names (one_line)


def _hex(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def escaped_controls(text: str) -> str:
    """``shown_controls``, and each other control character but the line break as ``\\x1b``: the pages, and the
    console (console/text.safe), so that an ESC drawn as a missing glyph, or a tab drawn as a space, never hides which
    name it is."""
    return _CONTROL_CHARS.sub(_hex, shown_controls(text))


def one_line(value: object) -> str:
    """A name (a dataset, an S3 key) on one line: each control character it holds, a line break too, as its escape
    (``\\x0a``), so that "team-x/two\\x0alines.tsv" is not read as two lines, nor as "team-x/two lines.tsv". The other
    characters that need it are escaped where the name is shown (``escaped_controls``)."""
    return _EVERY_CONTROL_CHAR.sub(_hex, str(value))


def versioned(uri: object, version: object) -> str:
    """An object's URI, its key on one line (``one_line``), with its version when it has one."""
    return one_line(uri) + (f" (version {version})" if version else "")


def shell_word(value: str) -> str:
    """``value`` as one word a shell reads back as it is, for a command people paste: ``shlex.quote``'s form, or, for a
    value holding a control character (a bidirectional control, an ESC, a line break) or an invisible one (U+200B),
    bash's ``$'...'`` form with each written as the escapes of its UTF-8 bytes (``\\xe2\\x80\\xae``). Inside plain
    quotes the escapes the page and the console show would be read as typed, and the command would name another
    dataset."""
    if not _EVERY_CONTROL_CHAR.search(value) and not _ESCAPED_CHARS.search(value):
        return shlex.quote(value)
    out = []
    for char in value:
        if char in "\\'":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif _EVERY_CONTROL_CHAR.match(char) or _ESCAPED_CHARS.match(char):
            # its UTF-8 bytes: bash reads \u202e as the character only in a UTF-8 locale, \xe2\x80\xae in any
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
        else:
            out.append(char)
    return "$'" + "".join(out) + "'"


def document(title: str, body: str) -> str:
    """The whole page: ``body`` (HTML) in a document titled ``title`` (text), with the style and the policy. The
    page's own words have no control character but line breaks, so every other one in it came from a value and is
    shown as an escape (``escaped_controls``)."""
    return escaped_controls(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )
