"""What each demo stage cost: its time, what it processed, and its throughput.

A record per stage, ``{"seconds", "count", "unit", "per_second", "cpu_seconds", "cores"}``
(e.g. preprocess: 1,075,380 events in 183 s, 5,877 events/s, 1.1 cores busy), with
``"beside": true`` for a stage that ran in the side process, in parallel with the main one;
kept in metrics.json under ``stages`` as a list in run order; the line the demo prints; and the
report's bar chart of stage times. The CPU time says what a stage leaves idle, and its total
over all stages the least wall time any schedule of them could take on the machine's cores.
Everything here reads the summary dict only, so the chart can be redrawn from a run folder.
"""
from __future__ import annotations

import io
import os
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

STAGES = "stages"
CPU_CORES = "cpu_cores"  # the summary's count of the run machine's cores
BESIDE = "beside"  # the record's stage ran in the side process: its time overlaps others'
LEGACY_STAGE_SECONDS = "stage_seconds"  # metrics.json of runs before throughputs were kept


def cpu_seconds() -> float:
    """CPU time so far of this process (every thread) and of its finished child processes
    (a stage's local servers): a stage's cost is the difference over the stage."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def stage_record(seconds: float, count: int, unit: str,
                 cpu: float | None = None) -> dict[str, Any]:
    """One stage's cost: ``count`` ``unit`` (e.g. events) in ``seconds``, using ``cpu``
    seconds of CPU time (None: not measured)."""
    if count < 0:
        raise ValueError(f"a stage's count of {unit} must be >= 0, got {count}")
    record = {"seconds": seconds, "count": int(count), "unit": unit,
              "per_second": count / max(seconds, 1e-9)}
    if cpu is not None:
        record.update(cpu_seconds=cpu, cores=cpu / max(seconds, 1e-9))
    return record


def rate(per_second: float) -> str:
    """A throughput as people read it: ``5,877``, ``42.4``."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.1f}"


def stage_line(name: str, record: dict[str, Any]) -> str:
    """``[preprocess] done in 183.2 s, 5,877 events/s (1,075,380 events), 1.1 cores busy``."""
    line = (f"[{name}] done in {record['seconds']:.1f} s, {rate(record['per_second'])} "
            f"{record['unit']}/s ({record['count']:,} {record['unit']})")
    if "cores" in record:
        line += f", {record['cores']:.1f} cores busy"
    return line


def stage_rows(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as metrics.json keeps them: a list, so run order survives its sorted
    keys."""
    return [{"stage": name, **record} for name, record in records.items()]


def stage_records(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary's stage records by name, in run order (an older summary: times only)."""
    if STAGES in summary:
        return {row["stage"]: {key: value for key, value in row.items() if key != "stage"}
                for row in summary[STAGES]}
    return {name: {"seconds": seconds} for name, seconds in
            summary.get(LEGACY_STAGE_SECONDS, {}).items()}


def stage_table_lines(records: dict[str, dict[str, Any]], cores: int | None = None) -> list[str]:
    """The report's table of stages: seconds, share of the total, cores busy, throughput; and
    with the run machine's ``cores``, the least wall time the stages' CPU time allows."""
    total = _in_sequence(records) or 1.0
    lines = [f"{'stage':<18} {'seconds':>9} {'share':>6} {'cores':>5}  throughput"]
    for name, record in records.items():
        throughput = (f"{rate(record['per_second']):>9} {record['unit']}/s ({record['count']:,})"
                      if "per_second" in record else "")
        share = "beside" if record.get(BESIDE) else f"{record['seconds'] / total:6.1%}"
        busy = f"{record['cores']:.1f}" if "cores" in record else ""
        lines.append(f"{name:<18} {record['seconds']:9.1f} {share:>6} {busy:>5}  {throughput}")
    if any(record.get(BESIDE) for record in records.values()):
        lines.append("(beside: in a second process, in parallel with the main process's "
                     "stages; shares are of the main process's time)")
    bound = cpu_bound_line(records, cores) if cores else ""
    if bound:
        lines.append(bound)
    return lines


def cpu_bound_line(records: dict[str, dict[str, Any]], cores: int) -> str:
    """The stages' CPU time in all, and the least wall time it allows on ``cores`` cores:
    no overlap of stages can finish sooner, only less work can. "" for records without CPU
    times."""
    if not records or not all("cpu_seconds" in record for record in records.values()):
        return ""
    total = sum(record["cpu_seconds"] for record in records.values())
    return (f"CPU time of all stages {total:,.0f} s: on {cores} core{'s' * (cores > 1)} no "
            f"schedule of them takes under {total / cores / 60:.1f} min")


def _in_sequence(records: dict[str, dict[str, Any]]) -> float:
    """Seconds of the stages that ran one after another (the side process's overlap them)."""
    return sum(record["seconds"] for record in records.values() if not record.get(BESIDE))


def stage_figure(records: dict[str, dict[str, Any]]) -> Figure:
    """Horizontal bars of the stage times, the first stage on top, each bar labelled with its
    seconds and throughput; the side process's stages in another colour."""
    names = list(records)
    seconds = [records[name]["seconds"] for name in names]
    figure = Figure(figsize=(9, 0.35 * len(names) + 1.2), layout="constrained")
    axes = figure.subplots()
    positions = list(range(len(names)))
    axes.barh(positions, seconds,
              color=["C1" if records[name].get(BESIDE) else "C0" for name in names])
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    for position, name in zip(positions, names):
        record = records[name]
        label = f" {record['seconds']:.1f} s"
        if "per_second" in record:
            label += f", {rate(record['per_second'])} {record['unit']}/s"
        axes.text(record["seconds"], position, label, va="center", fontsize=8)
    axes.set_xlim(0, max(seconds, default=1.0) * 1.45)
    axes.set_xlabel("seconds")
    title = f"Stage times ({_in_sequence(records) / 60:.1f} min in sequence"
    if any(record.get(BESIDE) for record in records.values()):
        title += "; orange: in a second process beside them"
    axes.set_title(title + ")")
    axes.grid(axis="x", alpha=0.3)
    return figure


def stage_chart_png(records: dict[str, dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    stage_figure(records).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
