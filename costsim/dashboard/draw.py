"""Draw the dashboard's typed data as plotly figures and write the HTML pages.

Every function here takes objects from ``costsim.dashboard.data`` and decides only
presentation (colours, log or linear axes, layout): what a page shows is decided, and
tested, there. plotly is imported
inside the functions, so importing the package to build data costs nothing.

plotly.js travels as ONE ``plotly.min.js`` beside the pages: each page's first figure
is written with ``include_plotlyjs="directory"`` (plotly 7.1 emits a
``<script src="plotly.min.js">`` for it), and ``write_dashboard`` writes the bundle
itself. Inlining it (``include_plotlyjs=True``) would put 4.8 MB into each of the five
pages; the CDN needs a network. The bundle is written by us rather than by
``write_html``'s copy because that copy leaves an existing file alone, so a plotly
upgrade would keep serving a stale bundle; we rewrite it whenever its bytes differ.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from costsim.dashboard.data import (
    CalibrationData,
    CalibrationPoint,
    CostData,
    DashboardData,
    LossData,
    ScheduleSummary,
    SearchData,
    Study,
    Timeline,
    TimelineData,
)

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

PLOTLY_BUNDLE = "plotly.min.js"
FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
FROZEN_COLOR = "rgba(140, 140, 140, 0.55)"
MISFIT_COLOR = "#d62728"
EVENT_SYMBOLS = {"grow_depth": "triangle-up", "grow_width": "diamond", "optimizer_reset": "x"}
QUANTITY_TITLES = {
    "flops_counted": "counted FLOPs",
    "memory": "memory (bytes)",
    "step_time": "step time (s)",
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


def loss_figures(data: LossData) -> list[Figure]:
    """Validation loss against counted FLOPs (left) and wall time (right); one colour
    per schedule in both panels, baselines dashed, predictions dotted over their
    interval band."""
    if not data.series:
        return []
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("against counted FLOPs", "against wall time"),
                           horizontal_spacing=0.08)
    schedules = list(dict.fromkeys(series.key for series in data.series))
    for col, field, title in ((1, "x_flops", "counted FLOPs"), (2, "x_time_s", "wall time (s)")):
        axis = _axis_type([x for series in data.series for x in getattr(series, field)])
        figure.update_xaxes(title_text=title, type=axis, row=1, col=col)
        for series in data.series:
            x = getattr(series, field)
            # a log axis cannot place x = 0 (the evaluation before the first step): leave it out
            keep = [i for i, value in enumerate(x) if axis == "linear" or value > 0]
            x = [x[i] for i in keep]
            color = _color(schedules.index(series.key))
            name = f"{series.label} ({series.role})"
            common = {"legendgroup": name, "showlegend": False}
            if series.lower is not None and series.upper is not None:
                figure.add_trace(go.Scatter(x=x, y=[series.upper[i] for i in keep], mode="lines", line={"width": 0},
                                            hoverinfo="skip", **common), row=1, col=col)
                figure.add_trace(go.Scatter(x=x, y=[series.lower[i] for i in keep], mode="lines", line={"width": 0},
                                            fill="tonexty", fillcolor=_rgba(color, 0.2), hoverinfo="skip", **common),
                                 row=1, col=col)
            dash = "dot" if series.kind == "predicted" else "dash" if series.role == "baseline" else "solid"
            figure.add_trace(go.Scatter(
                x=x, y=[series.loss[i] for i in keep], name=name, legendgroup=name, showlegend=col == 1,
                mode="lines+markers" if series.kind == "measured" else "lines",
                line={"color": color, "dash": dash, "width": 2},
            ), row=1, col=col)
    figure.update_yaxes(title_text="validation loss", row=1, col=1)
    figure.update_layout(height=520, title="Validation loss", legend={"orientation": "h", "y": -0.2})
    return [figure]


# --- 3. cost breakdown ------------------------------------------------------------------


def cost_figures(data: CostData) -> list[Figure]:
    """Grouped bars per stage for counted FLOPs, time, peak memory and money, one
    colour per schedule; a stage that does not fit its GPU is outlined red and
    cross-hatched, and its hover says what would make it fit."""
    if not data.breakdowns:
        return []
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = (("flops_counted", "counted FLOPs"), ("time_s", "time (s)"),
              ("peak_memory_bytes", "peak memory per GPU (bytes)"), ("cost_usd", "cost (USD)"))
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=[t for _, t in panels],
                           vertical_spacing=0.06)
    for index, breakdown in enumerate(data.breakdowns):
        stages = breakdown.estimate.stages
        total = breakdown.estimate.total
        name = (f"{breakdown.label} ({breakdown.role}): {total.time_s / 3600:.3g} h, ${total.cost_usd:.3g} "
                f"on {breakdown.estimate.n_gpus}× {breakdown.estimate.gpu}")
        hover = [
            f"{breakdown.label}<br>stage {s.index}{f' ({s.name})' if s.name else ''}: {s.layers} layers, "
            f"d_model {s.d_model}, train {s.train}<br>%{{y:.4g}}"
            + ("" if s.fits_in_memory else f"<br><b>does not fit in memory</b>: {s.fit_suggestion}")
            + "<extra></extra>"
            for s in stages
        ]
        misfit = [not s.fits_in_memory for s in stages]
        marker = {
            "color": _color(index),
            "line": {"color": [MISFIT_COLOR if m else "white" for m in misfit],
                     "width": [3 if m else 0 for m in misfit]},
            "pattern": {"shape": ["x" if m else "" for m in misfit]},
        }
        for row, (field, _) in enumerate(panels, start=1):
            figure.add_trace(go.Bar(
                x=[f"stage {s.index}" for s in stages], y=[getattr(s, field) for s in stages], name=name,
                legendgroup=name, showlegend=row == 1, marker=marker, hovertemplate=hover,
            ), row=row, col=1)
    for row, (field, _) in enumerate(panels, start=1):
        values = [getattr(s, field) for b in data.breakdowns for s in b.estimate.stages]
        figure.update_yaxes(type=_axis_type(values), row=row, col=1)
    figure.update_yaxes(tickformat="~s", ticksuffix="B", row=3, col=1)
    categories = [f"stage {i}" for i in range(max(len(b.estimate.stages) for b in data.breakdowns))]
    for memory, gpu in sorted({(b.gpu_memory_bytes, b.estimate.gpu) for b in data.breakdowns}):
        # a trace, not add_hline: it joins the legend and the log axis's autorange
        figure.add_trace(go.Scatter(x=categories, y=[memory] * len(categories), mode="lines", name=f"{gpu} memory",
                                    line={"color": MISFIT_COLOR, "dash": "dot"}), row=3, col=1)
    figure.update_layout(barmode="group", height=1000, title="Cost per stage (costsim.estimate)",
                         legend={"orientation": "h", "y": -0.08})
    return [figure]


# --- 4. calibration ---------------------------------------------------------------------


def _point_hover(points: Sequence[CalibrationPoint]) -> list[str]:
    return [f"{p.label} on {p.device}<br>{p.detail}<br>predicted {p.predicted:.4g}, measured {p.measured:.4g}"
            f"<br>error {p.relative_error:+.1%}" for p in points]


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
            low = min(min(p.predicted, p.measured) for p in points)
            high = max(max(p.predicted, p.measured) for p in points)
            figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x", legendgroup="y=x",
                                        showlegend=row == 1, line={"color": "grey", "dash": "dot"}), row=row, col=1)
            for source in sources:
                chosen = [p for p in points if p.source == source]
                if not chosen:
                    continue
                color = _color(sources.index(source))
                common = {"mode": "markers", "marker": {"color": color, "size": 9}, "hovertext": _point_hover(chosen),
                          "hoverinfo": "text", "legendgroup": source}
                figure.add_trace(go.Scatter(x=[p.measured for p in chosen], y=[p.predicted for p in chosen],
                                            name=source, showlegend=source not in in_legend, **common), row=row, col=1)
                in_legend.add(source)
                figure.add_trace(go.Scatter(x=[p.measured for p in chosen], y=[p.relative_error for p in chosen],
                                            name=source, showlegend=False, **common), row=row, col=2)
            kind = "log" if quantity in LOG_QUANTITIES else "linear"
            figure.update_xaxes(type=kind, title_text="measured", row=row, col=1)
            figure.update_yaxes(type=kind, title_text="predicted", row=row, col=1)
            figure.update_xaxes(type=kind, title_text="measured", row=row, col=2)
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
    ("cost (USD)", lambda r: f"{r.cost_usd:,.2f}"),
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
    history = make_subplots(rows=n, cols=1, shared_xaxes=True, subplot_titles=list(study.objectives))
    for i, objective in enumerate(study.objectives, start=1):
        history.add_trace(go.Scatter(
            x=[t.number for t in complete], y=[t.values[i - 1] for t in complete], mode="markers", name="trial",
            legendgroup="trial", showlegend=i == 1, marker={"color": _color(0)},
            hovertext=[f"trial {t.number}<br>{json.dumps(dict(t.params))}" for t in complete], hoverinfo="text+y",
        ), row=i, col=1)
        numbers, best = study.best_so_far(i - 1)
        history.add_trace(go.Scatter(x=numbers, y=best, mode="lines", line_shape="hv", name="best so far",
                                     legendgroup="best", showlegend=i == 1, line={"color": _color(1), "width": 2}),
                          row=i, col=1)
        history.update_yaxes(title_text=objective, row=i, col=1)
    history.update_xaxes(title_text="trial number", row=n, col=1)
    history.update_layout(height=300 * n + 120,
                          title=f"Study {study.name}: {len(study.trials)} trials ({_state_counts(study)}); "
                                "lower is better")
    figures.append(history)
    best = study.best()
    names = list(dict.fromkeys(key for trial in best for key in trial.params))
    columns = [list(study.objectives) + names] + [
        [_cell(v) for v in trial.values] + [_cell(trial.params.get(key, "")) for key in names] for trial in best
    ]
    title = "Best trial" if n == 1 else f"Pareto front ({len(best)} trials)"
    figures.append(go.Figure(
        go.Table(header={"values": ["parameter"] + [f"trial {t.number}" for t in best]}, cells={"values": columns}),
        layout={"title": f"{study.name}: {title}", "height": _table_height(len(columns[0])), "margin": TABLE_MARGIN},
    ))
    if n == 2:
        front = sorted(best, key=lambda t: t.values)
        pareto = go.Figure()
        pareto.add_trace(go.Scatter(
            x=[t.values[0] for t in complete], y=[t.values[1] for t in complete], mode="markers", name="trials",
            marker={"color": "lightgrey", "size": 8}, hovertext=[f"trial {t.number}" for t in complete],
        ))
        pareto.add_trace(go.Scatter(
            x=[t.values[0] for t in front], y=[t.values[1] for t in front], mode="lines+markers", line_shape="hv",
            name="Pareto front", marker={"color": _color(1), "size": 11},
            hovertext=[f"trial {t.number}<br>{json.dumps(dict(t.params))}" for t in front],
        ))
        pareto.update_layout(title=f"{study.name}: Pareto front", xaxis_title=study.objectives[0],
                             yaxis_title=study.objectives[1], height=500)
        figures.append(pareto)
    return figures


def search_figures(data: SearchData) -> list[Figure]:
    return [figure for study in data.studies for figure in (*outcome_figures(study), *study_figures(study))]


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


PAGES = (
    Page("timeline.html", "Schedule timeline", "active layers and d_model against cumulative tokens; frozen phases "
         "hatched; growth events", lambda d: d.timeline, timeline_figures),
    Page("loss.html", "Loss", "validation loss against counted FLOPs and wall time; baseline vs growth; "
         "predicted bands", lambda d: d.loss, loss_figures),
    Page("cost.html", "Cost per stage", "counted FLOPs, time, memory and money per stage from costsim.estimate",
         lambda d: d.cost, cost_figures),
    Page("calibration.html", "Calibration", "predicted vs measured counted FLOPs, memory, step time "
         "(and loss) with relative errors", lambda d: d.calibration, calibration_figures),
    Page("search.html", "Search", "the search's answer against full training; trial history with best so far; "
         "the best trial's parameters; Pareto front", lambda d: d.search, search_figures),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
nav a { margin-right: 1.2em; }
.empty { background: #fff4e5; border-left: 4px solid #f0a030; padding: .6em 1em; }
.notes { color: #555; }
.figure { margin: 1.5em 0; }
td, th { text-align: left; padding: .3em 1em .3em 0; vertical-align: top; }
"""


