"""Small HTML builders: escaped text, tables and number formatting for the reports."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: fixed digits, thousands separators for big ints, '–' for missing/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:.3e}"
    return esc(value)


def pct(value: Any) -> str:
    return "–" if not isinstance(value, int | float) or math.isnan(value) else f"{value:.1%}"


def signed(value: Any, digits: int = 4) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "–"
    return f"{value:+.{digits}f}"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None, text_cols: Sequence[int] = ()
) -> str:
    """A table whose cells are already HTML (escape text with `esc`, numbers with `num`).

    Numbers align right; the first column and `text_cols` (indices) align left.
    """

    def cls(i: int) -> str:
        return ' class="t"' if i in text_cols else ' class="n"' if i else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<div class="wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def image(data_uri: str | None, alt: str) -> str:
    return f'<img src="{data_uri}" alt="{esc(alt)}">' if data_uri else ""


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;
  background:#f6f7f9;margin:0;line-height:1.45}
main{max-width:980px;margin:0 auto;padding:24px 28px 60px;background:#fff;box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.7rem;margin:.2em 0 .1em}h2{font-size:1.25rem;border-bottom:2px solid #e3e6ea;padding-bottom:4px;
  margin-top:2.2em}h3{font-size:1.05rem;margin:1.4em 0 .4em}h4{font-size:.95rem;margin:1em 0 .2em;color:#333}
.sub{color:#5f6368;margin:0 0 1em}nav{font-size:.92rem;margin:.6em 0 1.2em}nav a{margin-right:14px;color:#1f5fa8}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9rem;min-width:50%}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 10px;text-align:right;vertical-align:top}
th:first-child,td:first-child,th.t,td.t{text-align:left}
code.tok{background:#eef1f5;border-radius:3px;padding:0 4px;white-space:nowrap;display:inline-block;margin:1px 2px}
td.n{white-space:nowrap}.wrap{overflow-x:auto}
th{background:#f0f2f5;font-weight:600}
caption{text-align:left;color:#5f6368;font-size:.85rem;padding-bottom:4px}
img{max-width:100%;height:auto;display:block;margin:.4em 0 1em}
pre{background:#f4f5f7;padding:12px;overflow-x:auto;font-size:.82rem;border-radius:4px}
.note{color:#5f6368;font-size:.88rem}.flag{background:#fff4e5;border-left:4px solid #ff9800;padding:8px 12px}
.ok{background:#ecf8ee;border-left:4px solid #2e7d32;padding:8px 12px}.bad{color:#b3261e;font-weight:600}
.good{color:#2e7d32;font-weight:600}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{border:1px solid #e3e6ea;border-radius:6px;padding:8px 14px;min-width:150px}
.card b{display:block;font-size:1.2rem}.card span{color:#5f6368;font-size:.82rem}
"""


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f'<body><main><h1>{esc(title)}</h1><p class="sub">{subtitle}</p><nav>{links}</nav>{body}</main></body></html>'
    )
