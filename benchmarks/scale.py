"""The three Beam jobs at scale on this machine, and what a Dataflow run would need.

    python benchmarks/scale.py --preset large --days 4 [--out DIR] [--vcpus-per-worker 4]

Generates a world with the preset's users, items, queries and *daily* volume over ``--days``
days instead of the preset's horizon (a measured fraction: the jobs' cost grows with events,
users and items, and users and items are kept whole), then runs, each as its own process on
the DirectRunner's single-process mode:

- ``preprocess`` (all events), ``embed-items`` (the whole catalogue), ``precompute`` (the
  recent window and eval days), timed, with their CPU time and peak RSS (``/usr/bin/time``);
- between them, untimed: ``train-encoders`` and ``pretrain`` with the ``tiny`` presets and
  one epoch (training is not a Beam job; the jobs' cost does not depend on model quality).

Prints per job: records in, wall and CPU seconds, records per CPU second, peak RSS; the
precompute's tower calls and bytes; then the full preset extrapolated linearly from records
per CPU second (preprocess: events; embed-items: items; precompute: impressions of the
cached splits), as CPU-hours and as workers x hours on Dataflow at ``--vcpus-per-worker``,
assuming a Dataflow vCPU runs the jobs' Python at this machine's per-core rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclasses.dataclass
class StageCost:
    name: str
    records: int
    wall_seconds: float
    cpu_seconds: float
    peak_gib: float

    @property
    def records_per_cpu_second(self) -> float:
        return self.records / max(self.cpu_seconds, 1e-9)


def measured(command: list[str]) -> tuple[float, float, float]:
    """(wall s, user+sys CPU s of the process tree, peak RSS GiB of its largest process)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%U %S %M",
                                 *command], cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}"
                             f"{result.stderr[-3000:]}")
        user, system, peak_kib = report.read().split()[-3:]
    return wall, float(user) + float(system), int(peak_kib) / 2**20


def ppm(*args: str) -> list[str]:
    return [sys.executable, "-m", "ppm_tf.cli", *args]


def fraction_config(preset_name: str, days: int):
    from ppm_tf.data.synthetic import preset

    full = preset(preset_name)
    train_days = max(2, round(days * full.train_days / full.num_days))
    eval_days = max(1, round(days * full.eval_days / full.num_days))
    return full, dataclasses.replace(full, num_days=days, train_days=train_days,
                                     eval_days=eval_days)


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large", choices=["tiny", "demo", "large"])
    parser.add_argument("--days", type=int, default=4, help="days generated (the fraction)")
    parser.add_argument("--out", help="keep the world and work dir here (default: temporary)")
    parser.add_argument("--vcpus-per-worker", type=int, default=4)
    args = parser.parse_args()
    from ppm_tf.data.synthetic import generate_world

    full, config = fraction_config(args.preset, args.days)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.out or scratch)
        data, work = root / "data", root / "work"
        started = time.perf_counter()
        world = generate_world(config, seed=0, out=str(data), preset_name=args.preset)
        impressions = world["sizes"]["impressions"]
        print(f"{args.preset} preset over {args.days} of its {full.num_days} days: "
              f"{full.num_users:,} users, {full.num_items:,} items, {impressions:,} "
              f"impressions (generated in {time.perf_counter() - started:.0f} s, untimed)",
              flush=True)
        costs = []
        wall, cpu, peak = measured(ppm("preprocess", "--data", str(data), "--out", str(work)))
        stats = json.loads((work / "stats.json").read_text())
        events = (sum(split["examples"] for split in stats["splits"].values())
                  + stats["dead_letter_total"])
        costs.append(StageCost("preprocess", events, wall, cpu, peak))
        subprocess.run(ppm("train-encoders", "--work", str(work), "--preset", "tiny",
                           "--epochs", "1"), cwd=REPO, check=True, capture_output=True)
        wall, cpu, peak = measured(ppm("embed-items", "--work", str(work)))
        items = json.loads((work / "item_vectors" / "metadata.json").read_text())["items"]
        costs.append(StageCost("embed-items", items, wall, cpu, peak))
        subprocess.run(ppm("pretrain", "--work", str(work), "--preset", "tiny", "--epochs",
                           "1"), cwd=REPO, check=True, capture_output=True)
        wall, cpu, peak = measured(ppm("precompute", "--work", str(work)))
        counts = json.loads((work / "cached" / "metadata.json").read_text())["counts"]
        cached = sum(split["read"] for split in counts.values())
        tower_inputs = sum(split["tower_inputs"] for split in counts.values())
        costs.append(StageCost("precompute", cached, wall, cpu, peak))
        cached_bytes = directory_bytes(work / "cached")

    print(f"\n{'job':<12} {'records':>11} {'wall s':>8} {'CPU s':>8} {'records/CPU s':>14} "
          f"{'peak RSS':>9}")
    for cost in costs:
        print(f"{cost.name:<12} {cost.records:>11,} {cost.wall_seconds:>8.0f} "
              f"{cost.cpu_seconds:>8.0f} {cost.records_per_cpu_second:>14,.0f} "
              f"{cost.peak_gib:>7.2f} G")
    print(f"precompute: {tower_inputs:,} tower calls for {cached:,} impressions "
          f"({cached / max(tower_inputs, 1):.1f} per call), {cached_bytes / 2**20:,.0f} MiB "
          "written")

    scale = full.num_days / args.days  # events and impressions grow with days
    cached_scale = (full.train_days + full.eval_days) / (config.train_days + config.eval_days)
    print(f"\nfull {args.preset} preset ({full.num_days} days, about "
          f"{impressions * scale:,.0f} impressions), extrapolated linearly:")
    for cost, factor in zip(costs, (scale, 1.0, cached_scale)):
        cpu_hours = cost.cpu_seconds * factor / 3600
        workers = max(1, math.ceil(cpu_hours / args.vcpus_per_worker))
        print(f"  {cost.name:<12} {cost.records * factor:>13,.0f} records  {cpu_hours:7.2f} "
              f"CPU-hours = {workers} worker(s) x {cpu_hours / workers / args.vcpus_per_worker:.2f}"
              f" h at {args.vcpus_per_worker} vCPUs; single local process: "
              f"{cost.wall_seconds * factor / 3600:.1f} h wall, peak "
              f"{cost.peak_gib * (factor if cost.name != 'embed-items' else 1):.1f} GiB if "
              "memory grows with records")


if __name__ == "__main__":
    main()
