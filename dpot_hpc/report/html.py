"""index.html of the report: the summary tables and the figures (a pure function of its inputs).

Offline by construction: one file with its CSS inline, no script, no remote resource; every link is
relative (the figures next to it, the summary files one folder up), so a run folder copied from a
cluster shows the same page. Numbers are shown to ``DIGITS`` significant digits; every number cell
carries data-q (quantity), data-stat and, in the pipeline table, data-pipeline attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .._version import __version__
from ..ensemble.statistics import correction_words
from ..physics.scalars import SCALARS

#: Significant digits of the numbers in the tables.
DIGITS = 5


@dataclass(frozen=True)
class FigureEntry:
    """A figure of the page: its file (relative to index.html) or, when it could not be drawn, why."""

    name: str
    title: str
    file: str | None = None
    caption: str = ""
    missing: str | None = None


def fmt(value: float) -> str:
    """A table number: DIGITS significant digits."""
    return f"{value:.{DIGITS}g}"


def _num(value: float, **attrs: str) -> str:
    data = "".join(f' data-{k}="{escape(v)}"' for k, v in attrs.items())
    return f'<td class="num"{data}>{fmt(value)}</td>'


def best_table(summary: dict) -> str:
    """The reported value per quantity: value, +- the 68% and 95% half-widths, the t quantiles' degrees
    of freedom, the raw median and its member count (and truth, error for a mock)."""
    truth = summary.get("truth") or {}
    head = ("<th>quantity</th><th>unit</th><th>value</th><th>&plusmn; 68%</th><th>&plusmn; 95%</th><th>dof</th>"
            "<th>raw median</th><th>n</th>")
    head += "<th>truth</th><th>value &minus; truth</th>" if truth else ""
    rows = []
    for k, unit in SCALARS.items():
        b, f = summary["best"][k], summary["final"][k]
        cells = [f"<td>{k}</td><td>{escape(unit)}</td>", _num(f["value"], q=k, stat="value"),
                 _num(f["half_width_68"], q=k, stat="half_width_68"), _num(f["half_width_95"], q=k, stat="half_width_95"),
                 f'<td class="num" data-q="{k}" data-stat="dof">{f["dof"]}</td>', _num(b["median"], q=k, stat="median"),
                 f'<td class="num" data-q="{k}" data-stat="n">{b["n"]}</td>']
        if truth:
            cells += [_num(truth[k], q=k, stat="truth"), _num(f["value"] - truth[k], q=k, stat="error")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="best"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def systematic_table(summary: dict) -> str:
    """The systematic term (``summary['systematic']``) per quantity: the calibration runs' mean error, its
    standard error, the systematic, the rms error and how many of their bands covered; '' without one.
    Number cells carry data-stat 'systematic.<field>'."""
    term = summary.get("systematic")
    if not term:
        return ""
    n = len(term["runs"])
    fields = ("mean_error", "mean_error_sigma", "systematic", "rms_error")
    head = ("<th>quantity</th><th>unit</th><th>mean error</th><th>&plusmn; its standard error</th><th>systematic</th>"
            f"<th>rms error</th><th>68% bands covering (of {n})</th><th>95% bands covering (of {n})</th>")
    rows = []
    for k, unit in SCALARS.items():
        t = term[k]
        cells = [f"<td>{k}</td><td>{escape(unit)}</td>"]
        cells += [_num(t[f], q=k, stat=f"systematic.{f}") if t[f] is not None else "<td>-</td>" for f in fields]
        cells += [f'<td class="num" data-q="{k}" data-stat="systematic.{f}">{t[f]}</td>' for f in ("covered_68", "covered_95")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    runs = ", ".join(term["runs"])
    return (f"<h2>Systematic term</h2>\n<p>The same settings on {n} built-in mock(s) with known truth ({escape(runs)}"
            + (f"; {n} of {term['requested']} finished" if n < term["requested"] else "")
            + "): their errors against the truth (docs/method.md, 'The systematic term'). Not applied to the "
              "values above; add <i>systematic</i> in quadrature for a total error.</p>\n"
            + f'<table id="systematic"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>")


def pipeline_table(summary: dict) -> str:
    """Per pipeline: its member count and every quantity's median +- 16-84 half-width."""
    head = "<th>pipeline</th><th>n</th>" + "".join(f"<th>{k} [{escape(u)}]</th>" for k, u in SCALARS.items())
    rows = []
    for p, st in summary["pipelines"].items():
        cells = [f"<td>{escape(p)}</td><td class=\"num\">{st['a_x']['n']}</td>"]
        for k in SCALARS:
            med = fmt(st[k]["median"])
            hw = fmt(st[k]["half_width"])
            cells.append(f'<td class="num"><span data-pipeline="{escape(p)}" data-q="{k}" data-stat="median">{med}</span>'
                         f' &plusmn; <span data-pipeline="{escape(p)}" data-q="{k}" data-stat="half_width">{hw}</span></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="pipelines"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def figure_block(entry: FigureEntry) -> str:
    if entry.file is None:
        return (f'<section id="{entry.name}"><h2>{escape(entry.title)}</h2>'
                f'<p class="missing">Not drawn: {escape(entry.missing or "unknown reason")}</p></section>')
    return (f'<section id="{entry.name}"><h2>{escape(entry.title)}</h2>'
            f'<figure><a href="{escape(entry.file)}"><img src="{escape(entry.file)}" alt="{escape(entry.title)}"></a>'
            f"<figcaption>{escape(entry.caption)}</figcaption></figure></section>")


CSS = """body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
td,th{border:1px solid #ccc;padding:3px 7px}th{background:#f0f0f0}td.num{text-align:right;font-family:monospace}
img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:0.9em;max-width:1100px;margin-top:0.3em}
.missing{color:#a00}nav a{margin-right:1em}"""


def render_index(summary: dict, figures: list[FigureEntry], run_name: str, links: dict[str, str],
                 notes: list[str] = ()) -> str:
    """The page. links: label -> relative path of files to link (only ones that exist)."""
    kind = "a mock: its truth is known" if summary.get("truth") else "data"
    nav = " ".join(f'<a href="#{f.name}">{escape(f.title.split(" (")[0].split(":")[0])}</a>' for f in figures)
    files = " ".join(f'<a href="{escape(path)}">{escape(label)}</a>' for label, path in links.items())
    notes_html = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dpot-hpc report: {escape(run_name)}</title>
<style>{CSS}</style></head>
<body>
<h1>dpot-hpc report: {escape(run_name)}</h1>
<p>Run folder <code>{escape(run_name)}</code>, {kind}; dpot-hpc {__version__}. Files: {files}</p>
<nav>{nav}</nav>
<h2>Best estimate</h2>
<p>Median over the {escape(summary['best_from'])} members{escape(correction_words(summary["final"]["a_x"]["how"]))};
&plusmn;: the 68% and 95% bands, Student's t quantiles with dof degrees of freedom times the combined
standard deviation (docs/method.md). Accelerations: shell averages in heliocentric Galactic axes (x towards
the Galactic centre).</p>
{best_table(summary)}
{systematic_table(summary)}
<h2>Per pipeline</h2>
<p>Median &plusmn; half the 16-84 percentile range over each pipeline's members.</p>
{pipeline_table(summary)}
{"<ul>" + notes_html + "</ul>" if notes_html else ""}
{chr(10).join(figure_block(f) for f in figures)}
</body></html>
"""
