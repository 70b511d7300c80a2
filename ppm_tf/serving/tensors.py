"""Tensors as numpy arrays, ``TensorProto`` messages and JSON values.

The serving core works on numpy arrays keyed by signature alias. gRPC carries ``TensorProto``
(TF Serving answers in the typed ``*_val`` fields, which every client library reads; clients may
send ``tensor_content`` for speed). REST carries JSON, written the way TF Serving's
``json_tensor.cc`` writes it: float32 in its shortest round-trip form (``0.1``, not
``0.10000000149``), ``NaN``/``Infinity`` as bare tokens, DT_STRING as text unless the output alias
ends in ``_bytes`` (then ``{"b64": …}``).
"""
from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from ppm_tf.serving.errors import invalid_argument

# numpy dtype per TensorFlow DataType (DT_STRING: object arrays of bytes).
NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_STRING: np.dtype(object),
    types_pb2.DT_COMPLEX64: np.dtype(np.complex64),
    types_pb2.DT_COMPLEX128: np.dtype(np.complex128),
}
_DTYPE_BY_NUMPY = {value: key for key, value in NUMPY_DTYPES.items() if key != types_pb2.DT_STRING}

# TensorFlow's C++ DataTypeString spelling, used in TF Serving's error messages.
_CPP_NAMES = {types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double",
              types_pb2.DT_HALF: "half", types_pb2.DT_BFLOAT16: "bfloat16"}

# Which TensorProto field holds each dtype's values, TF Serving's "AsProtoField" form.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}

BYTES_SUFFIX = "_bytes"  # an output alias ending so is written as {"b64": ...} in JSON


def dtype_name(dtype: int) -> str:
    """``DT_FLOAT`` -> ``"float"``: TensorFlow's own spelling, as in TF Serving's messages."""
    if dtype in _CPP_NAMES:
        return _CPP_NAMES[dtype]
    name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)
    return name[3:].lower() if name.startswith("DT_") else name


def dtype_of(array: np.ndarray) -> int:
    """The TensorFlow DataType of a numpy array (object, bytes and str arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    try:
        return _DTYPE_BY_NUMPY[array.dtype.newbyteorder("=")]
    except KeyError:
        raise invalid_argument(f"numpy dtype {array.dtype} has no TensorFlow DataType") from None


def as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise invalid_argument(f"string tensor element {value!r} is neither bytes nor str")


def to_ndarray(value, dtype: int | None = None) -> np.ndarray:
    """Array-like -> ndarray of the numpy type for ``dtype`` (strings become bytes objects)."""
    array = np.asarray(value)
    dtype = dtype_of(array) if dtype is None else dtype
    if dtype == types_pb2.DT_STRING:
        flat = [as_bytes(item) for item in array.reshape(-1).tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    return array.astype(NUMPY_DTYPES[dtype], copy=False)


def ndarray_to_tensor_proto(value, dtype: int | None = None,
                            use_tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """An array-like as a TensorProto: typed ``*_val`` fields, or packed ``tensor_content``."""
    array = to_ndarray(value, dtype)
    dtype = dtype_of(array) if dtype is None else dtype
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.reshape(-1)
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(flat.tolist())
    elif use_tensor_content:
        proto.tensor_content = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        pairs = np.stack([flat.real, flat.imag], axis=-1).reshape(-1).tolist()
        getattr(proto, "scomplex_val" if dtype == types_pb2.DT_COMPLEX64
                else "dcomplex_val").extend(pairs)
    elif dtype in _VALUE_FIELDS:
        getattr(proto, _VALUE_FIELDS[dtype]).extend(flat.tolist())
    else:
        raise invalid_argument(f"cannot write a tensor of type {dtype_name(dtype)}")
    return proto


def claimed_dims(proto: tensor_pb2.TensorProto, alias: str = "") -> list[int]:
    """The shape a TensorProto claims, read without building it; it must be fully defined."""
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(size < 0 for size in dims):
        raise invalid_argument(f"tensor parsing error: {alias}: the shape of a request tensor "
                               f"must be fully defined, not "
                               f"{'of unknown rank' if proto.tensor_shape.unknown_rank else dims}")
    return dims


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto, alias: str = "") -> np.ndarray:
    """A TensorProto (typed fields or ``tensor_content``) as an ndarray; bad protos are 400s.

    TensorFlow fills a short value list out to the claimed shape: check the claimed size
    (``signature_inputs.check_input``) before calling this on a request's tensor.
    """
    if proto.dtype not in NUMPY_DTYPES:
        raise invalid_argument(f"tensor parsing error: {alias}: unsupported dtype "
                               f"{dtype_name(proto.dtype)}")
    claimed_dims(proto, alias)
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise invalid_argument(f"tensor parsing error: {alias}: {error}") from None


def _nest(flat: list, shape: Sequence[int]):
    """A flat list as nested lists of ``shape`` (a scalar for shape ``()``)."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:], dtype=np.int64))
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _string_to_json(value: bytes, as_base64: bool):
    if not as_base64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # JSON cannot hold these bytes as text; send them the only lossless way
    return {"b64": base64.b64encode(value).decode("ascii")}


def ndarray_to_json(alias: str, array: np.ndarray):
    """An output tensor as a JSON-ready nested list (or scalar), TF Serving's number format."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "f":
        if array.dtype == np.float64:
            return array.tolist()
        # Shortest text that round-trips in the tensor's own precision, then back to a Python
        # float, which json writes in that same short form.
        return array.astype(str).astype(np.float64).tolist()
    if kind in "iub":
        return array.tolist()
    if kind in "OSU":
        as_base64 = alias.endswith(BYTES_SUFFIX)
        flat = [_string_to_json(as_bytes(item), as_base64) for item in array.reshape(-1).tolist()]
        return _nest(flat, array.shape)
    raise invalid_argument(f"Failed to write JSON value for tensor type: "
                           f"{dtype_name(dtype_of(array)) if kind != 'c' else array.dtype.name}")


def scalar_to_json(value: float) -> float:
    """One float32 score in the same short form as :func:`ndarray_to_json`."""
    return float(str(np.float32(value)))
