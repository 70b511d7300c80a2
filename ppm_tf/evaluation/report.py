"""Renders WORK/eval/metrics.json as the paper-style tables (Markdown) and PNG plots, every
figure with its 95% interval (bootstrap over users) where metrics.json has one.

Everything here reads metrics.json only, so a report can be regenerated from a run folder.
"""
from __future__ import annotations

import io
import math
import re
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

from ppm_tf.evaluation import (BASE, BOOTSTRAP, DIFFERENCE, EVAL_SLICES, INTERVAL, INTERVALS,
                               ORACLE, SLICE_LABELS, SLICE_METRICS, VS_BASE)

AGE_PLOT = "auc_by_item_age.png"
SLICE_PLOT = "click_auc_by_slice.png"
DIFFERENCE_PLOT = "click_auc_difference_to_base.png"
PLOTS = {AGE_PLOT: "Click AUC by item age", SLICE_PLOT: "Click AUC by slice",
         DIFFERENCE_PLOT: "Click AUC minus base's, by slice"}
RANKING_METRICS = ("click_gauc", "click_request_gauc", "order_auc", "logloss", "calibration")


def format_number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def with_interval(value, interval, signed: bool = False) -> str:
    """``0.6158 [0.6101, 0.6215]``; the value alone where there is no interval."""
    sign = "+" if signed else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:{sign}.4f}"
    if interval:
        text += f" [{interval[0]:{sign}.4f}, {interval[1]:{sign}.4f}]"
    return text


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, metrics) of every model, then the oracle when there is one."""
    rows = list(metrics["models"].items())
    if ORACLE in metrics:
        rows.append((ORACLE, metrics[ORACLE]))
    return rows


def reported_slices(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The slices metrics.json holds (runs before the cold split hold three)."""
    first = next(iter(metrics["models"].values()))
    return tuple(name for name in EVAL_SLICES if name in first)


def _interval(model: dict[str, Any], slice_name: str, metric: str):
    return model.get(INTERVALS, {}).get(slice_name, {}).get(metric)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def results_table(metrics: dict[str, Any]) -> str:
    """Click AUC of every model (and the oracle) per slice, with its 95% interval."""
    slices = reported_slices(metrics)
    return _markdown_table(
        ["model", *(SLICE_LABELS[name] for name in slices)],
        [[name, *(with_interval(model[piece]["click_auc"], _interval(model, piece, "click_auc"))
                  for piece in slices)] for name, model in table_rows(metrics)])


def difference_table(metrics: dict[str, Any]) -> str:
    """Every model's click AUC and per-request GAUC minus base's, paired over the same
    resampled users, with the 95% interval of the difference."""
    slices = reported_slices(metrics)
    rows = []
    for name, model in table_rows(metrics):
        if VS_BASE not in model:
            continue
        differences = model[VS_BASE]
        rows.append([name, *(with_interval(differences[piece]["click_auc"][DIFFERENCE],
                                           differences[piece]["click_auc"][INTERVAL], True)
                             for piece in slices),
                     with_interval(differences["overall"]["click_request_gauc"][DIFFERENCE],
                                   differences["overall"]["click_request_gauc"][INTERVAL], True)])
    return _markdown_table(["model − base", *(SLICE_LABELS[name] for name in slices),
                            "GAUC per request, overall"], rows)


def ranking_table(metrics: dict[str, Any]) -> str:
    """Ranking within users and within requests, order AUC, log loss and calibration
    (overall), with their intervals; the gap to the oracle's click AUC."""
    rows = []
    for name, model in table_rows(metrics):
        gap = model.get("gap_to_oracle", {}).get("overall")
        rows.append([name, *(with_interval(model["overall"].get(metric),
                                           _interval(model, "overall", metric))
                             for metric in RANKING_METRICS), format_number(gap)])
    return _markdown_table(["model", *(SLICE_METRICS[metric] for metric in RANKING_METRICS),
                            "gap to oracle"], rows)


def cost_table(metrics: dict[str, Any]) -> str:
    return _markdown_table(
        ["model", "trainable params", "train s", "examples/s"],
        [[name, format_number(model.get("trainable_params")),
          format_number(model.get("train_seconds"), 1),
          format_number(model.get("examples_per_second"), 0)]
         for name, model in metrics["models"].items()])


def _in_bucket_order(buckets: dict[str, Any]) -> dict[str, Any]:
    """Buckets ("0-1d", "11+", ...) by their lower bound: metrics.json sorts keys as text."""
    return dict(sorted(buckets.items(),
                       key=lambda item: float(re.match(r"[\d.]+", item[0]).group())))


