"""The demo's results: the table it prints and a self-contained HTML report.

Both read the summary dict ``ppm demo`` writes to OUT/metrics.json, so the report can be
regenerated from a run folder alone: ``python -m ppm_tf.demo.report OUT``.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import sys

from ppm_tf.ab.table import ab_table_lines
from ppm_tf.demo.stages import CPU_CORES, stage_chart_png, stage_records, stage_table_lines
from ppm_tf.evaluation import DIFFERENCE, INTERVAL, INTERVALS, SLICE_LABELS, SLICES, VS_BASE
from ppm_tf.evaluation.report import format_number, markdown_report, table_rows
from ppm_tf.work_layout import RunLayout


def half_width_cell(value, interval, signed: bool = False) -> str:
    """``0.6158 ±0.0057``: the value and half its 95% interval's width (the report gives
    both ends)."""
    if value is None:
        return "–"
    spread = f" ±{(interval[1] - interval[0]) / 2:.4f}" if interval else ""
    return f"{value:{'+' if signed else ''}.4f}{spread}"


def results_lines(summary: dict) -> list[str]:
    """The table ``ppm demo`` prints: click AUC per slice and the difference to base, each
    with half its 95% interval's width (bootstrap over users)."""
    lines = ["", "Click AUC on the eval days ± half the 95% interval's width (bootstrap over "
             "users; cold = no impression before the recent window)",
             f"{'model':<14}" + "".join(f"{SLICE_LABELS[name]:>16}" for name in SLICES)
             + f"{'vs base overall':>18}{'GAUC/request':>14}{'params':>10}{'train s':>9}"]
    for name, model in table_rows(summary):
        intervals = model.get(INTERVALS, {})
        cells = [half_width_cell(model[piece]["click_auc"],
                                 intervals.get(piece, {}).get("click_auc")) for piece in SLICES]
        difference = model.get(VS_BASE, {}).get("overall", {}).get("click_auc")
        gain = (half_width_cell(difference[DIFFERENCE], difference[INTERVAL], signed=True)
                if difference else "–")
        params = model.get("trainable_params")
        lines.append(f"{name:<14}" + "".join(f"{cell:>16}" for cell in cells) + f"{gain:>18}"
                     + f"{format_number(model['overall'].get('click_request_gauc')):>14}"
                     + f"{(f'{params:,}' if params else '–'):>10}"
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


def _inline(text: str) -> str:
    """The report's inline Markdown: *emphasis* and `code`."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def _cell(text: str) -> str:
    """A table cell; an interval after its value in a quieter type."""
    value, bracket, interval = _inline(text.strip()).partition(" [")
    return value + (f" <span class='interval'>[{interval}</span>" if bracket else "")


def _table_to_html(lines: list[str]) -> str:
    rows = [line.strip().strip("|").split("|") for line in lines]
    header, body = rows[0], rows[2:]
    cells = "".join(f"<th>{_inline(cell.strip())}</th>" for cell in header)
    out = [f"<div class='scroll'><table><thead><tr>{cells}</tr></thead><tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</tbody></table></div>"


def markdown_to_html(markdown: str, image_dir: str) -> str:
    """The evaluation report (``evaluation.report.markdown_report``) as HTML: headings,
    paragraphs, tables, and its plots inlined from ``image_dir``."""
    out, table = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out.append(_table_to_html(table))
            table = []
        image = re.fullmatch(r"!\[(.*)\]\((.+)\)", line)
        if image:
            out.append(_image_tag(os.path.join(image_dir, image.group(2)), image.group(1)))
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "\n".join(out)


def stages_html(records: dict, cores: int | None = None) -> str:
    """The stage times as a bar chart (inlined PNG) over their table with throughputs (and,
    with the run machine's ``cores``, the least wall time their CPU time allows)."""
    if not records:
        return ""
    chart = base64.b64encode(stage_chart_png(records)).decode("ascii")
    return ("<h2>Stages</h2>"
            f"<p><img alt='Stage times' src='data:image/png;base64,{chart}'></p>"
            "<pre>" + html.escape("\n".join(stage_table_lines(records, cores))) + "</pre>")


def write_html_report(summary: dict, eval_dir: str, path: str) -> str:
    """A single HTML file: the evaluation report (tables, intervals, plots inlined), the
    serving latencies and the stage times (a chart and their throughputs)."""
    serving = (summary.get("serving") or {}).get("latency_ms") or {}
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>PPM-TF demo</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:2em auto}"
        "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}td,th{border:1px solid "
        "#ccc;padding:4px 8px;text-align:right;white-space:nowrap}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}"
        ".interval{color:#777;font-size:0.85em}"
        "pre{background:#f7f7f7;padding:1em}img{max-width:100%}</style>",
        "</head><body><h1>PPM-TF demo</h1>",
        f"<p>preset <b>{html.escape(str(summary.get('preset')))}</b>, seed "
        f"{summary.get('seed')}, wall clock {summary.get('wall_clock_seconds', 0) / 60:.1f} "
        "min</p>",
        markdown_to_html(markdown_report(summary), eval_dir),
        *(["<h2>Serving one user's candidates through the local server (ms)</h2><pre>"
           + html.escape("\n".join(f"{name:<28} p50 {row['p50']:.2f}  p99 {row['p99']:.2f}"
                                    for name, row in serving.items())) + "</pre>"]
          if serving else []),
        *(["<h2>The online A/B test, replayed</h2><pre>"
            + html.escape("\n".join(ab_table_lines(summary["ab"]))) + "</pre>"]
          if summary.get("ab") else []),
        stages_html(stage_records(summary), summary.get(CPU_CORES)),
        "</body></html>"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(page))
    return path


def main(out: str) -> None:
    folder = RunLayout(out)
    with open(folder.metrics_json, encoding="utf-8") as handle:  # local: no TensorFlow needed
        summary = json.load(handle)
    print_results(summary)
    print(write_html_report(summary, folder.work.eval_dir, folder.report_html))


if __name__ == "__main__":
    main(sys.argv[1])
