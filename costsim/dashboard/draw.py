"""Draw the dashboard's typed data as plotly figures and write the HTML pages.

Every function here takes objects from ``costsim.dashboard.data`` and decides only
presentation (colours, log or linear axes, units, layout): what a page shows is decided,
and tested, there. Units are one system on every page (``Unit`` below): memory in GiB,
time in s, min or h, money in plain dollars, FLOPs with SI prefixes. plotly is imported
inside the functions, so importing the package to build data costs nothing.

plotly.js travels as ONE ``plotly.min.js`` beside the pages: each page's first figure
is written with ``include_plotlyjs="directory"`` (plotly 7.1 emits a
``<script src="plotly.min.js">`` for it), and ``write_dashboard`` writes the bundle
itself. Inlining it (``include_plotlyjs=True``) would put 4.8 MB into every
page; the CDN needs a network. The bundle is written by us rather than by
``write_html``'s copy because that copy leaves an existing file alone, so a plotly
upgrade would keep serving a stale bundle; we rewrite it whenever its bytes differ.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from costsim.dashboard.checks import Check, CheckData
from costsim.dashboard.data import (
    CalibrationData,
    CalibrationPoint,
    CostData,
    DashboardData,
    LossData,
    LossSeries,
    ScheduleSummary,
    SearchData,
    Study,
    Timeline,
    TimelineData,
)
from costsim.text import dollars, si, time_unit

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

PLOTLY_BUNDLE = "plotly.min.js"
FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
FROZEN_COLOR = "rgba(140, 140, 140, 0.55)"
MISFIT_COLOR = "#d62728"
EVENT_SYMBOLS = {"grow_depth": "triangle-up", "grow_width": "diamond", "optimizer_reset": "x"}
QUANTITY_TITLES = {
    "flops_counted": "counted FLOPs",
    "memory": "memory",
    "step_time": "step time",
    "val_loss": "validation loss",
}
LOG_QUANTITIES = {"flops_counted", "memory", "step_time"}
LOG_SCALE_RATIO = 100  # an axis turns logarithmic when its values span more than this
TABLE_MARGIN = {"t": 50, "b": 10, "l": 10, "r": 10}


def _palette() -> list[str]:
    import plotly.colors

    return plotly.colors.qualitative.Plotly


def _color(index: int) -> str:
    colors = _palette()
    return colors[index % len(colors)]


def _axis_type(values: Sequence[float]) -> str:
    """"log" when the positive values span more than ``LOG_SCALE_RATIO``: a laptop run
    next to a planned pretraining run differs by many orders of magnitude."""
    positive = [v for v in values if v > 0]
    return "log" if positive and max(positive) > LOG_SCALE_RATIO * min(positive) else "linear"


def _table_height(rows: int) -> int:
    """Tall enough for a header and ``rows`` rows of plotly's default 28 px cells, plus the title."""
    return 90 + 30 * (rows + 1)


# --- units: one system on every page ---------------------------------------------------
# Memory in GiB, time in s, min or h (one per axis, chosen by its largest value), money in
# plain dollars and cents, FLOPs with SI prefixes. Every axis is set explicitly: plotly's
# default tick labels would write $0.0001 as "100µ" and 10^9 bytes as "1B".

GIB = 2**30


@dataclass(frozen=True)
class Unit:
    """How one quantity is shown: values divided by ``scale``; ``symbol`` in axis titles;
    ``tickformat`` (d3) with ``prefix``/``suffix`` on ticks and in hover; ``show`` formats
    an unscaled value in Python for hover text and tables."""

    symbol: str
    show: Callable[[float], str]
    scale: float = 1.0
    tickformat: str = "~r"
    hoverformat: str = ",.3~r"
    prefix: str = ""
    suffix: str = ""

    def title(self, what: str) -> str:
        return what if not self.symbol or what.endswith(f" {self.symbol}") else f"{what} ({self.symbol})"

    def values(self, values: Sequence[float]) -> list[float]:
        return [v / self.scale for v in values]

    def axis(self, what: str) -> dict[str, Any]:
        """Keyword arguments for ``update_xaxes``/``update_yaxes``."""
        return {"title_text": self.title(what), "tickformat": self.tickformat, "tickprefix": self.prefix,
                "hoverformat": self.hoverformat}

    def hover(self, var: str) -> str:
        """A hovertemplate fragment for ``var`` ("x" or "y"), with its unit."""
        return f"{self.prefix}%{{{var}:{self.hoverformat}}}{self.suffix}"


FLOPS = Unit("FLOPs", lambda v: si(v, " FLOPs"), tickformat="~s", hoverformat=".3~s", suffix=" FLOPs")
MEMORY = Unit("GiB", lambda v: f"{v / GIB:.3g} GiB", scale=GIB, suffix=" GiB")
LOSS = Unit("", lambda v: f"{v:.4f}", hoverformat=".4f")
NATS = Unit("nats", lambda v: f"{v:.4f}", hoverformat=".4f", suffix=" nats")  # a loss where the unit is named