def history_table(metrics: dict[str, Any]) -> str:
    shares = _in_bucket_order(metrics["eval_share_by_history_length"])
    lines = ["| model | " + " | ".join(f"{bucket} clicks" for bucket in shares) + " |",
             "|---|" + "---|" * len(shares),
             "| share of eval | " + " | ".join(f"{share:.1%}" for share in shares.values()) + " |"]
    for name, model in table_rows(metrics):
        by_length = _in_bucket_order(model["click_auc_by_history_length"])
        lines.append(f"| {name} | " + " | ".join(format_number(auc) for auc in by_length.values())
                     + " |")
    return "\n".join(lines)


def intervals_note(metrics: dict[str, Any]) -> str:
    drawn = metrics.get(BOOTSTRAP)
    if not drawn:
        return "No intervals: these metrics predate the bootstrap; rerun `ppm evaluate`."
    return (f"Brackets: {drawn['level']:.0%} interval, percentile bootstrap over the "
            f"{drawn['users']:,} eval users ({drawn['resamples']} resamples, seed "
            f"{drawn['seed']}); differences to base are paired (both models on the same "
            "resampled users).")


def summary_tables(metrics: dict[str, Any]) -> str:
    """The tables ``ppm evaluate`` prints: AUC per slice, differences to base, ranking."""
    parts = [intervals_note(metrics), "", "Click AUC by slice:", results_table(metrics)]
    if has_differences(metrics):
        parts += ["", f"Click AUC (and per-request GAUC) minus {BASE}'s:",
                  difference_table(metrics)]
    return "\n".join(parts + ["", "Overall:", ranking_table(metrics)])


SLICES_NOTE = ("Eval split. *cold*: items with no impression before the recent window "
               "(`features.is_cold_item`), split into *new in window* (first shown in the "
               "recent window, so ID models trained on it have seen them) and *unseen before "
               "eval* (first shown on the eval days). Per-user GAUC over the eval days also "
               "rewards telling a user's later, longer-history impressions from earlier ones; "
               "per-request GAUC ranks what a ranker ranks: one request's candidates.")


def markdown_report(metrics: dict[str, Any]) -> str:
    parts = ["# PPM-TF evaluation", "", SLICES_NOTE, "", intervals_note(metrics), "",
             "## Click AUC by slice", "", results_table(metrics)]
    if has_differences(metrics):
        parts += ["", f"## Difference to {BASE}", "",
                  f"Click AUC (and per-request GAUC) minus {BASE}'s, paired.", "",
                  difference_table(metrics)]
    parts += ["", "## Ranking, order AUC, log loss and calibration (overall)", "",
              ranking_table(metrics), "", "## Cost", "", cost_table(metrics)]
    if "iteration_efficiency" in metrics:
        efficiency = metrics["iteration_efficiency"]
        parts += ["", "## Iteration efficiency", "", _markdown_table(
            ["model", "data", "click AUC", "train s", "train examples"],
            [[name, data, format_number(efficiency[name]["click_auc"]),
              format_number(efficiency[name]["train_seconds"], 1),
              format_number(efficiency[name]["train_examples"])]
             for name, data in (("urm", "recent window"), ("base_long", "long span"))])]
    if "ppm_full" in metrics:
        full = metrics["ppm_full"]
        parts += ["", f"Full PPM (pre-training): {full['trainable_params']:,} trainable parameters "
                  f"({full['user_tower_params']:,} in the cached user tower, "
                  f"{full['head_params']:,} in the plug-in head that URM trains and serves)."]
    if "eval_share_by_history_length" in metrics:
        parts += ["", "## Click AUC by history length", "",
                  "Clicks in the user's behaviour sequence at the impression: what the models "
                  "can read of a user's taste.", "", history_table(metrics)]
    for plot in plots_of(metrics):
        parts += ["", f"![{PLOTS[plot]}]({plot})"]
    return "\n".join(parts + [""])


def has_differences(metrics: dict[str, Any]) -> bool:
    """Whether metrics.json holds differences to base (it does when base was scored)."""
    return any(VS_BASE in model for _, model in table_rows(metrics))


def plots_of(metrics: dict[str, Any]) -> list[str]:
    """The plots ``write_report`` draws for these metrics."""
    return [AGE_PLOT, SLICE_PLOT, *([DIFFERENCE_PLOT] if has_differences(metrics) else [])]


def _or_nan(value) -> float:
    """An undefined metric (null in metrics.json) as NaN, which plots and sums skip."""
    return math.nan if value is None else value


