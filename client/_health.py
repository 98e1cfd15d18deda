"""A client of the standard gRPC health service (``grpc.health.v1.Health/Check``) that the nodes serve
on their client port, without the grpcio-health-checking package (the client install does not have
it): its two messages are tiny, so they are written and read by hand here.

``HealthCheckRequest { string service = 1; }`` and ``HealthCheckResponse { ServingStatus status = 1; }``
with ``ServingStatus`` UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3.
"""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]

__all__ = ["STATUS_NAMES", "check", "decode_response", "encode_request"]

CHECK_METHOD = "/grpc.health.v1.Health/Check"
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_request(service: str = "") -> bytes:
    """A serialized ``HealthCheckRequest`` (empty for the whole server, ``""``)."""
    if not service:
        return b""
    raw = service.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("malformed HealthCheckResponse: truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def decode_response(data: bytes) -> int:
    """The ``status`` of a serialized ``HealthCheckResponse`` (0 if absent); unknown fields are
    skipped."""
    status, i = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _read_varint(data, i)
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"malformed HealthCheckResponse: wire type {wire}")
    if i > len(data):
        raise ValueError("malformed HealthCheckResponse: truncated field")
    return status


def check(endpoint: str, *, timeout: float, service: str = "") -> int:
    """``Health/Check`` of ``service`` at ``endpoint``: the serving status (1 is SERVING). Raises
    ``grpc.RpcError`` if the call fails (NOT_FOUND: the server does not know ``service``)."""
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary(CHECK_METHOD, request_serializer=None, response_deserializer=None)
        return decode_response(call(encode_request(service), timeout=timeout))