def time_axis_unit(seconds: Sequence[float]) -> Unit:
    """Seconds, minutes or hours, whichever suits the largest value."""
    scale, symbol = time_unit(max((abs(v) for v in seconds), default=0.0))
    return Unit(symbol, lambda v: f"{v / scale:.3g} {symbol}", scale=scale, suffix=f" {symbol}")


def dollar_unit(amounts: Sequence[float]) -> Unit:
    """Plain dollars: cents from a dollar up, else enough decimals for two significant
    digits of the smallest positive amount ("$0.0001"), never an SI prefix."""
    positive = [v for v in amounts if v > 0]
    if not positive or min(positive) >= 1:
        fmt = ",.2f"
    else:
        fmt = f",.{min(10, 1 - math.floor(math.log10(min(positive))))}~f"
    return Unit("$", dollars, tickformat=fmt, hoverformat=fmt, prefix="$")


def _rgba(color: str, alpha: float) -> str:
    """A hex colour with transparency, for interval bands."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


# --- 1. schedule timeline ------------------------------------------------------------


def _layers_at(timeline: Timeline, tokens: float) -> int:
    """Depth right after ``tokens``: where a growth marker sits on its stage's bar."""
    for stage in timeline.stages:
        if stage.start_tokens <= tokens < stage.end_tokens:
            return stage.layers
    return timeline.stages[-1].layers


def timeline_figures(data: TimelineData) -> list[Figure]:
    """One row per schedule: a bar per stage as wide as its tokens and as tall as its
    depth, frozen blocks hatched grey below the trainable ones (where they are in the
    model), d_model as a step line on the right axis, growth events as markers."""
    if not data.timelines:
        return []
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = len(data.timelines)
    figure = make_subplots(rows=rows, cols=1, subplot_titles=[t.label for t in data.timelines],
                           specs=[[{"secondary_y": True}]] * rows, vertical_spacing=min(0.15, 0.6 / rows))
    for row, timeline in enumerate(data.timelines, start=1):
        stages = timeline.stages
        first = row == 1
        centers = [(s.start_tokens + s.end_tokens) / 2 for s in stages]
        widths = [s.end_tokens - s.start_tokens for s in stages]
        opacity = [0.4 if s.pending else 1.0 for s in stages]
        hover = [
            f"stage {s.index}{f' ({s.name})' if s.name else ''}<br>tokens {s.start_tokens:,.0f} – {s.end_tokens:,.0f}"
            f"{' (not trained yet: planned tokens)' if s.pending else ''}<br>{s.layers} layers, d_model {s.d_model}"
            f"<br>train: {s.train}, {s.n_trainable_blocks} of {s.layers} blocks trainable"
            f"{'<br>embeddings frozen' if s.freeze_embeddings else ''}"
            for s in stages
        ]
        figure.add_trace(go.Bar(
            x=centers, width=widths, y=[s.layers - s.n_trainable_blocks for s in stages], base=0,
            name="frozen blocks", legendgroup="frozen", showlegend=first, hovertext=hover, hoverinfo="text",
            marker={"color": FROZEN_COLOR, "pattern": {"shape": "/"}, "line": {"width": 1, "color": "white"},
                    "opacity": opacity},
        ), row=row, col=1)
        figure.add_trace(go.Bar(
            x=centers, width=widths, y=[s.n_trainable_blocks for s in stages],
            base=[s.layers - s.n_trainable_blocks for s in stages],
            text=[f"trains {s.n_trainable_blocks} of {s.layers}" if s.frozen else "" for s in stages],
            textposition="inside", insidetextanchor="middle",
            name="trainable blocks", legendgroup="trainable", showlegend=first, hovertext=hover, hoverinfo="text",
            marker={"color": _color(0), "line": {"width": 1, "color": "white"}, "opacity": opacity},
        ), row=row, col=1)
        figure.add_trace(go.Scatter(
            x=[s.start_tokens for s in stages] + [stages[-1].end_tokens],
            y=[s.d_model for s in stages] + [stages[-1].d_model], line_shape="hv", mode="lines",
            name="d_model", legendgroup="d_model", showlegend=first, line={"color": _color(1), "width": 2},
        ), row=row, col=1, secondary_y=True)
        if timeline.events:
            figure.add_trace(go.Scatter(
                x=[e.tokens for e in timeline.events], y=[_layers_at(timeline, e.tokens) for e in timeline.events],
                mode="markers", name="growth / events", legendgroup="events", showlegend=first,
                marker={"size": 13, "color": "black",
                        "symbol": [EVENT_SYMBOLS.get(e.kind, "circle") for e in timeline.events]},
                hovertext=[f"{e.kind} at step {e.step}<br>{e.detail or ''}" for e in timeline.events],
                hoverinfo="text",
            ), row=row, col=1)
        # headroom above the tallest bar for the growth markers and the d_model line
        figure.update_yaxes(title_text="active layers", range=[0, 1.15 * max(s.layers for s in stages)],
                            row=row, col=1, secondary_y=False)
        figure.update_yaxes(title_text="d_model", range=[0, 1.25 * max(s.d_model for s in stages)], showgrid=False,
                            row=row, col=1, secondary_y=True)
        figure.update_xaxes(title_text="cumulative tokens", row=row, col=1)
    figure.update_layout(barmode="overlay", height=340 * rows + 80, title="Active layers and width against tokens",
                         bargap=0)
    return [figure]


