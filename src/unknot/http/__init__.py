"""HTTP for unknot: a server running plain blocking handlers in a fiber per connection.

::

    from unknot.http import App, Response, serve

    app = App()

    @app.get("/items/{id:int}")
    def item(request, id):
        return Response.json({"id": id})

    serve(app, "127.0.0.1", 8000)

The server (`serve`, `HTTPServer`, `Timeouts`) speaks HTTP/1.0 and 1.1 with keep-alive,
pipelining, chunked bodies both ways, ``Expect: 100-continue`` and TLS. Handlers see a
`Request` and return ``(status, headers, body)`` or a `Response`; `App` routes, `StaticFiles`
serves a directory. Underneath is the sans-I/O HTTP/1.1 protocol layer (``_protocol``:
events, the connection state machine, the llhttp parser in strict mode, the framing writer),
whose names are exported too.
"""

from ._headers import Headers, MutableHeaders
from ._message import FileBody, HTTPError, Request, Response
from ._protocol import (
    CLOSED,
    DEFAULT_CLIENT_LIMITS,
    DEFAULT_LIMITS,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    ClientConnection,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    HeaderList,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    NeedData,
    Paused,
    ProtocolError,
    RemoteProtocolError,
    RequestHead,
    ResponseHead,
    ServerConnection,
    State,
)
from ._routing import App
from ._server import HTTPServer, Timeouts, serve
from ._static import StaticFiles

__all__ = [
    "App",
    "FileBody",
    "HTTPError",
    "HTTPServer",
    "Headers",
    "MutableHeaders",
    "Request",
    "Response",
    "StaticFiles",
    "Timeouts",
    "serve",
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