def _document(title: str, body: str) -> str:
    nav = " ".join(f'<a href="{page.file}">{html.escape(page.title)}</a>' for page in PAGES)
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
    return _document(page.title, body), len(figures)


def _index_html(data: DashboardData, counts: dict[str, int]) -> str:
    rows = []
    for page in PAGES:
        section = page.section(data)
        state = (f"empty: {html.escape(section.why_empty)}" if section.why_empty
                 else f"{counts[page.file]} figure{'s' if counts[page.file] != 1 else ''}")
        rows.append(f'<tr><td><a href="{page.file}">{html.escape(page.title)}</a></td>'
                    f"<td>{html.escape(page.about)}</td><td>{state}</td></tr>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<p>Store <code>{html.escape(data.db)}</code>, generated {generated}.</p>\n"
            "<table><tr><th>page</th><th>shows</th><th>state</th></tr>\n" + "\n".join(rows) + "</table>")
    return _document("costsim dashboard", body)


def _write_bundle(out_dir: Path) -> None:
    """plotly.js beside the pages, rewritten only when it differs (a plotly upgrade)."""
    import plotly.offline

    bundle = plotly.offline.get_plotlyjs().encode()
    target = out_dir / PLOTLY_BUNDLE
    if not target.is_file() or target.read_bytes() != bundle:
        target.write_bytes(bundle)


def write_dashboard(data: DashboardData, out_dir: str | Path) -> Path:
    """Write index.html, one page per entry of ``PAGES`` and plotly.min.js into ``out_dir``; return the index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_bundle(out_dir)
    counts = {}
    for page in PAGES:
        text, counts[page.file] = page_html(page, data)
        (out_dir / page.file).write_text(text, encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(_index_html(data, counts), encoding="utf-8")
    return index
