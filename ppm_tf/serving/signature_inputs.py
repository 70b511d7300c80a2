"""A request's inputs checked against the signature they feed, before anything is allocated.

TF Serving checks input names (``predict_util.cc``) and leaves dtypes to the session; it feeds
any shape to the graph, where a wrong one may fail deep inside or silently change the scores,
and it builds whatever shape a gRPC ``TensorProto`` claims (TensorFlow's proto decoding repeats
the last value to fill it, so a 1 KB message can claim gigabytes). The local server adds two
checks to TF Serving's, both on the *claimed* shape, before an array is built:

- shape: the rank and every known dimension of the signature's shape (its ``-1`` dimensions
  take any size), refused in TensorFlow's ``EnsureShape`` words;
- size: at most ``max_unknown_dim_size`` per unknown dimension, so an input may hold at most
  (product of the known dimensions) x ``max_unknown_dim_size`` ** (unknown dimensions)
  elements (an input of unknown rank: ``max_unknown_dim_size`` elements).

With ``--enable_batching`` it also applies TF Serving's batching rule (``batching_util.h``,
``shared_batch_scheduler.h``): every input of a batched run shares its 0th dimension, and that
size is at most ``max_batch_size``. All refusals are INVALID_ARGUMENT (HTTP 400).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from tensorflow.core.protobuf import meta_graph_pb2

from ppm_tf.serving import tensors
from ppm_tf.serving.errors import ServingError, invalid_argument

DEFAULT_MAX_BATCH_SIZE = 1000  # TensorFlow's QueueOptions.input_batch_size_limit


@dataclasses.dataclass(frozen=True)
class InputRules:
    """What a version accepts beyond TF Serving's name and dtype checks.

    ``batch_size_limit`` is ``None`` without ``--enable_batching``; with it, the batching
    parameters' ``max_batch_size`` (TensorFlow's default 1000 when the file leaves it out).
    """
    enforce_signature_shapes: bool = True
    max_unknown_dim_size: int = 4096
    batch_size_limit: int | None = None


def _join(names: Iterable[str]) -> str:
    return ",".join(sorted(names))


def shape_text(dims: Sequence[int]) -> str:
    """``[1,50]``, and ``?`` for an unknown dimension: TensorFlow's DebugString spelling."""
    return "[" + ",".join("?" if size < 0 else str(size) for size in dims) + "]"


def _signature_dims(info: meta_graph_pb2.TensorInfo) -> list[int] | None:
    """The signature's dimensions (-1: unknown), or None for an unknown rank (old SavedModels
    leave ``tensor_shape`` out, which means the same)."""
    if not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank:
        return None
    return [dim.size for dim in info.tensor_shape.dim]


def input_size_error(sent: Iterable[str], expected: Iterable[str]) -> ServingError:
    """TF Serving's refusal of a request whose input names are not the signature's."""
    sent, expected = set(sent), set(expected)
    return invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{_join(sent)}}}) != len({{{_join(expected)}}}). Sent extra: "
        f"{{{_join(sent - expected)}}}. Missing but required: {{{_join(expected - sent)}}}.")


def check_input_names(signature, sent: Iterable[str]) -> None:
    """TF Serving's name checks, in its order and words (``VerifyRequestInputsSize``, then
    ``GetInputValues``): extra or missing inputs are refused before any is decoded."""
    sent, expected = set(sent), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise input_size_error(sent, expected)
    for alias in sorted(expected - sent):
        if alias not in signature.defaults:
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not "
                f"found in request and no default value provided. Inputs expected to be in the "
                f"request {{{_join(sent)}}}, or default input alias set: "
                f"{{{_join(signature.defaults)}}}")
    if sent - expected:
        raise invalid_argument(f"Inputs contains invalid name. Used request inputs: "
                               f"{{{_join(sent & expected)}}}, request inputs: {{{_join(sent)}}}")


def check_input(signature, alias: str, dtype: int, dims: Sequence[int],
                rules: InputRules) -> None:
    """One input's dtype, shape and size against ``signature.inputs[alias]``; ``dims`` is the
    shape the request claims, so this runs before the tensor is built."""
    info = signature.inputs[alias]
    if dtype != info.dtype:
        position = sorted(signature.inputs).index(alias)
        raise invalid_argument(f"Expects arg[{position}] to be {tensors.dtype_name(info.dtype)} "
                               f"but {tensors.dtype_name(dtype)} is provided")
    expected = _signature_dims(info)
    if rules.enforce_signature_shapes and expected is not None and (
            len(dims) != len(expected)
            or any(0 <= want != got for want, got in zip(expected, dims))):
        raise invalid_argument(f"Shape of tensor {alias} {shape_text(dims)} is not compatible "
                               f"with expected shape {shape_text(expected)}.")
    allowed = rules.max_unknown_dim_size
    if expected is not None:
        allowed = math.prod(size if size >= 0 else rules.max_unknown_dim_size
                            for size in expected)
    elements = math.prod(dims)  # Python integers: a claimed [10**12, 10**12] cannot overflow
    if elements > allowed:
        signature_shape = shape_text(expected) if expected is not None else "of unknown rank"
        raise invalid_argument(
            f"Tensor {alias} of shape {shape_text(dims)} has {elements} elements, more than the "
            f"{allowed} its signature shape {signature_shape} allows with at most "
            f"{rules.max_unknown_dim_size} per unknown dimension (--max_unknown_dim_size)")


def check_batch(shapes: Sequence[Sequence[int]], batch_size_limit: int) -> None:
    """TF Serving's batching rule for one run: every input has a 0th dimension, all of the
    same size, and that size is at most ``max_batch_size``."""
    if not shapes:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    if any(len(shape) == 0 for shape in shapes):
        raise invalid_argument("Batching Run() input tensors must have at least one dimension")
    sizes = {shape[0] for shape in shapes}
    if len(sizes) > 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    (size,) = sizes
    if size > batch_size_limit:
        raise invalid_argument(f"Task size {size} is larger than maximum input batch size "
                               f"{batch_size_limit}")
