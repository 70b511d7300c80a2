"""PPM's Modal Encoder (ME) layer: the text and image encoders whose frozen outputs are
cached per item (docs/encoders.md).

- ``presets``: named sizes (``tiny``, ``demo``, ``paper``) and training settings, as data.
- ``tokenizer`` / ``text``: WordPiece tokenisation in-graph and the BERT-style encoder (its
  Transformer block is ``ppm_tf.transformer``'s, shared with PPM's user tower).
- ``text_objective``: which task trains the text encoder (query matching, SimCSE, frozen).
- ``query_matching``: the paper's QM task (in-batch InfoNCE over query -> clicked title), the
  same loss SimCSE uses over two dropout views of a title.
- ``image``: image decoding with a fallback, the ResNet encoder and entity prediction (EP).
- ``data``: the tasks' tf.data inputs from a work directory, and the EP hold-out.
- ``evaluation``: held-out metrics and their baselines (Recall@10/MRR vs TF-IDF, popularity
  and random; entity overlap of nearest items; EP F1/AUC vs the label prior);
  ``text_evaluation`` applies them to the text encoder, whatever trained it.
- ``bert_checkpoint``, ``resnet_weights``, ``packaged_checkpoints``: starting from local
  pre-trained weights (BERT-family checkpoints, ImageNet ResNet, the MiniLM package).
- ``export``: the frozen SavedModels that the embed-items job (``caching.item_vectors``) runs.
- ``fitting``: the optimizer and learning-rate schedule both fine-tunings share.
- ``text_training``, ``image_training``: fine-tune, evaluate and export one encoder each.
- ``training``: ``train_encoders(work, preset, seed)``, the stage entry point over both.
"""
