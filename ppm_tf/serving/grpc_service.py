"""The gRPC front end: TF Serving's ``PredictionService`` and ``ModelService``.

The servicers implement the stubs generated in ``tensorflow-serving-api``, so any TF Serving
gRPC client (``prediction_service_pb2_grpc.PredictionServiceStub``, ``model_service_pb2_grpc
.ModelServiceStub``) talks to this server unchanged. Errors carry TF Serving's status codes
(NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION, …). ``MultiInference`` is UNIMPLEMENTED.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc, status_pb2)

from ppm_tf.serving import inference
from ppm_tf.serving.errors import ServingError

log = logging.getLogger(__name__)


def _serve(api: str, model_name: str, work: Callable, context: grpc.ServicerContext, metrics):
    """Runs one RPC: its response, or an abort with the error's status code."""
    started = time.perf_counter()
    status = "OK"
    try:
        return work()
    except ServingError as error:
        status = error.code_name
        context.abort(error.code, error.message)
    except Exception as error:  # a bug must cost one request, never the server
        log.exception("gRPC %s failed", api)
        status = "INTERNAL"
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
    finally:
        if metrics is not None:
            metrics.record_request(model_name, api, "GRPC", status, time.perf_counter() - started)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata over the model manager."""

    def __init__(self, manager, metrics=None):
        self._manager = manager
        self._metrics = metrics

    def Predict(self, request, context):  # noqa: N802 (generated gRPC names)
        return _serve("predict", request.model_spec.name,
                      lambda: inference.predict(self._manager, request), context, self._metrics)

    def Classify(self, request, context):  # noqa: N802
        return _serve("classify", request.model_spec.name,
                      lambda: inference.classify(self._manager, request), context, self._metrics)

    def Regress(self, request, context):  # noqa: N802
        return _serve("regress", request.model_spec.name,
                      lambda: inference.regress(self._manager, request), context, self._metrics)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _serve("GetModelMetadata", request.model_spec.name,
                      lambda: inference.model_metadata(self._manager, request), context,
                      self._metrics)

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "MultiInference is not implemented by the local server")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest (a new ``model_config_list``)."""

    def __init__(self, manager, metrics=None):
        self._manager = manager
        self._metrics = metrics

    def GetModelStatus(self, request, context):  # noqa: N802
        return _serve("GetModelStatus", request.model_spec.name,
                      lambda: inference.model_status(self._manager, request), context,
                      self._metrics)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        def reload():
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "ServerModelConfig type not supported by "
                                   "HandleReloadConfigRequest. Only ModelConfigList is "
                                   "currently supported")
            self._manager.reload_config(request.config)
            log.info("Reloaded the model config: %s",
                     [model.name for model in request.config.model_config_list.config])
            return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto())
        return _serve("HandleReloadConfigRequest", "", reload, context, self._metrics)


def create_grpc_server(manager, host: str = "127.0.0.1", port: int = 8500,
                       max_workers: int = 16, max_message_bytes: int = 64 << 20,
                       metrics=None) -> tuple[grpc.Server, int]:
    """A started gRPC server with both services; returns it and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-serving"),
        options=[("grpc.max_receive_message_length", max_message_bytes),
                 ("grpc.max_send_message_length", max_message_bytes),
                 ("grpc.so_reuseport", 0)])  # a busy port is an error, not a silent share
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(manager, metrics), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot bind the gRPC server to {address}")
    server.start()
    return server, bound
