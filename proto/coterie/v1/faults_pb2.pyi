from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FaultState(_message.Message):
    __slots__ = ("blocked", "blocked_in", "drop_rate", "delay_seconds", "clock_rate", "clock_offset_seconds")
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_IN_FIELD_NUMBER: _ClassVar[int]
    DROP_RATE_FIELD_NUMBER: _ClassVar[int]
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_RATE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    blocked: _containers.RepeatedScalarFieldContainer[int]
    blocked_in: _containers.RepeatedScalarFieldContainer[int]
    drop_rate: float
    delay_seconds: float
    clock_rate: float
    clock_offset_seconds: float
    def __init__(self, blocked: _Optional[_Iterable[int]] = ..., blocked_in: _Optional[_Iterable[int]] = ..., drop_rate: _Optional[float] = ..., delay_seconds: _Optional[float] = ..., clock_rate: _Optional[float] = ..., clock_offset_seconds: _Optional[float] = ...) -> None: ...

class GetFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
