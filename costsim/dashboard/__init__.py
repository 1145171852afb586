"""HTML dashboards of schedules, losses, costs, calibration and search, from the store.

Two halves (as in Optuna's visualization): ``data`` builds plain typed objects from
the DuckDB store and spec files, which is what the tests check; ``draw`` turns them
into plotly figures and offline HTML pages. ``python -m costsim.dashboard --help``
is the command line.
"""

from costsim.dashboard.checks import Check, CheckData, CheckOutcome, CheckPair, check_data
from costsim.dashboard.data import (
    CalibrationData,
    CalibrationPoint,
    CostBreakdown,
    CostData,
    DashboardData,
    LossData,
    LossSeries,
    Predictions,
    Schedule,
    ScheduleSummary,
    SearchData,
    SearchOutcome,
    Selection,
    StoredCalibration,
    Study,
    Timeline,
    TimelineData,
    TimelineEvent,
    TimelineStage,
    Trial,
    calibration_data,
    cost_data,
    dashboard_data,
    loss_data,
    loss_predictions,
    predicted_loss_series,
    search_data,
    select,
    timeline_data,
)
from costsim.dashboard.draw import PAGES, shown_pages, write_dashboard

__all__ = [
    "PAGES", "CalibrationData", "CalibrationPoint", "Check", "CheckData", "CheckOutcome", "CheckPair",
    "CostBreakdown", "CostData", "DashboardData", "LossData", "LossSeries", "Predictions", "Schedule",
    "ScheduleSummary", "SearchData", "SearchOutcome", "Selection", "StoredCalibration", "Study", "Timeline",
    "TimelineData", "TimelineEvent", "TimelineStage", "Trial", "calibration_data", "check_data", "cost_data",
    "dashboard_data", "loss_data", "loss_predictions", "predicted_loss_series", "search_data", "select",
    "shown_pages", "timeline_data", "write_dashboard",
]
