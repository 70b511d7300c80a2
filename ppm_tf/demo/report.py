"""The demo's results: the table it prints and a self-contained HTML report.

Both read the summary dict ``ppm demo`` writes to OUT/metrics.json, so the report can be
regenerated from a run folder alone: ``python -m ppm_tf.demo.report OUT``.
"""
from __future__ import annotations

import base64
import html
import json
import os
import sys

from ppm_tf.ab.table import ab_table_lines
from ppm_tf.evaluation import SLICES
from ppm_tf.evaluation.report import (AGE_PLOT, SLICE_PLOT, format_number, history_table,
                                      results_table)

def results_lines(summary: dict) -> list[str]:
    lines = ["", "Click AUC on the eval days (cold = no impression before the recent window)",
             f"{'model':<10}{'overall':>9}{'cold':>9}{'warm':>9}{'order AUC':>11}"
             f"{'params':>11}{'train s':>9}"]
    rows = list(summary["models"].items())
    if "oracle" in summary:
        rows.append(("oracle", summary["oracle"]))
    for name, model in rows:
        params = model.get("trainable_params")
        lines.append(
            f"{name:<10}"
            + "".join(f"{format_number(model[slice_]['click_auc']):>9}" for slice_ in SLICES)
            + f"{format_number(model['overall']['order_auc']):>11}"
            + f"{(f'{params:,}' if params else '–'):>11}"
            + f"{format_number(model.get('train_seconds'), 1):>9}")
    efficiency = summary.get("iteration_efficiency")
    if efficiency:
        lines += ["", "Iteration efficiency: urm on the recent window vs base on the long span",
                  *(f"  {name:<10} click AUC {format_number(row['click_auc'])}  "
                    f"{row['train_seconds']:.1f} s on {row['train_examples']:,} examples"
                    for name, row in efficiency.items())]
    serving = summary.get("serving") or {}
    if serving.get("latency_ms"):
        lines += ["", "Serving one user's candidates through the local server (ms)",
                  *(f"  {name:<28} p50 {row['p50']:.2f}  p99 {row['p99']:.2f}"
                    for name, row in serving["latency_ms"].items())]
    if summary.get("ab"):
        lines += ["", *ab_table_lines(summary["ab"])]
    return lines


def print_results(summary: dict) -> None:
    print("\n".join(results_lines(summary)))


def _image_tag(path: str, alt: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _markdown_table_to_html(table: str) -> str:
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.strip()]
    header, body = rows[0], rows[2:]
    cells = "".join(f"<th>{html.escape(cell.strip())}</th>" for cell in header)
    out = [f"<table><thead><tr>{cells}</tr></thead><tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(cell.strip())}</td>" for cell in row)
                   + "</tr>")
    return "".join(out) + "</tbody></table>"


def write_html_report(summary: dict, eval_dir: str, path: str) -> str:
    """A single HTML file: the results table, the text summary and the plots inlined."""
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>PPM-TF demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}pre{background:#f7f7f7;padding:1em}</style>",
        "</head><body><h1>PPM-TF demo</h1>",
        f"<p>preset <b>{html.escape(str(summary.get('preset')))}</b>, seed "
        f"{summary.get('seed')}, wall clock {summary.get('wall_clock_seconds', 0) / 60:.1f} "
        "min</p>",
        "<h2>Results</h2>", _markdown_table_to_html(results_table(summary)),
        "<pre>" + html.escape("\n".join(results_lines(summary))) + "</pre>",
        *(["<h2>Click AUC by history length</h2>",
           _markdown_table_to_html(history_table(summary))]
          if "eval_share_by_history_length" in summary else []),
        "<h2>Plots</h2>", _image_tag(os.path.join(eval_dir, AGE_PLOT), "AUC by item age"),
        _image_tag(os.path.join(eval_dir, SLICE_PLOT), "Click AUC by slice"),
        "<h2>Stages</h2><pre>" + html.escape("\n".join(
            f"{name:<18} {seconds:8.1f} s" for name, seconds in
            summary.get("stage_seconds", {}).items())) + "</pre>",
        "</body></html>"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(page))
    return path


def main(out: str) -> None:
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    print_results(summary)
    print(write_html_report(summary, os.path.join(out, "work", "eval"),
                            os.path.join(out, "report.html")))


if __name__ == "__main__":
    main(sys.argv[1])
