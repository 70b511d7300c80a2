"""What a small gRPC request that claims a huge tensor costs the server, with the claimed-size
limit (``--max_unknown_dim_size``, default 4096) and without it (as TF Serving decodes).

    python benchmarks/request_amplification.py --out RUN [--model base] [--requests 5]

RUN is a finished ``ppm demo`` run folder. For each setting a fresh process starts the local
server on 127.0.0.1 with RUN's exported model and sends, over gRPC, a one-candidate request
built from the logged eval data in which ``item_id`` claims a shape its one value is padded
out to: [100000], then [10^12]. Prints the request's bytes, the status codes, the time per
request and the server process's resident memory before, after and at its peak.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

import ppm_tf  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from ppm_tf import features  # noqa: E402
from ppm_tf.export.requests import logged_request  # noqa: E402
from ppm_tf.serving.client import candidate_rows, predict_message  # noqa: E402
from ppm_tf.serving.testing import running_server  # noqa: E402
from ppm_tf.work_layout import RunLayout  # noqa: E402

CLAIMS = ([100_000], [10 ** 12])
SETTINGS = {"limit 4096 (default)": 4096, "no limit (TF Serving)": 2 ** 62}


def memory_mib() -> dict[str, float]:
    """This process's resident memory now and at its peak (``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def claimed_request(model: str, inputs: dict, shape: list[int]):
    """``inputs`` as a PredictRequest whose ``item_id`` holds one value and claims ``shape``."""
    request = predict_message(model, inputs)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    proto.string_val.append(bytes(inputs[features.ITEM_ID][0]))
    request.inputs[features.ITEM_ID].CopyFrom(proto)
    return request


def measure(run: str, model: str, requests: int, limit: int) -> dict:
    """Runs in the child process: the server in-process, the claims sent to it."""
    folder = RunLayout(run)
    logged = logged_request(folder.data, folder.work.root, 1)
    inputs = candidate_rows(logged.user, {features.ITEM_ID: logged.item_ids})
    with running_server(model_name=model, model_base_path=os.path.join(folder.saved_models, model),
                        max_unknown_dim_size=limit) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(predict_message(model, inputs), timeout=60)  # first-run costs
            before = memory_mib()
            results = []
            for shape in CLAIMS:
                request = claimed_request(model, inputs, shape)
                codes, started = [], time.perf_counter()
                for _ in range(requests):
                    try:
                        stub.Predict(request, timeout=120)
                        codes.append("OK")
                    except grpc.RpcError as error:
                        codes.append(error.code().name)
                results.append({"shape": shape, "bytes": request.ByteSize(), "codes": codes,
                                "seconds": (time.perf_counter() - started) / requests,
                                "memory": memory_mib()})
    return {"before": before, "claims": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a finished `ppm demo` run folder")
    parser.add_argument("--model", default="base", help="an exported model of the run")
    parser.add_argument("--requests", type=int, default=5, help="requests per claimed shape")
    parser.add_argument("--child-limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_limit is not None:
        print(json.dumps(measure(args.out, args.model, args.requests, args.child_limit)))
        return
    print(f"{args.model}: one candidate, item_id claiming a shape, {args.requests} gRPC "
          "requests per shape; server RSS in MiB (peak = the process's high-water mark)")
    print(f"{'setting':<24}{'claimed shape':<16}{'bytes':>7}  {'status':<22}{'s/request':>10}"
          f"{'RSS before':>12}{'RSS after':>11}{'peak':>9}")
    for setting, limit in SETTINGS.items():
        child = subprocess.run([sys.executable, __file__, "--out", args.out, "--model",
                                args.model, "--requests", str(args.requests),
                                "--child-limit", str(limit)],
                               capture_output=True, text=True, check=True)
        report = json.loads(child.stdout.strip().splitlines()[-1])
        for claim in report["claims"]:
            codes = ", ".join(sorted({f"{claim['codes'].count(code)}x {code}"
                                      for code in claim["codes"]}))
            print(f"{setting:<24}{str(claim['shape']):<16}{claim['bytes']:>7,}  {codes:<22}"
                  f"{claim['seconds']:>10.3f}{report['before']['VmRSS']:>12,.0f}"
                  f"{claim['memory']['VmRSS']:>11,.0f}{claim['memory']['VmHWM']:>9,.0f}")


if __name__ == "__main__":
    main()
