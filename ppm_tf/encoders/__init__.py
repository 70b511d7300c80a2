"""PPM's Modal Encoder (ME) layer: the text and image encoders whose frozen outputs are
cached per item (DESIGN.md §3; docs/encoders.md).

- ``presets``: named sizes (``tiny``, ``demo``, ``paper``) and training settings, as data.
- ``tokenizer`` / ``text``: WordPiece tokenisation in-graph and the BERT-style encoder.
- ``query_matching``: the paper's QM task (in-batch InfoNCE over query -> clicked title).
- ``image``: image decoding with a fallback, the ResNet encoder and entity prediction (EP).
- ``data``: the two tasks' tf.data inputs from a work directory, and the EP hold-out.
- ``evaluation``: held-out metrics (Recall@10/MRR vs TF-IDF, popularity and random; EP
  F1/AUC vs the label prior).
- ``pretrained``: loading local BERT checkpoints and ImageNet ResNet weights.
- ``export``: the frozen SavedModels that the embed-items job (``caching.item_vectors``) runs.
- ``fitting``: the optimizer and learning-rate schedule both fine-tunings share.
- ``text_training``, ``image_training``: fine-tune, evaluate and export one encoder each.
- ``training``: ``train_encoders(work, preset, seed)``, the stage entry point over both.
"""
