"""TF Serving's REST JSON bodies: predict ``instances``/``inputs``, classify/regress ``examples``.

A line-by-line port of the rules in TF Serving's ``util/json_tensor.cc`` (what is accepted,
how shapes are inferred, which error text comes back), so that a request the real server takes
is taken here with the same meaning, and a bad one is refused with the same 400 message. One
exception: names in a columnar ``inputs`` object that the signature lacks, which TF Serving
drops silently, are refused as the gRPC API refuses them.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
from collections.abc import Callable, Mapping

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2

from ppm_tf.serving import tensors
from ppm_tf.serving.errors import ServingError, invalid_argument, unimplemented
from ppm_tf.serving.signature_inputs import input_size_error

ROW, COLUMNAR = "row", "columnar"
_MAX_ERROR_VALUE_CHARS = 256
_FLOAT_MAX_INT = (1 << 24) - 1  # largest integer a float32 holds exactly
_DOUBLE_MAX_INT = (1 << 53) - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT_RANGES = {dtype: (int(np.iinfo(tensors.NUMPY_DTYPES[dtype]).min),
                       int(np.iinfo(tensors.NUMPY_DTYPES[dtype]).max))
               for dtype in (types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32,
                             types_pb2.DT_INT64, types_pb2.DT_UINT8, types_pb2.DT_UINT32,
                             types_pb2.DT_UINT64)}


def json_text(value) -> str:
    """A JSON value as text for an error message, cut short when long."""
    text = json.dumps(value, separators=(",", ":"))
    if len(text) > _MAX_ERROR_VALUE_CHARS:
        text = text[:_MAX_ERROR_VALUE_CHARS] + "..."
    return text


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object, or TF Serving's ``JSON Parse error`` (400)."""
    if not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: "
                               f"{error.start}") from None
    except json.JSONDecodeError as error:
        message = "Invalid value" if error.msg == "Expecting value" else error.msg
        raise invalid_argument(f"JSON Parse error: {message} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: document nested too deeply") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {json_text(document)} Is not object")
    return document


