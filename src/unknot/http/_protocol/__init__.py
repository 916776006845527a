"""The sans-I/O HTTP/1.1 protocol layer: bytes in, events out; events in, bytes out.

No sockets and no fibers: a :class:`ServerConnection` or :class:`ClientConnection` is fed the
bytes received and returns the bytes to send, so it is tested and fuzzed alone and shared by
the server and the client. Parsing is llhttp's (through httptools) in strict mode; the state
machine is in ``_state``; limits are in :class:`Limits`.
"""

from ._client_conn import ClientConnection
from ._connection import Connection
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    HeaderList,
    InformationalResponse,
    NeedData,
    Paused,
    RequestHead,
    ResponseHead,
)
from ._limits import DEFAULT_CLIENT_LIMITS, DEFAULT_LIMITS, Limits
from ._server_conn import ServerConnection
from ._state import CLOSED, DONE, ERROR, IDLE, MUST_CLOSE, SEND_BODY, SEND_RESPONSE, State

__all__ = [
    "CLOSED",
    "DEFAULT_CLIENT_LIMITS",
    "DEFAULT_LIMITS",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "NEED_DATA",
    "PAUSED",
    "SEND_BODY",
    "SEND_RESPONSE",
    "ClientConnection",
    "Connection",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "HeaderList",
    "InformationalResponse",
    "Limits",
    "LocalProtocolError",
    "NeedData",
    "Paused",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestHead",
    "ResponseHead",
    "ServerConnection",
    "State",
]
