"""The serving core behind both front ends: Predict, Classify, Regress, metadata and status.

Each function takes the model manager (or one loaded version) and TF Serving's request message,
and returns its response message or raises :class:`ServingError` with the code and text TF
Serving uses (``predict_util.cc``, ``classifier.cc``, ``regressor.cc``,
``get_model_metadata_impl.cc``, ``get_model_status_impl.cc``). ``run_predict`` is the numpy-level
entry the REST front end and model warm-up share; every input it runs has passed
``signature_inputs``' checks (gRPC tensors before they are even built: ``decode_inputs``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, input_pb2, model_pb2, predict_pb2,
                                     regression_pb2, status_pb2)

from ppm_tf.serving import tensors
from ppm_tf.serving.signature_inputs import check_input, check_input_names
from ppm_tf.serving.errors import from_exception, failed_precondition, invalid_argument, \
    unimplemented

DEFAULT_SIGNATURE = "serving_default"
SIGNATURE_DEF_FIELD = "signature_def"


def spec_of(model_spec: model_pb2.ModelSpec) -> tuple[str, int | None, str | None]:
    """(name, version or None, label or None) from a ModelSpec's ``version_choice``."""
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")


def _run(servable, feeds: dict[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
    try:
        return servable.run(feeds, fetches)
    except tf.errors.OpError as error:
        raise from_exception(error) from None


def _dense_name(info, alias: str) -> str:
    if info.WhichOneof("encoding") != "name":
        raise unimplemented(f"Tensor {alias}: only dense tensors are served, not "
                            f"{info.WhichOneof('encoding')}")
    return info.name


def _join(names) -> str:
    return ",".join(sorted(names))


def predict_signature(servable, signature_name: str):
    """(name, SignatureDef) of the signature a Predict request names (default: serving_default)."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
    if signature is None:
        raise failed_precondition(f"Serving signature key \"{name}\" not found.")
    return name, signature


def decode_inputs(servable, signature_name: str, protos: Mapping[str, tensor_pb2.TensorProto]
                  ) -> dict[str, np.ndarray]:
    """A request's input TensorProtos as arrays. Names, dtypes and the shape each one claims
    are checked against the signature first, so an oversized claim allocates nothing."""
    _, signature = predict_signature(servable, signature_name)
    check_input_names(signature, protos)
    arrays = {}
    for alias, proto in protos.items():
        check_input(signature, alias, proto.dtype, tensors.claimed_dims(proto, alias),
                    servable.input_rules)
        arrays[alias] = tensors.tensor_proto_to_ndarray(proto, alias)
    return arrays


def run_predict(servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] = ()) -> tuple[str, dict[str, np.ndarray]]:
    """Runs one signature on numpy inputs keyed by alias; returns (signature name, outputs)."""
    name, signature = predict_signature(servable, signature_name)
    check_input_names(signature, inputs)
    feeds = {}
    for alias in sorted(signature.inputs):
        info = signature.inputs[alias]
        if alias in inputs:
            array = np.asarray(inputs[alias])
            check_input(signature, alias, tensors.dtype_of(array), array.shape,
                        servable.input_rules)
        else:
            array = tensors.tensor_proto_to_ndarray(signature.defaults[alias], alias)
        feeds[_dense_name(info, alias)] = tensors.to_ndarray(array, info.dtype)
    aliases = list(output_filter)
    for alias in aliases:
        if alias not in signature.outputs:
            raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs "
                                   f"expected to be in the set {{{_join(signature.outputs)}}}.")
    if len(set(aliases)) != len(aliases):
        duplicate = next(alias for alias in aliases if aliases.count(alias) > 1)
        raise invalid_argument(f"duplicate output tensor alias: {duplicate}")
    aliases = aliases or sorted(signature.outputs)
    fetches = [_dense_name(signature.outputs[alias], alias) for alias in aliases]
    return name, dict(zip(aliases, _run(servable, feeds, fetches)))


def predict(manager, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    _require_model_spec(request)
    name, version, label = spec_of(request.model_spec)
    with manager.servable(name, version, label) as servable:
        inputs = decode_inputs(servable, request.model_spec.signature_name, request.inputs)
        signature_name, outputs = run_predict(servable, request.model_spec.signature_name,
                                              inputs, request.output_filter)
    response = predict_pb2.PredictResponse()
    _fill_spec(response.model_spec, servable, signature_name)
    for alias, array in outputs.items():
        response.outputs[alias].CopyFrom(tensors.ndarray_to_tensor_proto(array))
    return response


def _fill_spec(spec: model_pb2.ModelSpec, servable, signature_name: str = "") -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name:
        spec.signature_name = signature_name


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """The request's tf.Examples serialized, context merged into each (as TF Serving does)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        # Concatenated serialized messages parse as their merge: context, then the example.
        examples = [context + e.SerializeToString() for e in with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _examples_signature(servable, signature_name: str):
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {name}")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    info = next(iter(signature.inputs.values()))
    if info.dtype != types_pb2.DT_STRING:
        raise invalid_argument(f"Expected the input Tensor to be a serialized tf.Example "
                               f"(DT_STRING); got {tensors.dtype_name(info.dtype)}")
    return name, signature, _dense_name(info, "inputs")


def _check_batch(output: np.ndarray, batch_size: int) -> None:
    if output.ndim == 0 or output.shape[0] != batch_size:
        got = output.shape[0] if output.ndim else "scalar"
        raise invalid_argument(f"Input batch size did not match output batch size: "
                               f"{batch_size} vs. {got}")


def run_classify(servable, signature_name: str, request_input: input_pb2.Input
                 ) -> tuple[str, classification_pb2.ClassificationResult]:
    name, signature, input_name = _examples_signature(servable, signature_name)
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found "
                               f"{len(signature.outputs)}")
    wanted = [alias for alias in ("classes", "scores") if alias in signature.outputs]
    if not wanted:
        raise invalid_argument("Expected classification signature outputs to contain at least "
                               "one of \"classes\" or \"scores\".")
    examples = serialized_examples(request_input)
    fetched = dict(zip(wanted, _run(servable, {input_name: examples},
                                    [signature.outputs[a].name for a in wanted])))
    for alias, array in fetched.items():
        expected_kind = "O" if alias == "classes" else "f"
        if array.dtype.kind != expected_kind:
            raise invalid_argument(f"Expected {alias} Tensor of "
                                   f"{'DT_STRING' if alias == 'classes' else 'DT_FLOAT'}.")
        if array.ndim != 2:
            raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got "
                                   f"{list(array.shape)}")
        _check_batch(array, len(examples))
    if len(fetched) == 2 and fetched["classes"].shape != fetched["scores"].shape:
        raise invalid_argument("Tensors class and score should match in shape.")
    num_classes = next(iter(fetched.values())).shape[1]
    result = classification_pb2.ClassificationResult()
    for row in range(len(examples)):
        classifications = result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if "classes" in fetched:
                entry.label = tensors.as_bytes(fetched["classes"][row, column]).decode(
                    "utf-8", "replace")
            if "scores" in fetched:
                entry.score = float(fetched["scores"][row, column])
    return name, result


def run_regress(servable, signature_name: str, request_input: input_pb2.Input
                ) -> tuple[str, regression_pb2.RegressionResult]:
    name, signature, input_name = _examples_signature(servable, signature_name)
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if "outputs" not in signature.outputs:
        raise invalid_argument("No regression outputs found in signature (expected output "
                               "alias \"outputs\").")
    examples = serialized_examples(request_input)
    (output,) = _run(servable, {input_name: examples}, [signature.outputs["outputs"].name])
    if output.dtype.kind != "f":
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {output.dtype}")
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid_argument(f"Expected output Tensor shape to be either [batch_size] or "
                               f"[batch_size, 1] but got {list(output.shape)}")
    _check_batch(output, len(examples))
    result = regression_pb2.RegressionResult()
    for value in output.reshape(-1).tolist():
        result.regressions.add().value = value
    return name, result


def classify(manager, request: classification_pb2.ClassificationRequest
             ) -> classification_pb2.ClassificationResponse:
    _require_model_spec(request)
    with manager.servable(*spec_of(request.model_spec)) as servable:
        name, result = run_classify(servable, request.model_spec.signature_name, request.input)
    response = classification_pb2.ClassificationResponse(result=result)
    _fill_spec(response.model_spec, servable, name)
    return response


def regress(manager, request: regression_pb2.RegressionRequest
            ) -> regression_pb2.RegressionResponse:
    _require_model_spec(request)
    with manager.servable(*spec_of(request.model_spec)) as servable:
        name, result = run_regress(servable, request.model_spec.signature_name, request.input)
    response = regression_pb2.RegressionResponse(result=result)
    _fill_spec(response.model_spec, servable, name)
    return response


def model_metadata(manager, request: get_model_metadata_pb2.GetModelMetadataRequest
                   ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    _require_model_spec(request)
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one "
                               "metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")
    with manager.servable(*spec_of(request.model_spec)) as servable:
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_defs.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_spec(response.model_spec, servable)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
    return response


def model_status(manager, request: get_model_status_pb2.GetModelStatusRequest
                 ) -> get_model_status_pb2.GetModelStatusResponse:
    """Version states; like TF Serving, a version label in the spec is not resolved here."""
    _require_model_spec(request)
    name, version, _ = spec_of(request.model_spec)
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.version_status(name, version):
        response.model_version_status.add(
            version=status.version,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
            status=status_pb2.StatusProto(error_code=status.error_code.value[0],
                                          error_message=status.error_message))
    return response