def signature_name_of(document: dict) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {json_text(document)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def _is_base64_object(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_base64(value) -> bytes:
    if not _is_base64_object(value):
        raise invalid_argument(f"JSON Value: {json_text(value)} not formatted correctly for "
                               "base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value, dtype: int) -> ServingError:
    return invalid_argument(f"JSON Value: {json_text(value)} Type: {_json_type(value)} is not "
                            f"of expected type: {tensors.dtype_name(dtype)}")


def _convert_value(value, dtype: int):
    """One JSON leaf as a Python value of ``dtype`` (AddValueToTensor)."""
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if type(value) not in (int, float):
            raise _type_error(value, dtype)
        lossless = True
        if type(value) is int:
            lossless = abs(value) <= (_FLOAT_MAX_INT if dtype == types_pb2.DT_FLOAT
                                      else _DOUBLE_MAX_INT)
        elif dtype == types_pb2.DT_FLOAT and math.isfinite(value):
            lossless = abs(value) <= _FLOAT32_MAX
        if not lossless:
            target = "float" if dtype == types_pb2.DT_FLOAT else "double"
            raise invalid_argument(f"Cannot convert JSON value: {json_text(value)} to {target} "
                                   "without loss of precision.")
        return float(value)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if type(value) is not int or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if type(value) is not bool:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, dict):
            return _decode_base64(value)
        if type(value) is not str:
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    raise unimplemented(f"Conversion of JSON Value: {json_text(value)} to type: "
                        f"{tensors.dtype_name(dtype)}")


def _dense_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: list[int], dtype: int, out: list) -> None:
    """FillTensorProto: every leaf at depth ``len(shape)``, every list of the inferred size."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(f"JSON Value: {json_text(value)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict) and dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        out.append(_convert_value(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: "
                               f"{level} expected size: {shape[level]}")
    if level == rank - 1:  # a leaf list: take the common all-float / all-text case in bulk
        if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE) and all(
                type(item) is float for item in value):
            out.extend(value)  # float32's finite range is checked once on the whole array
            return
        if dtype == types_pb2.DT_STRING and all(type(item) is str for item in value):
            out.extend(item.encode("utf-8") for item in value)
            return
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def json_to_ndarray(value, dtype: int) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an ndarray of ``dtype``."""
    shape = _dense_shape(value)
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    if dtype == types_pb2.DT_FLOAT and flat:
        doubles = np.asarray(flat, dtype=np.float64)
        too_big = np.isfinite(doubles) & (np.abs(doubles) > _FLOAT32_MAX)
        if too_big.any():
            raise invalid_argument(f"Cannot convert JSON value: {flat[int(np.argmax(too_big))]} "
                                   "to float without loss of precision.")
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        array = np.asarray(flat, dtype=tensors.NUMPY_DTYPES[dtype])
    return array.reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _instances_to_arrays(instances: list, infos: Mapping) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: one batch row per element of ``instances``."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as "
                               "multiple input tensors required as per tensorinfo_map")
    is_object = lambda item: isinstance(item, dict) and not _is_base64_object(item)  # noqa: E731
    by_name = is_object(instances[0])
    input_names = sorted(infos)
    # Fast path: each input's column parsed as one nested list. It succeeds exactly when every
    # instance has the same shape; otherwise the element-wise pass below finds the element and
    # gives TF Serving's message for it.
    with contextlib.suppress(ServingError):
        if by_name and all(is_object(item) and sorted(item) == input_names
                           for item in instances):
            return {name: json_to_ndarray([item[name] for item in instances], infos[name].dtype)
                    for name in input_names}
        if not by_name and not any(is_object(item) for item in instances):
            return {input_names[0]: json_to_ndarray(instances, infos[input_names[0]].dtype)}
    rows: dict[str, list[np.ndarray]] = {}
    first_shape: dict[str, list[int]] = {}

    def add(item, name: str) -> None:
        if name not in infos:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        array = json_to_ndarray(item, infos[name].dtype)
        if name not in first_shape:
            first_shape[name] = list(array.shape)
        elif array.size != int(np.prod(first_shape[name], dtype=np.int64)):
            raise invalid_argument(f"Expecting tensor size: "
                                   f"{int(np.prod(first_shape[name], dtype=np.int64))} "
                                   f"but got: {array.size}")
        elif list(array.shape) != first_shape[name]:
            raise invalid_argument(f"Expecting shape {_shape_text(first_shape[name])} but got: "
                                   f"{_shape_text(array.shape)}")
        rows.setdefault(name, []).append(array)

    for index, element in enumerate(instances):
        if by_name:
            if not is_object(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of "
                                       "input list")
            for name, item in element.items():
                try:
                    add(item, name)
                except ServingError as error:
                    raise invalid_argument(f"Failed to process element: {index} key: {name} of "
                                           f"'instances' list. Error: {error.code_name}: "
                                           f"{error.message}") from None
            if sorted(element) != input_names:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' "
                                       f"list. JSON object: {json_text(element)} keys must be "
                                       f"equal to: {','.join(input_names)}")
        else:
            if is_object(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} "
                                       "of input list")
            try:
                add(element, input_names[0])
            except ServingError as error:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' "
                                       f"list. Error: {error.code_name}: {error.message}") from None
    return {name: np.stack(arrays) for name, arrays in rows.items()}