# --- 2. loss ----------------------------------------------------------------------------


TOKENIZERS = {256: "byte-level"}  # any other vocabulary is a BPE tokenizer


def _loss_title(vocab_size: int) -> str:
    return f"Validation loss, vocabulary {vocab_size:,} ({TOKENIZERS.get(vocab_size, 'BPE')})"


def _time_panels(series: Sequence[LossSeries]) -> list[tuple[str, str]]:
    """(device, title) per time axis: one per device time was measured or predicted on,
    so a CPU's measured seconds never share an axis with a GPU's predicted ones."""
    devices = list(dict.fromkeys(s.time_on for s in sorted(series, key=lambda s: s.kind != "measured")))
    panels = []
    for device in devices:
        kinds = " and ".join(dict.fromkeys(s.kind for s in series if s.time_on == device))
        panels.append((device, f"{kinds} time on {device}"))
    return panels


def _loss_figure(vocab_size: int, series: Sequence[LossSeries], schedules: list[str]) -> Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    time_panels = _time_panels(series)
    cols = 1 + len(time_panels)
    figure = make_subplots(rows=1, cols=cols, subplot_titles=["against counted FLOPs", *(t for _, t in time_panels)],
                           horizontal_spacing=min(0.08, 0.24 / cols))
    panels = [(1, "x_flops", series, FLOPS, "counted FLOPs")]
    for col, (device, _) in enumerate(time_panels, start=2):
        chosen = [s for s in series if s.time_on == device]
        unit = time_axis_unit([x for s in chosen for x in s.x_time_s])
        panels.append((col, "x_time_s", chosen, unit, f"time on {device}"))
    for col, field, chosen, unit, what in panels:
        axis = _axis_type([x for s in chosen for x in getattr(s, field)])
        figure.update_xaxes(type=axis, row=1, col=col, **unit.axis(what))
        for s in chosen:
            x = getattr(s, field)
            # a log axis cannot place x = 0 (the evaluation before the first step): leave it out
            keep = [i for i, value in enumerate(x) if axis == "linear" or value > 0]
            x = unit.values([x[i] for i in keep])
            color = _color(schedules.index(s.key))
            name = f"{s.label} ({s.role})"
            common = {"legendgroup": name, "showlegend": False}
            if s.lower is not None and s.upper is not None:
                figure.add_trace(go.Scatter(x=x, y=[s.upper[i] for i in keep], mode="lines", line={"width": 0},
                                            hoverinfo="skip", **common), row=1, col=col)
                figure.add_trace(go.Scatter(x=x, y=[s.lower[i] for i in keep], mode="lines", line={"width": 0},
                                            fill="tonexty", fillcolor=_rgba(color, 0.2), hoverinfo="skip", **common),
                                 row=1, col=col)
            dash = "dot" if s.kind == "predicted" else "dash" if s.role == "baseline" else "solid"
            where = f" on {s.time_on}" if field == "x_time_s" else ""
            figure.add_trace(go.Scatter(
                x=x, y=[s.loss[i] for i in keep], name=name, legendgroup=name, showlegend=col == 1,
                mode="lines+markers" if s.kind == "measured" else "lines",
                line={"color": color, "dash": dash, "width": 2},
                hovertemplate=f"{html.escape(name)}<br>{s.kind}{where}: {unit.hover('x')}<br>"
                              f"loss {LOSS.hover('y')}<extra></extra>",
            ), row=1, col=col)
    figure.update_yaxes(title_text="validation loss", row=1, col=1)
    caption = ("each time axis is one device: measured time where the run trained, predicted time on the spec's "
               "GPU; they share an axis only when that is the same device")
    figure.update_layout(height=520, title=f"{_loss_title(vocab_size)}<br><sup>{caption}</sup>",
                         legend={"orientation": "h", "y": -0.2}, margin={"t": 110})
    return figure


def loss_figures(data: LossData) -> list[Figure]:
    """One figure per vocabulary (losses of different tokenizers are not comparable):
    validation loss against counted FLOPs, then against time on each device; one colour
    per schedule on every panel, baselines dashed, predictions dotted over their
    interval band."""
    schedules = list(dict.fromkeys(series.key for series in data.series))  # colours shared by the figures
    return [_loss_figure(vocab, data.for_vocab(vocab), schedules) for vocab in data.vocab_sizes()]


