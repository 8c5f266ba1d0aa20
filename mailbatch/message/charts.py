"""Charts: ``chart(rows, x=..., y=...)`` in a template draws a PNG and places it inline.

Drawn with matplotlib (the optional ``mailbatch[charts]`` extra) on its Agg canvas, without
pyplot's global state, so jobs on the scheduler's threads cannot disturb each other. A chart
is drawn once per distinct input: its file in the run's scratch folder is named by the digest
of what it shows, so 2,000 recipients in 4 regions draw 4 charts, and a render worker finds
the charts the main process drew (and the other way round) instead of drawing them again.
The input is checked while the message renders; the drawing is drawer.py's, on the other
core.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from mailbatch.errors import JobError
from mailbatch.message.generated import Scratch

__all__ = ["KINDS", "available", "chart_data", "draw", "make_chart"]

KINDS = ("bar", "line", "hbar")
INSTALL = "pip install 'mailbatch[charts]'"
_COLOURS = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#64748b"]


DRAWING = 2  # the version of draw(): change it when a chart would come out differently


@functools.cache
def _matplotlib() -> str:
    import importlib.metadata  # only for a job with charts: it takes a while to import

    try:
        return importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:
        return ""


def available() -> bool:
    """Whether matplotlib can be imported (without importing it: that takes half a second)."""
    return importlib.util.find_spec("matplotlib") is not None


Request = Callable[[str, dict[str, Any]], "Path | None"]
Place = Callable[[Path, str, str, int], str]  # (png, file name, type, size) -> "cid:..."


def make_chart(scratch: Scratch, request: Request, place: Place, template: str | None
               ) -> Callable[..., str]:
    """The ``chart`` helper for one renderer. ``request(name, spec)`` has the chart drawn
    into ``scratch`` (returning its PNG if it is there already, else None: it will be);
    ``place`` puts it in the message being rendered; ``template`` names the body template
    in the error when matplotlib is missing."""

    drawn: OrderedDict[str, tuple[Path, int]] = OrderedDict()  # recent calls: no digest again

    def chart(rows: Any, x: str | None = None, y: Any = None, kind: str = "bar",
              title: str | None = None, width: int = 600, height: int = 300,
              scale: float = 2, xlabel: str | None = None, ylabel: str | None = None) -> str:
        call = repr((rows, x, y, kind, title, width, height, scale, xlabel, ylabel))
        known = drawn.get(call)
        if known is not None:
            drawn.move_to_end(call)
            return place(known[0], "chart.png", "image/png", known[1])
        if not available():
            raise JobError(f"chart() needs matplotlib, which is not installed; install it with "
                           f"{INSTALL}, or show an image with inline_image() instead",
                           path=template)
        labels, series = chart_data(rows, x, y)
        if kind not in KINDS:
            raise jinja2.TemplateRuntimeError(f"chart kind {kind!r} is not one of "
                                              f"{', '.join(KINDS)}")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or not 50 <= value <= 2000:
                raise jinja2.TemplateRuntimeError(f"chart {name} must be a whole number of "
                                                  f"pixels from 50 to 2000, not {value!r}")
        if not isinstance(scale, int | float) or not 1 <= scale <= 4:
            raise jinja2.TemplateRuntimeError(f"chart scale must be from 1 to 4, not {scale!r}")
        spec = {"kind": kind, "title": title, "width": width, "height": height,
                "scale": scale, "xlabel": xlabel, "ylabel": ylabel, "labels": labels,
                "series": series}
        # named by what it shows and by what draws it (cached charts outlive an upgrade)
        key = hashlib.sha256(json.dumps([DRAWING, _matplotlib(), spec], sort_keys=True,
                                        default=str).encode())
        name = f"chart-{key.hexdigest()[:32]}"
        path = request(name, spec)
        if path is None:  # being drawn: its size is known once it is (-1 until then)
            return place(scratch.path / f"{name}.png", "chart.png", "image/png", -1)
        size = path.stat().st_size
        drawn[call] = (path, size)
        if len(drawn) > 256:
            drawn.popitem(last=False)
        return place(path, "chart.png", "image/png", size)

    return chart


def chart_data(rows: Any, x: str | None, y: Any) -> tuple[list[str], dict[str, list[float]]]:
    """(x labels, {series name: values}) from rows of mappings, or from one mapping of
    label to value. Values must be numbers (or text that reads as one)."""
    if isinstance(rows, Mapping) and x is None:
        return [str(k) for k in rows], {str(y or ""): [_number(v, k, "value")
                                                       for k, v in rows.items()]}
    if x is None or y is None:
        raise jinja2.TemplateRuntimeError("chart() needs x= and y=, the fields for the labels "
                                          "and the values, e.g. chart(rows, x='week', "
                                          "y='revenue')")
    names = [y] if isinstance(y, str) else list(y)
    if not names or not all(isinstance(n, str) for n in names):
        raise jinja2.TemplateRuntimeError("chart() y= must be a field name or a list of them")
    labels: list[str] = []
    series: dict[str, list[float]] = {n: [] for n in names}
    try:
        rows = list(rows)
    except TypeError:
        raise jinja2.TemplateRuntimeError("chart() needs a list of rows") from None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise jinja2.TemplateRuntimeError(f"chart() row {i} is not a mapping of fields")
        for field in (x, *names):
            if field not in row:
                raise jinja2.TemplateRuntimeError(f"chart() row {i} has no field {field!r}")
        labels.append(str(row[x]))
        for n in names:
            series[n].append(_number(row[n], i, n))
    if len(labels) > 500:
        raise jinja2.TemplateRuntimeError(f"chart() got {len(labels)} rows; 500 at most")
    return labels, series


def _number(value: Any, where: Any, field: str) -> float:
    try:
        number = float(value.replace(",", "") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise jinja2.TemplateRuntimeError(f"chart() {field} {value!r} (row {where}) is not a "
                                          "number") from None
    if not math.isfinite(number):
        raise jinja2.TemplateRuntimeError(f"chart() {field} {value!r} (row {where}) is not a "
                                          "finite number")
    return number


def _text(value: Any) -> str:
    """Text for matplotlib, shown as written: '$' would start mathtext."""
    return str(value).replace("$", r"\$")


def draw(spec: dict[str, Any]) -> bytes:
    """The chart as PNG bytes (matplotlib imported here, on the first chart of a run)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter
    from PIL import Image  # a dependency of matplotlib

    scale = float(spec["scale"])
    fig = Figure(figsize=(spec["width"] / 100, spec["height"] / 100), dpi=100 * scale,
                 layout="constrained")
    ax = fig.subplots()
    labels = [_text(label) for label in spec["labels"]]
    series = spec["series"]
    kind = spec["kind"]
    count = max(len(series), 1)
    positions = range(len(labels))
    for i, (name, values) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        if kind == "line":
            ax.plot(labels, values, marker="o", linewidth=2, markersize=4, color=colour,
                    label=_text(name))
        else:
            width = 0.8 / count
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            bars = ax.barh if kind == "hbar" else ax.bar
            bars(offsets, values, width * 0.9, color=colour, label=_text(name))
    if kind != "line":
        (ax.set_yticks if kind == "hbar" else ax.set_xticks)(list(positions), labels)
    values_axis = ax.xaxis if kind == "hbar" else ax.yaxis
    values_axis.set_major_formatter(FuncFormatter(_thousands))
    ax.grid(axis="x" if kind == "hbar" else "y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors="#374151", labelsize=9)
    if kind == "hbar":
        ax.invert_yaxis()  # first row on top, as in the table
    elif len(labels) > 6 or max((len(label) for label in labels), default=0) > 10:
        for tick in ax.get_xticklabels():
            tick.set_rotation(45 if len(labels) > 12 else 30)
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    if spec["title"]:
        ax.set_title(_text(spec["title"]), loc="left", fontsize=11, fontweight="bold",
                     color="#111827")
    if spec["xlabel"]:
        ax.set_xlabel(_text(spec["xlabel"]), color="#374151")
    if spec["ylabel"]:
        ax.set_ylabel(_text(spec["ylabel"]), color="#374151")
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=9)
    fig.set_facecolor("white")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    # A palette of 128 colours: a third of the bytes of full colour, no visible difference
    # for flat bars and lines (every recipient's message carries the chart).
    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(),  # type: ignore[no-untyped-call]
                             "raw", "RGBA", 0,
                             1).convert("RGB").quantize(128, method=Image.Quantize.FASTOCTREE)
    palette = image.getpalette() or []
    image.putpalette([255 if min(palette[i - i % 3:i - i % 3 + 3]) >= 248 else value
                      for i, value in enumerate(palette)])  # white stays white (the page's)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _thousands(value: float, _position: Any) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2f}"
