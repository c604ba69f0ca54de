"""What every report page is made of: sections, tables and the page around them, and the look of a figure.

One rule for every section (:meth:`Page.add`): its figure and table if it has data, else a short note saying why not.
Text from the data is HTML-escaped wherever it lands. Plotly renders a subset of HTML inside labels, legends, tick
labels and hover text, so every string from the data goes through :func:`esc` before it lands in a figure. Figure JSON
embedded in a ``<script>`` has ``<``, ``>`` and ``&`` written as ``\\u003c``-style escapes, so no value can close the
script tag.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

from reports.rundata import RunData
from runstore.atomic import write_text
from runstore.ranking import plain

__all__ = ["HEIGHT", "PALETTE", "PLOTLY_JS", "Page", "Section", "esc", "escs", "layout", "render_page", "table"]

#: plotly.js is written once next to the pages under this name and loaded from there: no network needed.
PLOTLY_JS = "plotly.min.js"


@dataclass
class Section:
    """A heading, a note, then a figure and/or ready-made (already escaped) HTML, or a message saying why neither."""

    title: str
    note: str = ""
    figure: go.Figure | None = None
    html: str = ""
    empty: str = ""


@dataclass
class Page:
    """One report page: its file, nav title, the question it answers, and its sections in order."""

    filename: str
    title: str
    question: str
    fed: str = ""  # the small-print note: which trials this page shows
    nothing: str = ""  # what a section without data says, unless it says something else
    sections: list[Section] = field(default_factory=list)

    def add(
        self,
        title: str,
        note: str = "",
        *,
        has_data: bool = True,
        figure: Callable[[], go.Figure] | None = None,
        table: Callable[[], str] | None = None,
        empty: str | None = None,
    ) -> None:
        """Add a section: its figure and table (drawn only now) if it has data, else a short note saying why not.

        The empty note is ``empty`` if given, else the page's :attr:`nothing`.
        """
        if has_data:
            self.sections.append(
                Section(title, note, figure=figure() if figure else None, html=table() if table else "")
            )
        else:
            self.sections.append(Section(title, note, empty=self.nothing if empty is None else empty))


# -- HTML ----------------------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    """A table cell's text: floats to 4 significant places (small ones in scientific notation), None as blank."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _breakable(text: str) -> str:
    """Escaped text with line-break opportunities after ``_``, ``@`` and ``+`` (long names and recipes wrap)."""
    escaped = _e(text)
    for ch in "_@+":
        escaped = escaped.replace(ch, ch + "<wbr>")
    return escaped


