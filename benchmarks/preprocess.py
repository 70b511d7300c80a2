"""Preprocessing throughput: the Beam DirectRunner with 2 worker processes vs 1, side by side.

    python benchmarks/preprocess.py [--data RAW] [--preset demo]

Without --data it generates the preset's synthetic world first (not timed). Prints events/s
for each worker count, their ratio, wall-clock time, and the peak resident memory of the
largest process. Target: the demo world (>= 1M impressions) in under 10 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ppm_tf.work_layout import WorkLayout, read_json  # noqa: E402


def run_preprocess(data: str, work: str, workers: int) -> tuple[float, dict]:
    command = [sys.executable, "-m", "beam_jobs.preprocess", "--data", data, "--out", work,
               "--runner", "DirectRunner", "--direct_running_mode", "multi_processing",
               f"--direct_num_workers={workers}", "--default_sdk_harness_log_level=WARNING"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    layout = WorkLayout(work)
    return seconds, read_json(layout.stats_json, layout.command("preprocess"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="raw data directory (default: generate --preset)")
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            from ppm_tf.data.synthetic import generate_world, preset
            data = os.path.join(scratch, "raw")
            generate_world(preset(args.preset), seed=0, out=data, preset_name=args.preset)
        results = {}
        for workers in (2, 1):
            seconds, stats = run_preprocess(data, os.path.join(scratch, f"work{workers}"), workers)
            events = sum(split["examples"] for split in stats["splits"].values())
            events += stats["dead_letter_total"]
            results[workers] = (seconds, events)
            print(f"{workers} worker(s): {events:,} events in {seconds:.1f} s = "
                  f"{events / seconds:,.0f} events/s", flush=True)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    ratio = (results[2][1] / results[2][0]) / (results[1][1] / results[1][0])
    print(f"2 workers / 1 worker throughput: {ratio:.2f}x")
    print(f"peak resident memory of the largest process: {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