def age_figure(metrics: dict[str, Any]) -> Figure:
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, (name, model) in enumerate(table_rows(metrics)):
        buckets = _in_bucket_order(model["click_auc_by_item_age"])
        axes.plot(list(buckets), [_or_nan(auc) for auc in buckets.values()], marker="o",
                  label=name, linestyle="--" if name == ORACLE else "-", color=_colour(index))
    axes.set_xlabel("item age at impression (days since launch)")
    axes.set_ylabel("click AUC")
    axes.set_title("Click AUC by item age")
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    return figure


def _points_with_intervals(axes, series: list[tuple[str, list[float], list, str]], slices,
                           reference: float | None) -> None:
    """One marker with its interval per (series, slice), series (name, values, intervals,
    colour) side by side in each slice slot; the value axis fitted to the intervals (and
    ``reference``, drawn as a line)."""
    width = 0.8 / max(len(series), 1)
    low_all, high_all = [], []
    for index, (name, values, intervals, color) in enumerate(series):
        positions = [slot - 0.4 + width * (index + 0.5) for slot in range(len(slices))]
        lows = [_or_nan(value) - interval[0] if interval else 0.0
                for value, interval in zip(values, intervals)]
        highs = [interval[1] - _or_nan(value) if interval else 0.0
                 for value, interval in zip(values, intervals)]
        axes.errorbar(positions, [_or_nan(value) for value in values], yerr=[lows, highs],
                      fmt="o", capsize=3, markersize=4, label=name,
                      linestyle="none", color=color)
        for value, interval in zip(values, intervals):
            bounds = interval or [value, value]
            low_all += [_or_nan(bounds[0])]
            high_all += [_or_nan(bounds[1])]
    if reference is not None:
        axes.axhline(reference, color="grey", linewidth=1)
        low_all.append(reference)
        high_all.append(reference)
    finite_low = [value for value in low_all if math.isfinite(value)]
    finite_high = [value for value in high_all if math.isfinite(value)]
    if finite_low and finite_high:
        low, high = min(finite_low), max(finite_high)
        margin = max((high - low) * 0.08, 1e-3)
        axes.set_ylim(low - margin, high + margin)
    axes.set_xticks(range(len(slices)),
                    [SLICE_LABELS[name].replace(", ", "\n") for name in slices])
    axes.set_xlim(-0.5, len(slices) - 0.5)
    axes.grid(axis="y", alpha=0.3)
    _legend_outside(axes)


def _colour(row: int) -> str:
    """A model's colour, the same in every plot: by its row in the tables."""
    return f"C{row % 10}"


def _legend_outside(axes) -> None:
    """The legend right of the plot, where it hides no marker."""
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)


def slice_figure(metrics: dict[str, Any]) -> Figure:
    """Click AUC per slice with its interval, every model and the oracle."""
    slices = reported_slices(metrics)
    series = [(name, [model[piece]["click_auc"] for piece in slices],
               [_interval(model, piece, "click_auc") for piece in slices], _colour(index))
              for index, (name, model) in enumerate(table_rows(metrics))]
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.subplots()
    _points_with_intervals(axes, series, slices, reference=None)
    axes.set_ylabel("click AUC")
    axes.set_title("Click AUC by slice (95% interval, bootstrap over users)")
    return figure


def difference_figure(metrics: dict[str, Any]) -> Figure:
    """Each model's click AUC minus base's per slice, with the paired interval; 0 drawn."""
    slices = reported_slices(metrics)
    series = [(name, [model[VS_BASE][piece]["click_auc"][DIFFERENCE] for piece in slices],
               [model[VS_BASE][piece]["click_auc"][INTERVAL] for piece in slices],
               _colour(index))
              for index, (name, model) in enumerate(table_rows(metrics)) if VS_BASE in model]
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.subplots()
    _points_with_intervals(axes, series, slices, reference=0.0)
    axes.set_ylabel(f"click AUC − {BASE}'s")
    axes.set_title(f"Difference to {BASE} (paired 95% interval, bootstrap over users)")
    return figure


def _save(figure, path: str) -> None:
    """PNG through tf.io.gfile, so reports can live on gs:// too."""
    import tensorflow as tf

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_report(metrics: dict[str, Any], eval_dir: str) -> str:
    """Writes report.md and the plots into ``eval_dir``; returns the report's path."""
    import tensorflow as tf

    draw = {AGE_PLOT: age_figure, SLICE_PLOT: slice_figure, DIFFERENCE_PLOT: difference_figure}
    for plot in plots_of(metrics):
        _save(draw[plot](metrics), f"{eval_dir}/{plot}")
    path = f"{eval_dir}/report.md"
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(markdown_report(metrics))
    return path
