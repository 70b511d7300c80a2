"""Errors carried with TensorFlow Serving's canonical status codes.

Every failure the serving code raises is a :class:`ServingError` holding a gRPC status code and a
message. The gRPC front end returns the code as is; the REST front end turns it into the HTTP
status TF Serving uses for that code (``tensorflow_serving/model_servers/http_server.cc``), so a
client sees the same answer from our local server as from the real one.
"""
from __future__ import annotations

import grpc

# TF Serving's ToHTTPStatusCode: gRPC/TensorFlow status code -> HTTP status.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request or load failure with its canonical status code (``grpc.StatusCode``)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @property
    def code_name(self) -> str:
        """The code as TF Serving spells it in JSON (``"NOT_FOUND"``)."""
        return self.code.name

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def code_from_number(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` for a canonical code number (TensorFlow's ``error_code``)."""
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def from_exception(error: BaseException) -> ServingError:
    """Wraps any exception: TensorFlow's ``OpError`` keeps its code, anything else is UNKNOWN."""
    if isinstance(error, ServingError):
        return error
    error_code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if isinstance(error_code, int):
        return ServingError(code_from_number(error_code), message)
    return ServingError(grpc.StatusCode.UNKNOWN, message)
