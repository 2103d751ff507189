"""Markdown and plotly figures to one self-contained HTML page (the reproduction's report.html).

    markdown_to_html("# Title\n\n| a | b |\n| --- | ---: |\n| 1 | 2 |")
    write_html("results/report.html", "DropIT", [("Tables", markdown_text, [fig, ...])])

Only the Markdown subset the lab's tables use (headings, pipe tables,
paragraphs, `code`, *em*, **strong**); plotly.js is inlined once, so the page
opens offline.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Sequence

from dropit.lab.io import write_text


def markdown_to_html(text: str) -> str:
    """HTML for the small Markdown subset the tables use: headings, pipe tables, paragraphs, `code`, *em*."""
    out, para, lines, i = [], [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            out += _paragraph(para) + [_table(block)]
            continue
        if not line.strip() or line.startswith("#"):
            out += _paragraph(para)
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            para.append(line.strip())
        i += 1
    out += _paragraph(para)
    return "\n".join(out)


def _inline(s: str) -> str:
    s = html.escape(s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", s)


def _paragraph(para: list[str]) -> list[str]:
    """The pending paragraph's lines as one <p> (emptying ``para``), or nothing."""
    if not para:
        return []
    text = " ".join(para)
    para.clear()
    return ["<p>" + _inline(text) + "</p>"]


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def _table(block: list[str]) -> str:
    """A pipe table: header row, alignment row (``---:`` right-aligns), body rows."""
    head, rows = _cells(block[0]), [_cells(b) for b in block[2:]]
    aligns = ["right" if c.endswith(":") else "left" for c in _cells(block[1])] if len(block) > 1 else []
    t = ["<table><thead><tr>"] + [f"<th>{_inline(h)}</th>" for h in head] + ["</tr></thead><tbody>"]
    for r in rows:
        t.append("<tr>" + "".join(
            f'<td style="text-align:{aligns[j] if j < len(aligns) else "left"}">{_inline(c)}</td>' for j, c in enumerate(r)
        ) + "</tr>")
    t.append("</tbody></table>")
    return "".join(t)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; }
.figure { margin: 1.5em 0; }
.meta { color: #666; font-size: 13px; }
"""


def write_html(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, str, Sequence]]) -> Path:
    """A self-contained HTML page: ``sections`` = (heading, markdown, figures); plotly.js inlined once."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    body = []
    for heading, text, figs in sections:
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            body.append(markdown_to_html(text))
        for fig in figs:
            body.append('<div class="figure">' + pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False) + "</div>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return write_text(path, page)