# --- 3. cost breakdown ------------------------------------------------------------------


def cost_figures(data: CostData) -> list[Figure]:
    """Grouped bars per stage for counted FLOPs, time, peak memory and money, one
    colour per schedule; a stage that does not fit its GPU is outlined red and
    cross-hatched, and its hover says what would make it fit."""
    if not data.breakdowns:
        return []
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def values(field: str) -> list[float]:
        return [getattr(s, field) for b in data.breakdowns for s in b.estimate.stages]

    panels = (("flops_counted", "counted FLOPs", FLOPS), ("time_s", "time", time_axis_unit(values("time_s"))),
              ("peak_memory_bytes", "peak memory per GPU", MEMORY),
              ("cost_usd", "cost", dollar_unit(values("cost_usd"))))
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    for index, breakdown in enumerate(data.breakdowns):
        stages = breakdown.estimate.stages
        total = breakdown.estimate.total
        spent = time_axis_unit([total.time_s]).show(total.time_s)
        name = (f"{breakdown.label} ({breakdown.role}): {spent}, {dollars(total.cost_usd)} "
                f"on {breakdown.gpu}")
        misfit = [not s.fits_in_memory for s in stages]
        marker = {
            "color": _color(index),
            "line": {"color": [MISFIT_COLOR if m else "white" for m in misfit],
                     "width": [3 if m else 0 for m in misfit]},
            "pattern": {"shape": ["x" if m else "" for m in misfit]},
        }
        for row, (field, what, unit) in enumerate(panels, start=1):
            hover = [
                f"{html.escape(breakdown.label)}<br>stage {s.index}{f' ({s.name})' if s.name else ''}: {s.layers} "
                f"layers, d_model {s.d_model}, train {s.train}<br>{what}: {unit.hover('y')}"
                + ("" if s.fits_in_memory else f"<br><b>does not fit in memory</b>: {s.fit_suggestion}")
                + "<extra></extra>"
                for s in stages
            ]
            figure.add_trace(go.Bar(
                x=[f"stage {s.index}" for s in stages], y=unit.values([getattr(s, field) for s in stages]), name=name,
                legendgroup=name, showlegend=row == 1, marker=marker, hovertemplate=hover,
            ), row=row, col=1)
    for row, (field, what, unit) in enumerate(panels, start=1):
        figure.update_yaxes(type=_axis_type(values(field)), row=row, col=1, **unit.axis(what))
    categories = [f"stage {i}" for i in range(max(len(b.estimate.stages) for b in data.breakdowns))]
    for memory, gpu in sorted({(b.gpu_memory_bytes, b.gpu) for b in data.breakdowns}):
        # a trace, not add_hline: it joins the legend and the log axis's autorange
        figure.add_trace(go.Scatter(x=categories, y=MEMORY.values([memory] * len(categories)), mode="lines",
                                    name=f"{gpu} memory: {MEMORY.show(memory)}",
                                    hovertemplate=f"{gpu} memory: {MEMORY.hover('y')}<extra></extra>",
                                    line={"color": MISFIT_COLOR, "dash": "dot"}), row=3, col=1)
    figure.update_layout(barmode="group", height=1000, title="Cost per stage (costsim.estimate)",
                         legend={"orientation": "h", "y": -0.08})
    return [figure]


# --- 4. calibration ---------------------------------------------------------------------


def _point_hover(points: Sequence[CalibrationPoint], unit: Unit) -> list[str]:
    return [f"{p.label} on {p.device}<br>{p.detail}<br>predicted {unit.show(p.predicted)}, "
            f"measured {unit.show(p.measured)}<br>error {p.relative_error:+.1%}" for p in points]


def quantity_unit(quantity: str, values: Sequence[float]) -> Unit:
    """How a calibration quantity is shown: FLOPs, GiB, s/min/h or a plain loss."""
    return {"flops_counted": FLOPS, "memory": MEMORY, "val_loss": LOSS}.get(quantity) or time_axis_unit(values)


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1%}"


