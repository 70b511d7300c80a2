"""Renders WORK/eval/metrics.json as the paper-style table (Markdown) and PNG plots.

Everything here reads metrics.json only, so a report can be regenerated from a run folder.
"""
from __future__ import annotations

import io
import math
import re
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

from ppm_tf.evaluation import SLICES

AGE_PLOT = "auc_by_item_age.png"
SLICE_PLOT = "click_auc_by_slice.png"


def format_number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def results_table(metrics: dict[str, Any]) -> str:
    """The main table: one row per model (and the oracle), AUCs per slice, cost."""
    header = ("| model | click AUC | cold | warm | order AUC | click GAUC | logloss | "
              "calibration | gap to oracle | trainable params | train s | examples/s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    rows = list(metrics["models"].items())
    if "oracle" in metrics:
        rows.append(("oracle", metrics["oracle"]))
    for name, model in rows:
        overall = model["overall"]
        gap = model.get("gap_to_oracle", {}).get("overall")
        lines.append("| " + " | ".join([
            name, format_number(overall["click_auc"]), format_number(model["cold"]["click_auc"]),
            format_number(model["warm"]["click_auc"]), format_number(overall["order_auc"]),
            format_number(overall["click_gauc"]), format_number(overall["logloss"]),
            format_number(overall["calibration"], 3), format_number(gap),
            format_number(model.get("trainable_params")),
            format_number(model.get("train_seconds"), 1),
            format_number(model.get("examples_per_second"), 0)]) + " |")
    return "\n".join(lines)


def _in_bucket_order(buckets: dict[str, Any]) -> dict[str, Any]:
    """Buckets ("0-1d", "11+", ...) by their lower bound: metrics.json sorts keys as text."""
    return dict(sorted(buckets.items(),
                       key=lambda item: float(re.match(r"[\d.]+", item[0]).group())))


def history_table(metrics: dict[str, Any]) -> str:
    shares = _in_bucket_order(metrics["eval_share_by_history_length"])
    lines = ["| model | " + " | ".join(f"{bucket} clicks" for bucket in shares) + " |",
             "|---|" + "---|" * len(shares),
             "| share of eval | " + " | ".join(f"{share:.1%}" for share in shares.values()) + " |"]
    rows = list(metrics["models"].items())
    if "oracle" in metrics:
        rows.append(("oracle", metrics["oracle"]))
    for name, model in rows:
        by_length = _in_bucket_order(model["click_auc_by_history_length"])
        lines.append(f"| {name} | " + " | ".join(format_number(auc) for auc in by_length.values())
                     + " |")
    return "\n".join(lines)


def markdown_report(metrics: dict[str, Any]) -> str:
    parts = ["# PPM-TF evaluation", "", "Eval split; *cold* = items with no impression before "
             "the recent window (see `features.is_cold_item`).", "", results_table(metrics)]
    if "base" in metrics["models"] and "urm" in metrics["models"]:
        base, urm = metrics["models"]["base"], metrics["models"]["urm"]
        gains = {name: _or_nan(urm[name]["click_auc"]) - _or_nan(base[name]["click_auc"])
                 for name in SLICES}
        parts += ["", "URM over base, click AUC: " + ", ".join(
            f"{name} {gain:+.4f}" for name, gain in gains.items())]
    if "iteration_efficiency" in metrics:
        efficiency = metrics["iteration_efficiency"]
        parts += ["", "## Iteration efficiency", "",
                  "| model | data | click AUC | train s | train examples |", "|---|---|---|---|---|"]
        for name, data in (("urm", "recent window"), ("base_long", "long span")):
            row = efficiency[name]
            parts.append(f"| {name} | {data} | {format_number(row['click_auc'])} | "
                         f"{format_number(row['train_seconds'], 1)} | "
                         f"{format_number(row['train_examples'])} |")
    if "ppm_full" in metrics:
        full = metrics["ppm_full"]
        parts += ["", f"Full PPM (pre-training): {full['trainable_params']:,} trainable parameters "
                  f"({full['user_tower_params']:,} in the cached user tower, "
                  f"{full['head_params']:,} in the plug-in head that URM trains and serves)."]
    if "eval_share_by_history_length" in metrics:
        parts += ["", "## Click AUC by history length", "",
                  "Clicks in the user's behaviour sequence at the impression: what the models "
                  "can read of a user's taste.", "", history_table(metrics)]
    parts += ["", f"![AUC by item age]({AGE_PLOT})", "", f"![Click AUC by slice]({SLICE_PLOT})", ""]
    return "\n".join(parts)


def _or_nan(value) -> float:
    """An undefined metric (null in metrics.json) as NaN, which plots and sums skip."""
    return math.nan if value is None else value


def plot_auc_by_item_age(metrics: dict[str, Any], path: str) -> None:
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    rows = dict(metrics["models"])
    if "oracle" in metrics:
        rows["oracle"] = metrics["oracle"]
    for name, model in rows.items():
        buckets = _in_bucket_order(model["click_auc_by_item_age"])
        axes.plot(list(buckets), [_or_nan(auc) for auc in buckets.values()], marker="o",
                  label=name, linestyle="--" if name == "oracle" else "-")
    axes.set_xlabel("item age at impression (days since launch)")
    axes.set_ylabel("click AUC")
    axes.set_title("Click AUC by item age")
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)


def plot_auc_by_slice(metrics: dict[str, Any], path: str) -> None:
    rows = dict(metrics["models"])
    if "oracle" in metrics:
        rows["oracle"] = metrics["oracle"]
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    width = 0.8 / len(rows)
    for index, (name, model) in enumerate(rows.items()):
        positions = [slot + index * width for slot in range(len(SLICES))]
        axes.bar(positions, [_or_nan(model[slice_name]["click_auc"]) for slice_name in SLICES],
                 width, label=name)
    axes.set_xticks([slot + 0.4 - width / 2 for slot in range(len(SLICES))], SLICES)
    axes.set_ylim(0.5, 1.0)
    axes.set_ylabel("click AUC")
    axes.legend(ncol=3, fontsize=8)
    _save(figure, path)


def _save(figure, path: str) -> None:
    """PNG through tf.io.gfile, so reports can live on gs:// too."""
    import tensorflow as tf

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_report(metrics: dict[str, Any], eval_dir: str) -> str:
    """Writes report.md and the plots into ``eval_dir``; returns the report's path."""
    import tensorflow as tf

    plot_auc_by_item_age(metrics, f"{eval_dir}/{AGE_PLOT}")
    plot_auc_by_slice(metrics, f"{eval_dir}/{SLICE_PLOT}")
    path = f"{eval_dir}/report.md"
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(markdown_report(metrics))
    return path
