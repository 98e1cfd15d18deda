from coterie.v1 import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_PRE_CANDIDATE: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]

class ProgressState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROGRESS_PROBE: _ClassVar[ProgressState]
    PROGRESS_REPLICATE: _ClassVar[ProgressState]
    PROGRESS_SNAPSHOT: _ClassVar[ProgressState]

class GossipState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GOSSIP_ALIVE: _ClassVar[GossipState]
    GOSSIP_SUSPECT: _ClassVar[GossipState]
    GOSSIP_DEAD: _ClassVar[GossipState]
    GOSSIP_LEFT: _ClassVar[GossipState]
ROLE_FOLLOWER: Role
ROLE_PRE_CANDIDATE: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
PROGRESS_PROBE: ProgressState
PROGRESS_REPLICATE: ProgressState
PROGRESS_SNAPSHOT: ProgressState
GOSSIP_ALIVE: GossipState
GOSSIP_SUSPECT: GossipState
GOSSIP_DEAD: GossipState
GOSSIP_LEFT: GossipState

class Member(_message.Message):
    __slots__ = ("id", "name", "peer_addr", "client_addr", "is_learner")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    IS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    peer_addr: str
    client_addr: str
    is_learner: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., peer_addr: _Optional[str] = ..., client_addr: _Optional[str] = ..., is_learner: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerProgress(_message.Message):
    __slots__ = ("id", "match", "next", "state", "is_learner", "recent_active", "last_contact_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    RECENT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    last_contact_seconds: float
    def __init__(self, id: _Optional[int] = ..., match: _Optional[int] = ..., next: _Optional[int] = ..., state: _Optional[_Union[ProgressState, str]] = ..., is_learner: _Optional[bool] = ..., recent_active: _Optional[bool] = ..., last_contact_seconds: _Optional[float] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("header", "member_id", "name", "role", "term", "leader_id", "commit_index", "applied_index", "first_index", "last_index", "progress", "leader_contact_seconds", "lead_transferee", "members", "leases", "locks")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_CONTACT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEAD_TRANSFEREE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    member_id: int
    name: str
    role: Role
    term: int
    leader_id: int
    commit_index: int
    applied_index: int
    first_index: int
    last_index: int
    progress: _containers.RepeatedCompositeFieldContainer[PeerProgress]
    leader_contact_seconds: float
    lead_transferee: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    leases: int
    locks: int
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., member_id: _Optional[int] = ..., name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., first_index: _Optional[int] = ..., last_index: _Optional[int] = ..., progress: _Optional[_Iterable[_Union[PeerProgress, _Mapping]]] = ..., leader_contact_seconds: _Optional[float] = ..., lead_transferee: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., leases: _Optional[int] = ..., locks: _Optional[int] = ...) -> None: ...

class MemberListRequest(_message.Message):
    __slots__ = ("linearizable",)
    LINEARIZABLE_FIELD_NUMBER: _ClassVar[int]
    linearizable: bool
    def __init__(self, linearizable: _Optional[bool] = ...) -> None: ...

class MemberListResponse(_message.Message):
    __slots__ = ("header", "members")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MemberAddRequest(_message.Message):
    __slots__ = ("peer_addr", "as_learner", "name", "client_addr", "id")
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    AS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    peer_addr: str
    as_learner: bool
    name: str
    client_addr: str
    id: int
    def __init__(self, peer_addr: _Optional[str] = ..., as_learner: _Optional[bool] = ..., name: _Optional[str] = ..., client_addr: _Optional[str] = ..., id: _Optional[int] = ...) -> None: ...

class MemberAddResponse(_message.Message):
    __slots__ = ("header", "member", "members")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    member: Member
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MemberRemoveRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class MemberRemoveResponse(_message.Message):
    __slots__ = ("header", "members")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MemberPromoteRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class MemberPromoteResponse(_message.Message):
    __slots__ = ("header", "members")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: int
    def __init__(self, target: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ("header", "leader_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    leader_id: int
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., leader_id: _Optional[int] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("cluster_id", "member")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    member: Member
    def __init__(self, cluster_id: _Optional[str] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("name", "peer_addr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    name: str
    peer_addr: str
    def __init__(self, name: _Optional[str] = ..., peer_addr: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("header", "member", "members")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    member: Member
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GossipMemberEvent(_message.Message):
    __slots__ = ("kind", "by", "at_unix", "incarnation", "confirmations")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    by: str
    at_unix: float
    incarnation: int
    confirmations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., by: _Optional[str] = ..., at_unix: _Optional[float] = ..., incarnation: _Optional[int] = ..., confirmations: _Optional[_Iterable[str]] = ...) -> None: ...

class GossipMember(_message.Message):
    __slots__ = ("name", "addr", "state", "incarnation", "meta", "since_unix", "by", "events", "suspected_by", "confirmed_by")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    addr: str
    state: GossipState
    incarnation: int
    meta: _containers.ScalarMap[str, str]
    since_unix: float
    by: str
    events: _containers.RepeatedCompositeFieldContainer[GossipMemberEvent]
    suspected_by: str
    confirmed_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., addr: _Optional[str] = ..., state: _Optional[_Union[GossipState, str]] = ..., incarnation: _Optional[int] = ..., meta: _Optional[_Mapping[str, str]] = ..., since_unix: _Optional[float] = ..., by: _Optional[str] = ..., events: _Optional[_Iterable[_Union[GossipMemberEvent, _Mapping]]] = ..., suspected_by: _Optional[str] = ..., confirmed_by: _Optional[_Iterable[str]] = ...) -> None: ...

class MembersResponse(_message.Message):
    __slots__ = ("header", "name", "members", "stats")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    name: str
    members: _containers.RepeatedCompositeFieldContainer[GossipMember]
    stats: _containers.ScalarMap[str, int]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., name: _Optional[str] = ..., members: _Optional[_Iterable[_Union[GossipMember, _Mapping]]] = ..., stats: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("data", "last", "sha256", "size", "applied_index", "revision", "version", "header")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    last: bool
    sha256: bytes
    size: int
    applied_index: int
    revision: int
    version: int
    header: _kv_pb2.ResponseHeader
    def __init__(self, data: _Optional[bytes] = ..., last: _Optional[bool] = ..., sha256: _Optional[bytes] = ..., size: _Optional[int] = ..., applied_index: _Optional[int] = ..., revision: _Optional[int] = ..., version: _Optional[int] = ..., header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...