def _inputs_to_arrays(inputs, infos: Mapping) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: one value per named input, batch dimension included."""
    if not isinstance(inputs, dict) or _is_base64_object(inputs):
        if len(infos) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as "
                                   "multiple input tensors required as per tensorinfo_map")
        name = next(iter(infos))
        return {name: json_to_ndarray(inputs, infos[name].dtype)}
    arrays = {}
    for name, info in infos.items():
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_ndarray(inputs[name], info.dtype)
    if set(inputs) - set(infos):  # TF Serving drops extra names here; refused as over gRPC
        raise input_size_error(inputs, infos)
    return arrays


def parse_predict_request(body: bytes, input_infos: Callable[[str], Mapping]
                          ) -> tuple[str, dict[str, np.ndarray], str]:
    """A ``:predict`` body -> (signature name, input arrays by alias, ``ROW`` or ``COLUMNAR``).

    ``input_infos(signature_name)`` returns the signature's ``{alias: TensorInfo}``; the
    arrays take the signature's dtypes, as TF Serving types JSON values by the signature.
    """
    document = parse_json_object(body)
    signature_name = signature_name_of(document)
    infos = input_infos(signature_name)
    if not infos:
        raise invalid_argument("Failed to get input map for signature: "
                               f"{signature_name or 'DEFAULT'}")
    if "instances" in document and "inputs" in document:
        raise invalid_argument(f"JSON Value: {json_text(document)} Not formatted correctly "
                               "expecting only one of 'inputs' or 'instances' keys to exist ")
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(f"JSON Value: {json_text(document)} Excepting 'instances' to "
                                   "be an list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {json_text(document)} No values in "
                                   "'instances' array")
        return signature_name, _instances_to_arrays(instances, infos), ROW
    if "inputs" in document:
        return signature_name, _inputs_to_arrays(document["inputs"], infos), COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def predict_response(outputs: Mapping[str, np.ndarray], request_format: str) -> dict:
    """Output tensors as ``{"predictions": …}`` (row) or ``{"outputs": …}`` (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if request_format == COLUMNAR:
        values = {name: tensors.ndarray_to_json(name, array) for name, array in outputs.items()}
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch_size = None
    for name, array in outputs.items():
        if np.ndim(array) == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and array.shape[0] != batch_size:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                   f"{array.shape[0]} expecting: {batch_size}")
        batch_size = array.shape[0]
    rows = {name: tensors.ndarray_to_json(name, array) for name, array in outputs.items()}
    if len(rows) == 1:
        return {"predictions": next(iter(rows.values()))}
    return {"predictions": [{name: rows[name][i] for name in rows} for i in range(batch_size)]}


def _add_feature_value(value, name: str, feature: example_pb2.Feature) -> None:
    """AddValueToFeature: JSON leaf -> bytes/float/int64 list, one kind per feature."""
    def kind_error(expected: str) -> ServingError:
        current = feature.WhichOneof("kind")
        kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
            current, "UNKNOWN")
        return invalid_argument(f"Unexpected element type in feature: {name} expecting type: "
                                f"{kind}")

    def check_kind(kind: str) -> None:
        current = feature.WhichOneof("kind")
        if current is not None and current != kind:
            raise kind_error(kind)

    if value is None or isinstance(value, list) or (isinstance(value, dict)
                                                   and not _is_base64_object(value)):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                               f"{_json_type(value)}")
    if isinstance(value, bool):
        check_kind("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, (dict, str)):
        check_kind("bytes_list")
        feature.bytes_list.value.append(_decode_base64(value) if isinstance(value, dict)
                                        else value.encode("utf-8"))
    elif isinstance(value, float):
        check_kind("float_list")
        if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise invalid_argument(f"Cannot convert JSON value: {value} to float without loss "
                                   "of precision.")
        feature.float_list.value.append(value)
    else:
        check_kind("int64_list")
        if value >= 1 << 63 or value < -(1 << 63):
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is "
                                   "supported.")
        feature.int64_list.value.append(value)


def _example_from_json(value) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in (content if isinstance(content, list) else [content]):
            _add_feature_value(item, name, feature)
    return example


def parse_examples_request(body: bytes, method: str) -> tuple[str, input_pb2.Input]:
    """A ``:classify``/``:regress`` body -> (signature name, ``Input`` of tf.Examples)."""
    document = parse_json_object(body)
    signature_name = signature_name_of(document)
    request_input = input_pb2.Input()
    context = None
    if "context" in document:
        context = _example_from_json(document["context"])
        request_input.example_list_with_context.context.CopyFrom(context)
    examples = document.get("examples")
    if examples is None:
        raise invalid_argument(f"JSON Value: {json_text(document)} When method is {method}, key "
                               "'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {json_text(document)} Expecting 'examples' value to "
                               "be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {json_text(document)} 'examples' value is an empty "
                               "array")
    target = (request_input.example_list_with_context.examples if context is not None
              else request_input.example_list.examples)
    for example in examples:
        target.add().CopyFrom(_example_from_json(example))
    return signature_name, request_input