def calibration_figures(data: CalibrationData) -> list[Figure]:
    """Per quantity: predicted against measured with the y = x line (left) and the
    relative error predicted/measured - 1 against measured (right), coloured by where
    the measurement came from; then the stored profiles' held-out errors as a table."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures = []
    quantities = data.quantities()
    if quantities:
        titles = [t for q in quantities for t in (f"{QUANTITY_TITLES[q]}: predicted vs measured",
                                                   f"{QUANTITY_TITLES[q]}: relative error")]
        figure = make_subplots(rows=len(quantities), cols=2, subplot_titles=titles,
                               vertical_spacing=0.4 / len(quantities), horizontal_spacing=0.1)
        sources = list(dict.fromkeys(p.source for p in data.points))
        in_legend: set[str] = set()
        for row, quantity in enumerate(quantities, start=1):
            points = [p for p in data.points if p.quantity == quantity]
            unit = quantity_unit(quantity, [v for p in points for v in (p.predicted, p.measured)])
            low = min(min(p.predicted, p.measured) for p in points) / unit.scale
            high = max(max(p.predicted, p.measured) for p in points) / unit.scale
            figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x", legendgroup="y=x",
                                        showlegend=row == 1, line={"color": "grey", "dash": "dot"}, hoverinfo="skip"),
                          row=row, col=1)
            for source in sources:
                chosen = [p for p in points if p.source == source]
                if not chosen:
                    continue
                color = _color(sources.index(source))
                common = {"mode": "markers", "marker": {"color": color, "size": 9},
                          "hovertext": _point_hover(chosen, unit), "hoverinfo": "text", "legendgroup": source}
                measured = unit.values([p.measured for p in chosen])
                figure.add_trace(go.Scatter(x=measured, y=unit.values([p.predicted for p in chosen]),
                                            name=source, showlegend=source not in in_legend, **common), row=row, col=1)
                in_legend.add(source)
                figure.add_trace(go.Scatter(x=measured, y=[p.relative_error for p in chosen],
                                            name=source, showlegend=False, **common), row=row, col=2)
            kind = "log" if quantity in LOG_QUANTITIES else "linear"
            figure.update_xaxes(type=kind, row=row, col=1, **unit.axis("measured"))
            figure.update_yaxes(type=kind, row=row, col=1, **unit.axis("predicted"))
            figure.update_xaxes(type=kind, row=row, col=2, **unit.axis("measured"))
            figure.update_yaxes(tickformat="+.0%", title_text="predicted / measured − 1", zeroline=True,
                                zerolinecolor="grey", zerolinewidth=2, row=row, col=2)
        figure.update_layout(height=360 * len(quantities) + 100, title="Predicted against measured")
        figures.append(figure)
    if data.profiles:
        rows = [(p.profile_name, p.device, f"{p.created_at:%Y-%m-%d %H:%M}", key, _percent(median), _percent(worst),
                 case)
                for p in data.profiles
                for key, median, worst, case in (p.holdout or (("(no held-out report)", math.nan, math.nan, ""),))]
        header = ("profile", "device", "fitted (UTC)", "quantity", "held-out median |error|", "worst |error|",
                  "worst case")
        figures.append(go.Figure(
            go.Table(header={"values": list(header)}, cells={"values": [list(column) for column in zip(*rows)]}),
            layout={"title": "Stored calibrations (held-out errors)", "height": _table_height(len(rows)),
                    "margin": TABLE_MARGIN},
        ))
    return figures


# --- 5. search --------------------------------------------------------------------------


def _state_counts(study: Study) -> str:
    counts: dict[str, int] = {}
    for trial in study.trials:
        state = "infeasible" if trial.infeasible else trial.state.lower()
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else value if isinstance(value, str) else json.dumps(value)


OUTCOME_ROWS: tuple[tuple[str, Callable[[ScheduleSummary], str]], ...] = (
    ("predicted loss [interval]", lambda r: f"{r.loss:.4f} [{r.loss_lower:.4f}, {r.loss_upper:.4f}]"),
    ("counted FLOPs", lambda r: f"{r.flops_counted:.3g}"),
    ("time (h)", lambda r: f"{r.time_s / 3600:.3g}"),
    ("cost ($)", lambda r: dollars(r.cost_usd)),
    ("peak memory (GiB)", lambda r: f"{r.peak_memory_bytes / 2**30:.1f}"),
    ("stages", lambda r: str(r.stages)),
)


def outcome_figures(study: Study) -> list[Figure]:
    """The search's answer: its best schedule against full training and the paper's
    schedule at the same budget, and the best schedule's timeline."""
    import plotly.graph_objects as go

    outcome = study.outcome
    if outcome is None:
        return []
    budget = ", ".join(f"{key} {value:.3g}" for key, value in outcome.budget.items())
    columns = [[title for title, _ in OUTCOME_ROWS]] + [
        [show(summary) for _, show in OUTCOME_ROWS] for _, summary in outcome.comparison
    ]
    table = go.Figure(
        go.Table(header={"values": ["at budget " + budget] + [name for name, _ in outcome.comparison]},
                 cells={"values": columns}),
        layout={"title": f"{study.name}: the answer ({outcome.created_at:%Y-%m-%d %H:%M} UTC)",
                "height": _table_height(len(OUTCOME_ROWS)), "margin": TABLE_MARGIN},
    )
    return [table, *timeline_figures(TimelineData(timelines=(outcome.best_timeline,), why_empty=None))]


TIME_OBJECTIVES = {"time", "time_s"}  # costsim.search's objective names (OBJECTIVES) and their metric names
COST_OBJECTIVES = {"cost", "cost_usd"}


