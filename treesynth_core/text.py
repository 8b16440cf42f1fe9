"""Text for markdown: :func:`escape_markdown`, the one escaper for the dataset card and the app.

It escapes what a markdown renderer (Streamlit's, the Hugging Face hub's CommonMark with GFM) would
read as markup, and no more, so a value shows as itself where it is rendered and stays readable
where it is not: ``e.g. 3-4 items: a, b.`` is left as it is, while ``1. x`` (a list), ``- x``,
``www.evil.example`` and ``x@evil.example`` (autolinks), ``:red[x]`` and ``:material/star:``
(Streamlit's directives) are escaped.
"""

from __future__ import annotations

import re

#: Characters that start markup anywhere in a line: links, images, raw HTML and autolinks, entities,
#: emphasis, code, tables, strikethrough, math, and backslash escapes themselves.
_ALWAYS = r"\\`*_{}\[\]()#+!|<>~$&@"
#: Besides: ``:`` followed by text (``http://``, ``:red[``, ``:smile:``), the ``.`` of ``www.`` (an
#: autolink), and a ``.`` or ``-`` that makes the line an ordered or bulleted list or a rule.
_SPECIAL = re.compile(rf"([{_ALWAYS}]|:(?=\S)|(?<=[Ww]{{3}})\.)|^(\d+\.(?=\s|$)|-(?=[\s-]|$))")


def escape_markdown(text: str) -> str:
    """``text`` (a task, value, sample, path, LLM reply or server error) as markdown that shows it literally,
    on one line: ``![x](http://evil/p.png)``, ``[click](javascript:...)`` and ``<img src=...>`` stay text,
    never an image fetched, a link or HTML. The one escaper for the dataset card and the app's markdown."""
    flat = " ".join(str(text).split())
    return _SPECIAL.sub(_escape, flat)


def _escape(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return "\\" + match.group(1)
    lead = match.group(2)
    return lead[:-1] + "\\" + lead[-1]
