"""The dataset card's markdown as safe HTML: a small subset (front matter dropped; headings, lists,
tables, fenced code, inline code, paragraphs). Text is escaped before it becomes markup, and the card's
own backslash escapes (:func:`~treesynth_core.text.escape_markdown`) are undone, so a value
written ``\\<b\\>`` shows as ``<b>``, as text, never as a tag or a visible backslash."""

from __future__ import annotations

import re
from html import escape

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def inline(text: str) -> str:
    """One line of markdown as HTML: backslash escapes undone, `code` spans kept, all else escaped."""
    out: list[str] = []
    buffer: list[str] = []
    in_code = False

    def flush() -> None:
        if buffer:
            piece = escape("".join(buffer), quote=False)
            out.append(f"<code>{piece}</code>" if in_code else piece)
            buffer.clear()

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and not in_code and i + 1 < len(text) and text[i + 1] in _PUNCT:
            buffer.append(text[i + 1])
            i += 2
            continue
        if char == "`":
            if not in_code and "`" not in text[i + 1 :]:
                buffer.append(char)  # a lone backtick is text
            else:
                flush()
                in_code = not in_code
            i += 1
            continue
        buffer.append(char)
        i += 1
    flush()
    return "".join(out)


def split_row(line: str) -> list[str]:
    """The cells of a table row, split on the pipes that are not escaped."""
    cells, cell, i = [], [], 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cell.append(body[i : i + 2])
            i += 2
            continue
        if body[i] == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(body[i])
        i += 1
    if "".join(cell).strip():
        cells.append("".join(cell).strip())
    return cells


def _front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() == "---":
                return lines[end + 1 :]
    return lines


def _table(rows: list[str]) -> str:
    header, body = split_row(rows[0]), [split_row(r) for r in rows[2:]]
    head = "".join(f"<th>{inline(c)}</th>" for c in header)
    cells = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def to_html(markdown: str) -> str:
    """The markdown subset as HTML (see the module docstring)."""
    lines = _front_matter(markdown.splitlines())
    html: list[str] = []
    paragraph: list[str] = []
    i = 0

    def end_paragraph() -> None:
        if paragraph:
            html.append("<p>" + " ".join(inline(p) for p in paragraph) + "</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            end_paragraph()
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            html.append("<pre><code>" + escape("\n".join(block), quote=False) + "</code></pre>")
            i += 1
            continue
        heading = _HEADING.match(stripped)
        if heading:
            end_paragraph()
            level = len(heading.group(1))
            html.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif stripped.startswith("|") and i + 1 < len(lines) and _RULE.match(lines[i + 1].strip()):
            end_paragraph()
            rows = [line, lines[i + 1]]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            html.append(_table(rows))
            continue
        elif stripped.startswith(("- ", "* ")):
            end_paragraph()
            items = []
            while i < len(lines) and lines[i].strip().startswith(("- ", "* ")):
                items.append(f"<li>{inline(lines[i].strip()[2:])}</li>")
                i += 1
            html.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not stripped:
            end_paragraph()
        else:
            paragraph.append(stripped)
        i += 1
    end_paragraph()
    return "\n".join(html)