def objective_unit(objective: str, values: Sequence[float]) -> Unit:
    """A time objective in s/min/h, a cost in dollars, anything else (loss) as it is."""
    if objective in TIME_OBJECTIVES:
        return time_axis_unit(values)
    if objective in COST_OBJECTIVES:
        return dollar_unit(values)
    return Unit("", lambda v: f"{v:.6g}", tickformat="", hoverformat=".4~g")


def study_figures(study: Study) -> list[Figure]:
    """A study's objective(s) per finished trial with the best-so-far line, the best
    trial's parameters (the Pareto front's, with two or more objectives) and, with
    exactly two objectives, the front against every finished trial. Nothing until a
    trial has finished."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    complete = study.complete()
    if not complete:
        return []
    figures = []
    n = len(study.objectives)
    units = [objective_unit(o, [t.values[i] for t in complete]) for i, o in enumerate(study.objectives)]
    history = make_subplots(rows=n, cols=1, shared_xaxes=True,
                            subplot_titles=[u.title(o) for o, u in zip(study.objectives, units)])
    for i, (objective, unit) in enumerate(zip(study.objectives, units), start=1):
        history.add_trace(go.Scatter(
            x=[t.number for t in complete], y=unit.values([t.values[i - 1] for t in complete]), mode="markers",
            name="trial", legendgroup="trial", showlegend=i == 1, marker={"color": _color(0)},
            customdata=[f"trial {t.number}<br>{html.escape(json.dumps(dict(t.params)))}" for t in complete],
            hovertemplate=f"%{{customdata}}<br>{objective}: {unit.hover('y')}<extra></extra>",
        ), row=i, col=1)
        numbers, best = study.best_so_far(i - 1)
        history.add_trace(go.Scatter(x=numbers, y=unit.values(best), mode="lines", line_shape="hv",
                                     name="best so far", legendgroup="best", showlegend=i == 1,
                                     line={"color": _color(1), "width": 2},
                                     hovertemplate=f"best so far: {unit.hover('y')}<extra></extra>"),
                          row=i, col=1)
        history.update_yaxes(row=i, col=1, **unit.axis(objective))
    history.update_xaxes(title_text="trial number", row=n, col=1)
    history.update_layout(height=300 * n + 120,
                          title=f"Study {study.name}: {len(study.trials)} trials ({_state_counts(study)}); "
                                "lower is better")
    figures.append(history)
    best = study.best()
    names = list(dict.fromkeys(key for trial in best for key in trial.params))
    columns = [[u.title(o) for o, u in zip(study.objectives, units)] + names] + [
        [u.show(v) for u, v in zip(units, trial.values)] + [_cell(trial.params.get(key, "")) for key in names]
        for trial in best
    ]
    title = "Best trial" if n == 1 else f"Pareto front ({len(best)} trials)"
    figures.append(go.Figure(
        go.Table(header={"values": ["parameter"] + [f"trial {t.number}" for t in best]}, cells={"values": columns}),
        layout={"title": f"{study.name}: {title}", "height": _table_height(len(columns[0])), "margin": TABLE_MARGIN},
    ))
    if n == 2:
        front = sorted(best, key=lambda t: t.values)
        pareto = go.Figure()
        xu, yu = units
        hover = f"%{{customdata}}<br>{study.objectives[0]}: {xu.hover('x')}<br>{study.objectives[1]}: {yu.hover('y')}"
        pareto.add_trace(go.Scatter(
            x=xu.values([t.values[0] for t in complete]), y=yu.values([t.values[1] for t in complete]),
            mode="markers", name="trials", marker={"color": "lightgrey", "size": 8},
            customdata=[f"trial {t.number}" for t in complete], hovertemplate=hover + "<extra></extra>",
        ))
        pareto.add_trace(go.Scatter(
            x=xu.values([t.values[0] for t in front]), y=yu.values([t.values[1] for t in front]),
            mode="lines+markers", line_shape="hv", name="Pareto front", marker={"color": _color(1), "size": 11},
            customdata=[f"trial {t.number}<br>{html.escape(json.dumps(dict(t.params)))}" for t in front],
            hovertemplate=hover + "<extra></extra>",
        ))
        pareto.update_layout(title=f"{study.name}: Pareto front", height=500)
        pareto.update_xaxes(**xu.axis(study.objectives[0]))
        pareto.update_yaxes(**yu.axis(study.objectives[1]))
        figures.append(pareto)
    return figures


def search_figures(data: SearchData) -> list[Figure]:
    return [figure for study in data.studies for figure in (*outcome_figures(study), *study_figures(study))]


# --- 6. check -------------------------------------------------------------------------------


def _check_tables(check: Check) -> list[Figure]:
    """Per schedule, predicted final loss [interval] against measured mean ± sd and the seeds
    inside the interval; per pair, the gaps against seed noise; the verdict in words."""
    import plotly.graph_objects as go

    interval = f"{check.interval:.0%} interval" if check.interval else "interval"
    header = ["schedule", "counted FLOPs", f"predicted final loss [{interval}] (nats)",
              "measured mean ± sd (nats)", "seeds inside the interval"]
    rows = [(o.role, FLOPS.show(o.flops_counted), f"{o.predicted:.4f} [{o.lower:.4f}, {o.upper:.4f}]",
             f"{o.mean:.4f} ± {o.spread:.4f} ({len(o.measured)} seed{'s' if len(o.measured) != 1 else ''})",
             f"{o.inside}/{len(o.measured)}") for o in check.outcomes]
    words = "<br>".join(textwrap.wrap(html.escape(check.verdict_words), 140))
    title = (f"Check {check.check_id} ({check.created_at:%Y-%m-%d %H:%M} UTC), {FLOPS.show(check.budget)} per "
             f"schedule, loss profile {check.loss_profile}: <b>{check.verdict}</b><br><sup>{words}</sup>")
    outcomes = go.Figure(go.Table(header={"values": header}, cells={"values": [list(c) for c in zip(*rows)]}),
                         layout={"title": title, "height": _table_height(len(rows)) + 20 * words.count("<br>") + 30,
                                 "margin": {**TABLE_MARGIN, "t": 90 + 20 * words.count("<br>")}})
    if not check.pairs:
        return [outcomes]
    header = ["pair (a vs b)", "predicted gap b − a (nats)", "measured gap b − a (nats)", "seed noise, 2 se (nats)",
              "predicted", "measured", "agrees"]
    rows = [(f"{p.a} vs {p.b}", f"{p.predicted_gap:+.4f}", f"{p.measured_gap:+.4f}", f"{p.noise:.4f}",
             p.says(p.predicted), p.says(p.measured), "yes" if p.agree else "NO") for p in check.pairs]
    pairs = go.Figure(go.Table(header={"values": header}, cells={"values": [list(c) for c in zip(*rows)]}),
                      layout={"title": f"Check {check.check_id}: measured gaps against seed noise (a gap within the "
                                       "noise is a tie)", "height": _table_height(len(rows)), "margin": TABLE_MARGIN})
    return [outcomes, pairs]


def _check_curve_figure(check: Check) -> Figure:
    """Validation loss against counted FLOPs: each seed's measured curve, each role's
    predicted curve dotted over its interval band, one colour per role."""
    import plotly.graph_objects as go

    roles = list(dict.fromkeys([*check.roles(), *(s.key for s in check.curves)]))
    axis = _axis_type([x for s in check.curves for x in s.x_flops])
    figure = go.Figure()
    for s in check.curves:
        keep = [i for i, x in enumerate(s.x_flops) if axis == "linear" or x > 0]
        x = [s.x_flops[i] for i in keep]
        color = _color(roles.index(s.key))
        group = {"legendgroup": s.key}
        if s.lower is not None and s.upper is not None:
            band = f"{check.interval:.0%} interval" if check.interval else "interval"
            figure.add_trace(go.Scatter(x=x, y=[s.upper[i] for i in keep], mode="lines", line={"width": 0},
                                        hoverinfo="skip", showlegend=False, **group))
            figure.add_trace(go.Scatter(x=x, y=[s.lower[i] for i in keep], mode="lines", line={"width": 0},
                                        fill="tonexty", fillcolor=_rgba(color, 0.2), hoverinfo="skip",
                                        name=f"{s.key} predicted {band}", **group))
        figure.add_trace(go.Scatter(
            x=x, y=[s.loss[i] for i in keep], name=s.label, mode="lines" if s.kind == "predicted" else "lines+markers",
            line={"color": color, "dash": "dot" if s.kind == "predicted" else "solid", "width": 2},
            hovertemplate=f"{html.escape(s.label)}<br>{FLOPS.hover('x')}<br>loss {NATS.hover('y')}<extra></extra>",
            **group))
    figure.update_xaxes(type=axis, **FLOPS.axis("counted FLOPs"))
    figure.update_yaxes(**NATS.axis("validation loss"))
    figure.update_layout(height=520, title=f"Check {check.check_id}: measured seeds against the predicted curves",
                         legend={"orientation": "h", "y": -0.2})
    return figure


def check_figures(data: CheckData) -> list[Figure]:
    """Per stored check, newest first: its tables, then its curves (when its runs are stored)."""
    return [figure for check in reversed(data.checks)
            for figure in (*_check_tables(check), *([_check_curve_figure(check)] if check.curves else []))]


# --- pages --------------------------------------------------------------------------------


class PageData(Protocol):
    """What every page's data (TimelineData, LossData, ...) has besides its content."""

    why_empty: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """One HTML page: where its data lives in ``DashboardData`` and how it is drawn."""

    file: str
    title: str
    about: str
    section: Callable[[DashboardData], PageData]
    draw: Callable[[Any], list[Figure]]
    optional: bool = False  # written, and linked, only when it has something to show

    def shown(self, data: DashboardData) -> bool:
        return not self.optional or not self.section(data).why_empty


