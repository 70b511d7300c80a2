"""Run by test_distributed_training in its own process (a ParameterServerStrategy connects
the whole process to its cluster): an in-process cluster of two workers and two parameter
servers on 127.0.0.1, IDRec built with a variable partitioner, two short epochs of
``model.fit``. Prints one JSON line: the losses and where the item table's shards live."""
import json
import sys
from pathlib import Path

import numpy as np

import ppm_tf  # noqa: F401  (tf-keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import preset
from ppm_tf.models.idrec import IDRec

from loopback import free_ports

MAX_SEQ_LEN = 4
VOCABULARIES = {features.USER_ID: ["u1", "u2", "u3"], features.ITEM_ID: ["i1", "i2", "i3", "i4"],
                features.CATEGORY: ["c1", "c2"], features.BRAND: ["b1"],
                features.CONTENT_VOCABULARY: ["drama", "comedy"]}
COUNT_PRIORS = {"click_rate": 0.3, "order_rate": 0.1}


def examples(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    content = [features.join_content(["drama"]), features.join_content(["drama", "comedy"]), ""]
    counts = {name: rng.integers(0, 5, (count, features.COUNT_SIZE)).astype(np.float32)
              for name in features.COUNT_FEATURES}
    batch = {**counts, features.ITEM_CONTENT: rng.choice(content, count),
             features.HIST_CONTENT: rng.choice(content, (count, MAX_SEQ_LEN)),
             features.USER_ID: rng.choice(["u1", "u2", "u9"], count),
             features.ITEM_ID: rng.choice(["i1", "i2", "i7"], count),
             features.CATEGORY: rng.choice(["c1", "c2"], count),
             features.BRAND: rng.choice(["b1", ""], count),
             features.HIST_ITEM_IDS: rng.choice(["i1", "i3", ""], (count, MAX_SEQ_LEN)),
             features.HIST_CATEGORIES: rng.choice(["c1", ""], (count, MAX_SEQ_LEN)),
             features.CLICK: rng.integers(0, 2, count), features.ORDER: rng.integers(0, 2, count)}
    batch[features.HIST_ACTIONS] = np.where(batch[features.HIST_ITEM_IDS] == features.PADDING_ID,
                                            features.ACTION_PADDING, features.ACTION_CLICKED)
    return batch


def main(vocab_dir: Path) -> None:
    ports = free_ports(4)
    cluster = tf.train.ClusterSpec({"worker": [f"127.0.0.1:{port}" for port in ports[:2]],
                                    "ps": [f"127.0.0.1:{port}" for port in ports[2:]]})
    config = tf.compat.v1.ConfigProto()
    config.inter_op_parallelism_threads = 4  # fewer than workers + 1 deadlocks
    for job, count in (("worker", 2), ("ps", 2)):
        for index in range(count):
            tf.distribute.Server(cluster, job_name=job, task_index=index, protocol="grpc",
                                 config=config, start=True)
    strategy = tf.distribute.ParameterServerStrategy(
        tf.distribute.cluster_resolver.SimpleClusterResolver(cluster, rpc_layer="grpc"),
        variable_partitioner=tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=64, max_shards=2))
    vocabularies = {}
    for name, tokens in VOCABULARIES.items():
        path = vocab_dir / f"{name}.txt"
        path.write_text("\n".join(tokens) + "\n")
        vocabularies[name] = str(path)
    with strategy.scope():
        model = IDRec(vocabularies, 2, preset("tiny"), COUNT_PRIORS, name="base")
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), steps_per_execution=2)
    batches = tf.keras.utils.experimental.DatasetCreator(
        lambda context: tf.data.Dataset.from_tensor_slices(examples(64)).repeat().batch(16))
    history = model.fit(batches, epochs=2, steps_per_epoch=4, verbose=0)
    table = model.backbone.item.embedding.embeddings
    print(json.dumps({"losses": history.history["loss"], "table": type(table).__name__,
                      "shard_devices": [shard.device for shard in table.variables]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
