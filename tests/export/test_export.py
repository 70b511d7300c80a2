"""``ppm export`` on a real tiny pipeline run: signatures, fresh-process round trip, core ops
only, atomic publication, and the --min-auc gate."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from ppm_tf import features
from ppm_tf.export import ExportRefused, export_model
from ppm_tf.export.requests import logged_request
from ppm_tf.serving.client import candidate_rows

pytestmark = pytest.mark.slow
EXPORT_CHECK = Path(ppm_tf.__file__).parent / "export" / "fresh_process_check.py"


@pytest.fixture(scope="module")
def work(tiny_demo_run):
    return str(tiny_demo_run[0] / "work")


@pytest.fixture(scope="module")
def data(tiny_demo_run):
    return str(tiny_demo_run[0] / "data")


@pytest.fixture(scope="module")
def exported_urm(work, tmp_path_factory):
    base_path = tmp_path_factory.mktemp("saved_models") / "urm"
    return export_model(work, "urm", str(base_path)), base_path


def test_urm_has_the_serving_signatures_and_a_warmup_file(exported_urm):
    result, base_path = exported_urm
    assert result["version"] == 1 and Path(result["path"]) == base_path / "1"
    signatures = tf.saved_model.load(result["path"]).signatures
    assert set(signatures) == {"serving_default", "serving_with_item_counts",
                               "serving_with_item_vectors", "user_states",
                               "predict_examples"}
    assert (base_path / "1" / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0


def test_the_export_leaves_out_keras_per_layer_traces(exported_urm):
    """Only signatures are called; Keras' traces of each layer's call (functions named
    ``*_layer_call_fn`` and ``*_call_and_return_conditional_losses``) are not saved."""
    result, _ = exported_urm
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(result["path"]) / "saved_model.pb").read_bytes())
    names = [function.signature.name for meta_graph in saved_model.meta_graphs
             for function in meta_graph.graph_def.library.function]
    assert names
    assert not [name for name in names
                if "layer_call_fn" in name or "call_and_return_conditional_losses" in name]


def _score_in_fresh_process(saved_model: str, request: dict, tmp_path: Path) -> np.ndarray:
    np.savez(tmp_path / "request.npz", **{  # bytes as fixed-width strings: no pickling
        name: value.astype(np.bytes_) if value.dtype == object else value
        for name, value in request.items()})
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "request = dict(np.load(sys.argv[2]))\n"
        "model = tf.saved_model.load(sys.argv[1])\n"
        "names = ('hist_item_ids', 'hist_ts', 'hist_actions', 'ts')\n"
        "states = model.signatures['user_states'](**{n: tf.constant(request[n]) for n in names})\n"
        "scores = model.signatures['serving_default'](\n"
        "    **{n: tf.constant(v) for n, v in request.items()}, **states)\n"
        "np.save(sys.argv[3], scores['click_prob'].numpy())\n")
    subprocess.run([sys.executable, "-c", script, saved_model, str(tmp_path / "request.npz"),
                    str(tmp_path / "scores.npy")], check=True, capture_output=True, timeout=600)
    return np.load(tmp_path / "scores.npy")


def test_a_fresh_process_scores_what_this_one_does(exported_urm, work, data, tmp_path):
    result, _ = exported_urm
    request = logged_request(data, work, candidates=20)
    model = tf.saved_model.load(result["path"]).signatures
    states = model["user_states"](**{name: tf.constant(request.user[name])
                                     for name in features.USER_STATE_INPUTS})
    rows = candidate_rows({**request.user, **{name: value.numpy() for name, value
                                              in states.items()}},
                          {features.ITEM_ID: request.item_ids})
    here = model["serving_default"](**{name: tf.constant(value) for name, value in
                                       rows.items()})["click_prob"].numpy()
    in_fresh_process = _score_in_fresh_process(
        result["path"], {**request.user, features.ITEM_ID: request.item_ids}, tmp_path)
    np.testing.assert_allclose(in_fresh_process, here, rtol=1e-5)
    assert here.shape == (20,) and ((here > 0) & (here < 1)).all()


def test_one_user_level_row_scores_like_one_row_per_candidate(exported_urm, work, data):
    """The graph also broadcasts a user-level row of size 1 (for in-process callers and
    servers without batching); it scores what the documented, repeated form scores."""
    result, _ = exported_urm
    request = logged_request(data, work, candidates=8)
    model = tf.saved_model.load(result["path"]).signatures
    states = {name: value.numpy() for name, value in model["user_states"](
        **{name: tf.constant(request.user[name]) for name in features.USER_STATE_INPUTS}).items()}
    broadcast = model["serving_default"](
        **{name: tf.constant(value) for name, value in {**request.user, **states}.items()},
        item_id=tf.constant(request.item_ids))["click_prob"].numpy()
    repeated = candidate_rows({**request.user, **states}, {features.ITEM_ID: request.item_ids})
    per_row = model["serving_default"](**{n: tf.constant(v) for n, v in repeated.items()})
    np.testing.assert_allclose(per_row["click_prob"].numpy(), broadcast, rtol=1e-6)


def _unregistered_ops(saved_model_dir: str) -> list[str]:
    # Loaded by path: putting ppm_tf/export on sys.path would shadow `requests`.
    script = ("import importlib.util, json, sys\n"
              "spec = importlib.util.spec_from_file_location('check', sys.argv[2])\n"
              "check = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(check)\n"
              "op_types = check.op_types\n"
              "from tensorflow.python.framework import op_def_registry\n"
              "print(json.dumps(sorted(op for op in op_types(sys.argv[1]) "
              "if op_def_registry.get(op) is None)))\n")
    output = subprocess.run([sys.executable, "-c", script, saved_model_dir,
                             str(EXPORT_CHECK)], check=True, capture_output=True,
                            text=True, timeout=600).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_the_serving_graph_uses_only_core_tensorflow_ops(exported_urm, work):
    result, _ = exported_urm
    assert _unregistered_ops(result["path"]) == []
    # The check can fail: the text encoder tokenises with tensorflow-text's custom ops.
    assert _unregistered_ops(os.path.join(work, "encoders", "text"))


def test_a_model_below_min_auc_is_not_published(work, tmp_path):
    base_path = tmp_path / "base"
    with pytest.raises(ExportRefused, match="below --min-auc 0.999"):
        export_model(work, "base", str(base_path), min_auc=0.999)
    assert not base_path.exists() or os.listdir(base_path) == []


def test_a_poller_never_sees_a_partial_version(work, tmp_path):
    base_path = tmp_path / "base"
    seen_partial, done = [], threading.Event()

    def poll():
        while not done.is_set():
            for name in os.listdir(base_path) if base_path.exists() else []:
                version = base_path / name
                if name.isdigit() and not ((version / "saved_model.pb").is_file()
                                           and (version / "variables" / "variables.index").is_file()):
                    seen_partial.append(name)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = export_model(work, "base", str(base_path))
    finally:
        done.set()
        poller.join()
    assert seen_partial == [] and sorted(os.listdir(base_path)) == [str(result["version"])]
