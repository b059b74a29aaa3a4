"""Static SVG charts for the report and the Retrain tab: a forest plot (estimates with their
intervals, a reference line) and a learning curve with bands. Plain SVG text: no script, no
font or file from anywhere else, a few kilobytes each, so a report stays one small file that
opens offline (plotly's script alone would be 3.5 MB)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

WIDTH = 1100
LABEL_W, VALUE_W = 250, 340  # the label column and the value column; the plot in between
ROW_H, HEAD_H, AXIS_H = 20, 22, 34
GOOD, BAD, NEUTRAL = "#1a7f37", "#c62828", "#555"
FONT = "font-family:sans-serif;font-size:12px"


@dataclass(frozen=True)
class Row:
    """One line of a forest plot: an estimate with its interval (NaN where there is none)."""

    label: str
    estimate: float
    low: float
    high: float
    note: str = ""  # after the interval ("p 0.03")
    group: str = ""  # a heading printed above the first row of each group


def _text(x: float, y: float, text: str, anchor: str = "start", weight: str = "normal",
          fill: str = "#222") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-weight='{weight}' "
            f"fill='{fill}'>{html.escape(text)}</text>")


def signed(value: float, digits: int = 3) -> str:
    """``+0.023``, ``−0.017`` (a true minus sign), ``0.000`` for zero, ``+4.2e−05`` where three
    decimals would print a false zero, ``n/a`` for NaN."""
    if not math.isfinite(value):
        return "n/a"
    if value == 0:
        return f"{0:.{digits}f}"
    text = f"{value:+.{digits}f}"
    if float(text) == 0:  # a tiny difference: two significant figures, not a false zero
        text = f"{value:+.1e}"
    return text.replace("-", "−")


def magnitude(value: float, digits: int = 3) -> str:
    """A size without its sign (``0.210``; ``4.2e−05`` where three decimals would print 0)."""
    return signed(abs(value), digits).lstrip("+")


def _domain(rows: list[Row], reference: float | None, bounds: tuple[float, float] | None
            ) -> tuple[float, float]:
    if bounds is not None:
        return bounds
    values = [v for r in rows for v in (r.low, r.high, r.estimate) if math.isfinite(v)]
    values += [reference] if reference is not None else []
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    pad = 0.06 * (high - low)
    return low - pad, high + pad


def _ticks(low: float, high: float) -> list[float]:
    span = high - low
    step = 10 ** math.floor(math.log10(span / 4))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [round(first + k * step, 10) for k in range(int((high - first) / step) + 1)]


def forest(rows: list[Row], title: str, reference: float | None = 0.0,
           bounds: tuple[float, float] | None = None, signed_values: bool = True,
           element_id: str = "forest") -> str:
    """A forest plot: one line per row (its label, a dot on its interval, the interval's
    figures), grouped under headings, a dashed line at ``reference`` (0 for differences);
    a row is green when its whole interval lies above the reference, red when below."""
    domain = _domain(rows, reference, bounds)
    plot_w = WIDTH - LABEL_W - VALUE_W

    def x(v: float) -> float:
        return LABEL_W + (v - domain[0]) / (domain[1] - domain[0]) * plot_w

    body, y = [], HEAD_H + 6
    group = None
    for row in rows:
        if row.group and row.group != group:
            group = row.group
            y += 6
            body.append(_text(4, y + 13, row.group, weight="bold"))
            y += HEAD_H - 4
        mid = y + ROW_H / 2
        body.append(_text(16 if row.group else 4, mid + 4, row.label))
        finite = math.isfinite(row.low) and math.isfinite(row.high)
        colour = NEUTRAL
        if reference is not None and finite:
            colour = GOOD if row.low > reference else BAD if row.high < reference else NEUTRAL
        if finite:
            body.append(f"<line x1='{x(row.low):.1f}' x2='{x(row.high):.1f}' y1='{mid:.1f}' "
                        f"y2='{mid:.1f}' stroke='{colour}' stroke-width='2'/>")
        if math.isfinite(row.estimate):
            body.append(f"<circle cx='{x(row.estimate):.1f}' cy='{mid:.1f}' r='4' "
                        f"fill='{colour}'/>")
        show = signed if signed_values else (lambda v: "n/a" if not math.isfinite(v)
                                             else f"{v:.3f}")
        figures = f"{show(row.estimate)} [{show(row.low)}, {show(row.high)}]"
        body.append(_text(WIDTH - VALUE_W + 8, mid + 4, figures + (f" {row.note}"
                                                                   if row.note else "")))
        y += ROW_H
    top, bottom = HEAD_H + 4, y + 4
    axis = [f"<line x1='{LABEL_W}' x2='{LABEL_W + plot_w}' y1='{bottom}' y2='{bottom}' "
            "stroke='#888'/>"]
    for tick in _ticks(*domain):
        axis += [f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{bottom}' y2='{bottom + 4}' "
                 "stroke='#888'/>", _text(x(tick), bottom + 16, f"{tick:g}", "middle")]
    if reference is not None and domain[0] <= reference <= domain[1]:
        axis.append(f"<line x1='{x(reference):.1f}' x2='{x(reference):.1f}' y1='{top}' "
                    f"y2='{bottom}' stroke='#333' stroke-dasharray='4 3'/>")
    height = bottom + AXIS_H
    return (f"<svg id='{html.escape(element_id)}' "
            f"viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' height='{height}' "
            f"style='max-width:100%;height:auto;{FONT}' role='img' "
            f"aria-label='{html.escape(title)}'><title>{html.escape(title)}</title>"
            + _text(4, 16, title, weight="bold") + "".join(axis + body) + "</svg>")


@dataclass(frozen=True)
class Series:
    """One line of a learning curve: its points ``(x, estimate, low, high)``."""

    name: str
    points: list[tuple[float, float, float, float]]
    colour: str


def curve(series: list[Series], title: str, x_label: str, y_label: str,
          element_id: str = "curve") -> str:
    """A line per series through its estimates, with its intervals as a band; x as a share
    (0-1, printed as %)."""
    width, height, left, right, top, bottom = 760, 320, 60, 150, 46, 44
    ys = [v for s in series for p in s.points for v in p[1:] if math.isfinite(v)]
    low, high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    low, high = low - 0.05 * (high - low), high + 0.05 * (high - low)
    xs = [p[0] for s in series for p in s.points] or [0.0, 1.0]
    pad = 0.06 * ((max(xs) - min(xs)) or 1.0)
    x0, x1 = min(xs) - pad, max(xs) + pad

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0 or 1) * (width - left - right)

    def py(v: float) -> float:
        return top + (high - v) / (high - low) * (height - top - bottom)

    body = [_text(4, 16, title, weight="bold"),
            f"<line x1='{left}' x2='{width - right}' y1='{height - bottom}' "
            f"y2='{height - bottom}' stroke='#888'/>",
            f"<line x1='{left}' x2='{left}' y1='{top}' y2='{height - bottom}' stroke='#888'/>",
            _text((left + width - right) / 2, height - 6, x_label, "middle"),
            _text(4, top - 10, y_label)]
    for tick in _ticks(low, high):
        body.append(_text(left - 6, py(tick) + 4, f"{tick:g}", "end"))
    for v in sorted({p[0] for s in series for p in s.points}):
        body.append(_text(px(v), height - bottom + 16, f"{v:.0%}", "middle"))
    for k, s in enumerate(series):
        points = sorted(s.points)
        band = [(px(p[0]), py(p[3])) for p in points if math.isfinite(p[3])]
        band += [(px(p[0]), py(p[2])) for p in reversed(points) if math.isfinite(p[2])]
        if band:
            body.append("<polygon points='" + " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
                        + f"' fill='{s.colour}' fill-opacity='0.15' stroke='none'/>")
        line = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in points)
        body.append(f"<polyline points='{line}' fill='none' stroke='{s.colour}' "
                    "stroke-width='2'/>")
        body += [f"<circle cx='{px(p[0]):.1f}' cy='{py(p[1]):.1f}' r='3' fill='{s.colour}'/>"
                 for p in points]
        body.append(_text(width - right + 10, top + 16 + 18 * k, s.name, fill=s.colour))
    return (f"<svg id='{html.escape(element_id)}' "
            f"viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
            f"style='max-width:100%;height:auto;{FONT}' role='img' "
            f"aria-label='{html.escape(title)}'><title>{html.escape(title)}</title>"
            + "".join(body) + "</svg>")
