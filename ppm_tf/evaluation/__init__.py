"""Offline evaluation: the paper's table from eval-split predictions (``evaluate``), with
bootstrap intervals (``bootstrap``), and its report (``report``, which needs no TensorFlow).

The names below are metrics.json's keys: the evaluation writes them, the reports and the
benchmarks read them, so they are defined here once.
"""

# The slices every metric is reported on: all eval impressions, and those of cold and warm
# items (``features.is_cold_item``: no impression before the recent window).
SLICES = ("overall", "cold", "warm")
# Cold items split by when they were first shown: already in the recent window (so ID
# models trained on it have seen them), or never before the eval days.
COLD_IN_WINDOW, COLD_UNSEEN = "cold_in_window", "cold_unseen"
EVAL_SLICES = ("overall", "warm", "cold", COLD_IN_WINDOW, COLD_UNSEEN)  # in table order
SLICE_LABELS = {"overall": "overall", "cold": "cold", "warm": "warm",
                COLD_IN_WINDOW: "cold, new in window", COLD_UNSEEN: "cold, unseen before eval"}

# Every metric of a slice (besides its "examples"), with its label in tables. Per-user GAUC
# over the eval days also credits a scorer for the growth of each user's own history; a
# ranker ranks one request's candidates, which per-request GAUC measures.
SLICE_METRICS = {
    "click_auc": "click AUC",
    "order_auc": "order AUC",
    "click_gauc": "click GAUC per user",
    "click_request_gauc": "click GAUC per request",
    "logloss": "click log loss",
    "order_logloss": "order log loss",
    "calibration": "calibration",
}
# Per model: the 95% interval of every slice metric, {slice: {metric: [low, high]}}, and the
# paired difference to ``BASE``, {slice: {metric: {"difference": d, "interval": [low, high]}}}.
INTERVALS, VS_BASE, BASE = "intervals", "vs_base", "base"
DIFFERENCE, INTERVAL = "difference", "interval"
# How the intervals were drawn: {"unit": "user", "resamples", "seed", "level", "users"}.
BOOTSTRAP = "bootstrap"
ORACLE = "oracle"
