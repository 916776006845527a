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

from ._client import (
    Client,
    delete,
    get,
    head,
    options,
    patch,
    post,
    put,
    request,
)
from ._client_errors import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    DecodingError,
    HTTPStatusError,
    InvalidURL,
    NetworkError,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RequestError,
    SSLError,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
    WriteError,
    WriteTimeout,
)
from ._client_errors import RemoteProtocolError as RemoteProtocolError
from ._client_errors import TimeoutError as TimeoutException
from ._client_response import ClientRequest, ClientResponse
from ._client_timeout import Timeout
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
    "CLOSED",
    "Client",
    "ClientConnection",
    "ClientError",
    "ClientRequest",
    "ClientResponse",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "ConnectionClosed",
    "DEFAULT_CLIENT_LIMITS",
    "DEFAULT_LIMITS",
    "DONE",
    "Data",
    "DecodingError",
    "ERROR",
    "EndOfMessage",
    "Event",
    "FileBody",
    "HTTPError",
    "HTTPServer",
    "HTTPStatusError",
    "HeaderList",
    "Headers",
    "IDLE",
    "InformationalResponse",
    "InvalidURL",
    "Limits",
    "LocalProtocolError",
    "MUST_CLOSE",
    "MutableHeaders",
    "NEED_DATA",
    "NeedData",
    "NetworkError",
    "PAUSED",
    "Paused",
    "PoolTimeout",
    "ProtocolError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Request",
    "RequestError",
    "RequestHead",
    "Response",
    "ResponseHead",
    "SEND_BODY",
    "SEND_RESPONSE",
    "SSLError",
    "ServerConnection",
    "State",
    "StaticFiles",
    "Timeout",
    "TimeoutException",
    "Timeouts",
    "TooManyRedirects",
    "TotalTimeout",
    "TransportError",
    "WriteError",
    "WriteTimeout",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
    "serve",
]