PAGES = (
    Page("timeline.html", "Schedule timeline", "active layers and d_model against cumulative tokens; frozen phases "
         "hatched; growth events", lambda d: d.timeline, timeline_figures),
    Page("loss.html", "Loss", "validation loss against counted FLOPs and time, one figure per vocabulary "
         "(tokenizer), one time axis per device; baseline vs growth; predicted bands", lambda d: d.loss, loss_figures),
    Page("cost.html", "Cost per stage", "counted FLOPs, time, memory (GiB) and money ($) per stage from "
         "costsim.estimate", lambda d: d.cost, cost_figures),
    Page("calibration.html", "Calibration", "predicted vs measured counted FLOPs, memory, step time "
         "(and loss) with relative errors", lambda d: d.calibration, calibration_figures),
    Page("search.html", "Search", "the search's answer against full training; trial history with best so far; "
         "the best trial's parameters; Pareto front", lambda d: d.search, search_figures),
    Page("check.html", "Check", "the search's answer trained with several seeds (studies.check_recommendation): "
         "predicted final loss and interval against measured per schedule, gaps against seed noise, the verdict; "
         "measured curves per seed over the predicted bands", lambda d: d.check, check_figures, optional=True),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
nav a { margin-right: 1.2em; }
.empty { background: #fff4e5; border-left: 4px solid #f0a030; padding: .6em 1em; }
.notes { color: #555; }
.figure { margin: 1.5em 0; }
td, th { text-align: left; padding: .3em 1em .3em 0; vertical-align: top; }
"""


def shown_pages(data: DashboardData) -> tuple[Page, ...]:
    """The pages written for ``data``: all but the optional ones with nothing to show."""
    return tuple(page for page in PAGES if page.shown(data))


def _document(title: str, body: str, pages: Sequence[Page]) -> str:
    nav = " ".join(f'<a href="{page.file}">{html.escape(page.title)}</a>' for page in pages)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body><nav><a href=\"index.html\">Index</a> {nav}</nav>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _notes(section: PageData) -> str:
    parts = []
    if section.why_empty:
        parts.append(f'<p class="empty">Empty: {html.escape(section.why_empty)}</p>')
    if section.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes) + "</ul>")
    return "\n".join(parts)


def page_html(page: Page, data: DashboardData) -> tuple[str, int]:
    """A page's HTML and how many figures it holds."""
    section = page.section(data)
    figures = page.draw(section)
    divs = [
        '<div class="figure">' + figure.to_html(
            full_html=False, include_plotlyjs="directory" if i == 0 else False, config=FIGURE_CONFIG,
            default_height=f"{figure.layout.height or 500}px",
        ) + "</div>"
        for i, figure in enumerate(figures)
    ]
    body = f"<p>{html.escape(page.about)}</p>\n{_notes(section)}\n" + "\n".join(divs)
    return _document(page.title, body, shown_pages(data)), len(figures)


def _index_html(data: DashboardData, counts: dict[str, int]) -> str:
    rows = []
    for page in shown_pages(data):
        section = page.section(data)
        state = (f"empty: {html.escape(section.why_empty)}" if section.why_empty
                 else f"{counts[page.file]} figure{'s' if counts[page.file] != 1 else ''}")
        rows.append(f'<tr><td><a href="{page.file}">{html.escape(page.title)}</a></td>'
                    f"<td>{html.escape(page.about)}</td><td>{state}</td></tr>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<p>Store <code>{html.escape(data.db)}</code>, generated {generated}.</p>\n"
            "<table><tr><th>page</th><th>shows</th><th>state</th></tr>\n" + "\n".join(rows) + "</table>")
    return _document("costsim dashboard", body, shown_pages(data))


def _write_bundle(out_dir: Path) -> None:
    """plotly.js beside the pages, rewritten only when it differs (a plotly upgrade)."""
    import plotly.offline

    bundle = plotly.offline.get_plotlyjs().encode()
    target = out_dir / PLOTLY_BUNDLE
    if not target.is_file() or target.read_bytes() != bundle:
        target.write_bytes(bundle)


def write_dashboard(data: DashboardData, out_dir: str | Path) -> Path:
    """Write index.html, one page per entry of ``PAGES`` that is shown (``shown_pages``) and
    plotly.min.js into ``out_dir``; return the index. A page not shown this time is removed,
    so the folder never keeps an old one that the index does not link."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_bundle(out_dir)
    counts = {}
    for page in PAGES:
        if not page.shown(data):
            (out_dir / page.file).unlink(missing_ok=True)
            continue
        text, counts[page.file] = page_html(page, data)
        (out_dir / page.file).write_text(text, encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(_index_html(data, counts), encoding="utf-8")
    return index
