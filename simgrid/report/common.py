"""Shared pieces of the reports: output names, styles, number formats, Markdown tables."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

REPORT_MD = "report.md"


STRESS_FILE = "stress.nc"
EVALUATION_FILE = "evaluation.nc"  # what `simgrid evaluate` writes in its folder


WORST_EPISODE_FILE = "worst_episode.nc"


UNIT_STYLE = {  # FCM type: (marker, colour)
    "bess": ("s", "tab:blue"),
    "ldes": ("D", "tab:purple"),
    "fast_gen": ("^", "tab:red"),
    "dr": ("v", "tab:green"),
}


EVENT_COLOURS = {
    "ramp_up": "tab:orange",
    "surge": "tab:red",
    "trip": "tab:purple",
    "oscillation": "tab:olive",
    "line_outage": "tab:gray",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path) -> Path:
    fig.savefig(png, dpi=110)
    _pyplot().close(fig)
    return png


def fmt(x: object) -> str:
    """A number as the tables print it: 4 significant digits, thousands grouped, NaN, inf."""
    if isinstance(x, str):
        return x
    x = float(x)  # numpy scalars, ints, bools
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == round(x) and abs(x) < 1e15:
        return f"{int(round(x)):,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


# Markdown punctuation that could start markup inside a line (emphasis, strike-through,
# links and images, code, table cells) when it comes from a file's text rather than from
# simgrid's own words; an underscore inside a word never starts emphasis (CommonMark), so
# metric names stay as they are. HTML is turned into entities separately.
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_text(x: object) -> str:
    """Text read from a result file (attributes, names, messages) as Markdown shows it: on
    one line, HTML's <, > and & as entities and Markdown's punctuation escaped, so that a file
    can put no markup, link or script into a report."""
    text = " ".join(str(x).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(x: object) -> str:
    """Text read from a file shown as inline code (a path, say): code spans show their content
    literally, so only backticks and line breaks need to go."""
    return "`" + " ".join(str(x).replace("`", "'").split()) + "`"


class Formatted(str):
    """Text simgrid formatted itself (an interval of numbers): shown as it is."""


def _cell(x: object) -> str:
    if isinstance(x, Formatted):
        return str(x)
    return md_text(x) if isinstance(x, str) else fmt(x)


def _numeric(x: object) -> bool:
    return isinstance(x, int | float | np.number | Formatted)


def md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A GitHub Markdown table (then a blank line): columns of numbers right-aligned."""
    align = [
        "---:" if rows and all(_numeric(r[i]) or r[i] == "" for r in rows) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _units(var: xr.DataArray) -> str:
    return str(var.attrs.get("units", ""))


def _interval(lo: float, hi: float) -> Formatted:
    return Formatted(f"[{fmt(lo)}, {fmt(hi)}]")
