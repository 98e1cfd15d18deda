"""Malformed request bodies answer INVALID_ARGUMENT with a plain message: :class:`MalformedRequests`.

gRPC's own handling of a body that does not parse as the method's request message is to fail the call
with UNKNOWN and the Python exception's name. This server interceptor wraps every method handler of the
server it is installed on (so also services registered later, by any module): the request deserializer
no longer raises but returns a :class:`_Malformed` marker, and the behavior aborts the call with
INVALID_ARGUMENT ("malformed request: the body is not a valid coterie.v1.PutRequest") before the
service sees it. For a stream of requests the marker is turned into the state machine's
:class:`~coterie.node.statemachine.InvalidArgument`, raised from the request iterator, which the
stream's handler maps through :func:`~.status.error_status` (INVALID_ARGUMENT too). Wrapped handlers
are cached per method, so the cost per call is one dictionary lookup.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]

from ..statemachine import InvalidArgument

__all__ = ["MalformedRequests"]


class _Malformed:
    """What the deserializer returns for a body that does not parse."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _message_name(deserializer: Any, method: str) -> str:
    owner = getattr(deserializer, "__self__", None)
    desc = getattr(owner, "DESCRIPTOR", None)
    name = getattr(desc, "full_name", "")
    return str(name) if name else f"request of {method}"


def _safe(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    what = _message_name(deserializer, method)
    message = f"malformed request: the body is not a valid {what}"

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:
            return _Malformed(message)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for r in requests:
        if isinstance(r, _Malformed):
            raise InvalidArgument(r.message)
        yield r


def _wrap(handler: Any, method: str) -> Any:
    """``handler`` with a deserializer that never raises and a behavior that refuses what it marks."""
    des = _safe(handler.request_deserializer, method)
    ser = handler.response_serializer
    if handler.unary_unary is not None:
        inner_uu: Callable[[Any, Any], Awaitable[Any]] = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, request_deserializer=des,
                                                   response_serializer=ser)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream
        if not inspect.isasyncgenfunction(inner_us):
            return handler  # writes with context.write: left as gRPC serves it

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for r in inner_us(request, context):
                yield r

        return grpc.unary_stream_rpc_method_handler(unary_stream, request_deserializer=des,
                                                    response_serializer=ser)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            return await inner_su(_checked(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, request_deserializer=des,
                                                    response_serializer=ser)
    inner_ss = handler.stream_stream
    if not inspect.isasyncgenfunction(inner_ss):
        return handler

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        async for r in inner_ss(_checked(requests), context):
            yield r

    return grpc.stream_stream_rpc_method_handler(stream_stream, request_deserializer=des,
                                                 response_serializer=ser)


class MalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Install with ``grpc.aio.server(interceptors=[MalformedRequests()])``; see the module docstring."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                handler_call_details: Any) -> Any:
        method = handler_call_details.method
        w = self._wrapped.get(method)
        if w is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            w = self._wrapped[method] = _wrap(handler, method)
        return w