def table(
    columns: Sequence[str], rows: Sequence[dict[str, Any]], row_class: Callable[[dict], str] | None = None
) -> str:
    """An HTML table; every heading and cell escaped."""
    head = "".join(f"<th>{_breakable(col)}</th>" for col in columns)
    body = []
    for row in rows:
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f"<td{' class=num' if isinstance(v, (int, float)) else ''}>{_breakable(_cell(v))}</td>"
            for v in (row.get(col) for col in columns)
        )
        body.append(f'<tr class="{_e(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def write_plotly_js(folder: Path) -> None:
    """``plotly.min.js`` beside the pages (atomically; skipped when the same file is already there): offline pages."""
    js = folder / PLOTLY_JS
    text = get_plotlyjs()
    if not js.is_file() or js.stat().st_size != len(text.encode()):
        write_text(js, text)


def script_json(fig: go.Figure) -> str:
    """The figure as JSON that is safe inside ``<script>``: no ``<``, ``>``, ``&`` or JS line separators left raw."""
    text = pio.to_json(fig, validate=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
  background: #fafafa; }
nav { background: #1f2d3d; padding: 0 24px; display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
nav a { color: #d8e2ec; text-decoration: none; padding: 12px 14px; display: inline-block; font-size: 15px; }
nav a.current { color: #fff; background: #3a4f66; font-weight: 600; }
nav .run { color: #9fb3c8; margin-left: auto; font-size: 13px; padding: 12px 0; }
main { max-width: 1320px; margin: 0 auto; padding: 8px 24px 24px; }
h1 { font-size: 26px; margin: 18px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 6px; }
.question { font-size: 16px; color: #444; margin: 4px 0 10px; }
.runline { font-size: 13px; color: #666; margin: 0; }
.banner { background: #fff4d6; border: 1px solid #e8c766; padding: 8px 12px; border-radius: 4px; margin: 10px 0; }
.note { color: #444; font-size: 14px; margin: 4px 0 8px; max-width: 1100px; }
.empty { color: #8a5a00; font-style: italic; }
.plot { background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; margin: 6px 0 10px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; background: #fff; margin: 6px 0 10px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
td.num { white-space: nowrap; }
th { background: #eef2f6; }
tr.recipe td { background: #f1f7ec; }
tr.recipe td:nth-child(3) { font-weight: 600; }
footer { max-width: 1320px; margin: 0 auto; padding: 10px 24px 30px; font-size: 12px; color: #777; }
""".strip()


def render_page(page: Page, pages: Sequence[Page], run: RunData) -> str:
    """One page as a complete HTML document that loads plotly.js from the file beside it."""
    nav = "".join(
        f'<a href="{_e(p.filename)}"{" class=current" if p.filename == page.filename else ""}>{_e(p.title)}</a>'
        for p in pages
    )
    status = "finished" if run.finished else "not finished"
    study = run.info.get("study") if run.info.get("kind") == "study" else None
    what = (
        f"study {_e(study.get('name', '?'))}" if isinstance(study, dict) else f"space {_e(run.info.get('space', '?'))}"
    )
    runline = (
        f"Run <b>{_e(run.name)}</b> · {what} · metric {_e(run.metric)} "
        f"({_e(run.mode)}imised) · {status} · {_e(run.run_dir)}"
    )
    banner = ""
    if not run.finished:
        banner = (
            '<p class="banner">This run has not finished (<code>finished: false</code> in run.json): '
            f"the pages show it as far as it got; {run.counts.running} trial(s) still running.</p>"
        )
    if run.counts.total == 0:
        banner += '<p class="banner">No trial has started yet: there is nothing to plot.</p>'
    elif run.counts.scored == 0:
        banner += f'<p class="banner">No trial has reported {_e(run.metric)} yet: there is nothing to plot.</p>'
    parts = []
    for i, s in enumerate(page.sections):
        parts.append(f"<section><h2>{_e(s.title)}</h2>")
        if s.note:
            parts.append(f'<p class="note">{_e(s.note)}</p>')
        if s.figure is not None:
            div = f"fig-{i}"
            parts.append(f'<div id="{div}" class="plot"></div>')
            parts.append(
                f'<script>(function(){{var f={script_json(s.figure)};Plotly.newPlot("{div}",f.data,f.layout,'
                "{responsive:true,displaylogo:false});})();</script>"
            )
        if s.html:
            parts.append(s.html)
        if s.empty:
            parts.append(f'<p class="note empty">{_e(s.empty)}</p>')
        parts.append("</section>")
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(page.title)} · {_e(run.name)} · cxr-search report</title>
<style>
{_CSS}
</style>
<script src="{PLOTLY_JS}" charset="utf-8"></script>
</head>
<body>
<nav>{nav}<span class="run">{_e(run.name)}</span></nav>
<main>
<h1>{_e(page.title)}</h1>
<p class="question">{_e(page.question)}</p>
<p class="runline">{runline}</p>
{banner}
{body}
</main>
<footer>Trials in this run: {_e(run.counts.describe())}. {_e(page.fed)}</footer>
</body>
</html>
"""


# -- figures -------------------------------------------------------------------------------------------------------

#: Trace colours, in order.
PALETTE = qualitative.Plotly + qualitative.D3
#: A figure's default height in pixels.
HEIGHT = 440


def esc(value: object) -> str:
    """Text from the data, made safe for Plotly labels: ``<``, ``>`` and ``&`` become entities Plotly shows as text."""
    return html.escape(str(value), quote=False)


def escs(values: Sequence[object]) -> list[str]:
    """:func:`esc` of each value."""
    return [esc(v) for v in values]


def layout(fig: go.Figure, title: str, height: int = HEIGHT, **kwargs: object) -> go.Figure:
    """The look every figure shares: a title at the left, the white template, ``height`` and the margins."""
    margin = {"l": 60, "r": 30, "t": 60, "b": 50} | dict(kwargs.pop("margin", {}))  # type: ignore[arg-type]
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white", height=height, margin=margin, **kwargs)
    return fig
