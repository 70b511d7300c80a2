"""Item-vector table at catalogue scale: load time and peak memory for N synthetic items.

    python benchmarks/item_table.py [--items 1000000] [--dim 64] [--repeats 2]

Contenders, each in a fresh process (peak RSS is per process), alternated and repeated:

- ``files``: ``models.item_table.ItemVectorTable`` from an ids file (``StaticHashTable`` +
  ``TextFileInitializer``, in the graph) and a ``.npy`` streamed into the variable in blocks;
- ``python_lists``: the earlier form, a ``StringLookup`` over a Python list of every id and
  the whole matrix as a ``Constant`` initializer.

Prints the load time (table built and one lookup done) and the peak RSS above the process's
RSS after importing TensorFlow; the table's own size (N x dim x 4 bytes) is the floor.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
import ppm_tf  # noqa: F401  (tf-keras)
import tensorflow as tf
from ppm_tf.models.item_table import ItemVectorTable

kind, ids_path, vectors_path = sys.argv[1:4]
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if kind == "files":
    table = ItemVectorTable(ids_path, vectors_path)
    lookup = table
else:
    ids = open(ids_path).read().splitlines()
    vectors = np.load(vectors_path)
    strings = tf.keras.layers.StringLookup(vocabulary=ids, num_oov_indices=1)
    matrix = tf.Variable(tf.keras.initializers.Constant(np.concatenate(
        [np.zeros((1, vectors.shape[1]), np.float32), vectors]))(
            (len(ids) + 1, vectors.shape[1])), trainable=False)
    lookup = lambda item_ids: tf.gather(matrix, strings(item_ids))
probe = lookup(tf.constant(["item-7", "unknown"])).numpy()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": (peak - baseline) / 1024,
                  "probe_ok": bool(np.all(probe[1] == 0))}))
"""


def write_inputs(directory: Path, items: int, dim: int) -> tuple[str, str]:
    ids_path, vectors_path = directory / "item_ids.txt", directory / "vectors.npy"
    with open(ids_path, "w") as handle:
        for start in range(0, items, 100_000):
            handle.write("".join(f"item-{index}\n"
                                 for index in range(start, min(items, start + 100_000))))
    vectors = np.lib.format.open_memmap(vectors_path, "w+", np.float32, (items, dim))
    rng = np.random.default_rng(0)
    for start in range(0, items, 100_000):
        stop = min(items, start + 100_000)
        vectors[start:stop] = rng.normal(size=(stop - start, dim))
    vectors.flush()
    return str(ids_path), str(vectors_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        ids_path, vectors_path = write_inputs(Path(directory), args.items, args.dim)
        results: dict[str, list[dict]] = {"files": [], "python_lists": []}
        for _ in range(args.repeats):
            for kind in results:
                output = subprocess.run([sys.executable, "-c", CHILD, kind, ids_path,
                                         vectors_path], capture_output=True, text=True,
                                        check=True).stdout
                results[kind].append(json.loads(output.strip().splitlines()[-1]))
    table_mib = args.items * args.dim * 4 / 2**20
    print(f"item-vector table: {args.items:,} items x {args.dim} dims "
          f"({table_mib:,.0f} MiB of vectors), {args.repeats} runs each, alternated")
    for kind, runs in results.items():
        seconds = [run["seconds"] for run in runs]
        peaks = [run["peak_mib"] for run in runs]
        print(f"  {kind:<13} load {min(seconds):6.1f} s (max {max(seconds):6.1f})   "
              f"peak RSS above baseline {min(peaks):7,.0f} MiB (max {max(peaks):7,.0f})   "
              f"unknown id -> zeros: {all(run['probe_ok'] for run in runs)}")


if __name__ == "__main__":
    main()
