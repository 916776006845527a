"""The HTTP client's exceptions, named as requests and httpx users expect them.

::

    ClientError                      every client error (aiohttp's name: HTTPError is the server's)
      InvalidURL (also ValueError)   not an http(s) URL, or a malformed one
      RequestError                   the request failed; ``.request`` says which
        LocalProtocolError           the request cannot be sent as given (also the protocol
                                     layer's error): a bad header, framing the body contradicts
        TransportError               ...at the connection level
          TimeoutError               (also the builtin TimeoutError)
            ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout, TotalTimeout
          NetworkError               (also the builtin ConnectionError)
            ConnectError             DNS, refused, unreachable...
              SSLError               TLS handshake or certificate verification failed
            ReadError, WriteError    the connection broke
          RemoteProtocolError        the server broke HTTP (also the protocol layer's error)
        TooManyRedirects
        DecodingError                a gzip/deflate body that does not decode
      HTTPStatusError                from ``response.raise_for_status()``: ``.response``

The builtin bases let plain code catch them too: ``except TimeoutError`` catches every timeout
of the client, ``except ConnectionError`` every network failure.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from ._protocol import LocalProtocolError as _ProtocolLocalError
from ._protocol import RemoteProtocolError as _ProtocolRemoteError

if TYPE_CHECKING:
    from ._client_response import ClientRequest, ClientResponse


class ClientError(Exception):
    """Base of every exception the HTTP client raises."""

    def __init__(self, message: str, *, request: ClientRequest | None = None) -> None:
        super().__init__(message)
        self._request = request

    @property
    def request(self) -> ClientRequest:
        """The request that failed (``RuntimeError`` if the error is not tied to one)."""
        if self._request is None:
            raise RuntimeError(f"no request is attached to this {type(self).__name__}")
        return self._request

    @request.setter
    def request(self, request: ClientRequest) -> None:
        self._request = request


class InvalidURL(ClientError, ValueError):
    """The URL is malformed, has no host, or its scheme is neither http nor https."""


class RequestError(ClientError):
    """Sending the request or receiving its response failed."""


class LocalProtocolError(RequestError, _ProtocolLocalError):
    """The request cannot be sent as given: a method, header name or value HTTP/1.1 does not
    allow, a Content-Length that the body does not match, ``Transfer-Encoding: chunked`` with a
    bytes body. Raised before connecting when the request shows it (a streamed body that ends
    short of its Content-Length shows it only while being sent). Also an instance of the
    protocol layer's ``LocalProtocolError``."""


class TransportError(RequestError):
    """The connection failed: a timeout, a network error, or a protocol violation."""


class TimeoutError(TransportError, builtins.TimeoutError):
    """A timeout of `Timeout` ran out (also an instance of the builtin ``TimeoutError``)."""


class ConnectTimeout(TimeoutError):
    """Connecting (DNS, TCP and the TLS handshake) took longer than ``Timeout.connect``."""


class ReadTimeout(TimeoutError):
    """The server sent nothing for ``Timeout.read`` seconds."""


class WriteTimeout(TimeoutError):
    """Sending (part of) the request took longer than ``Timeout.write``."""


class PoolTimeout(TimeoutError):
    """No connection of the pool became free within ``Timeout.pool``."""


class TotalTimeout(TimeoutError):
    """The whole exchange took longer than ``Timeout.total``."""


class NetworkError(TransportError, builtins.ConnectionError):
    """The network failed (also an instance of the builtin ``ConnectionError``)."""


class ConnectError(NetworkError):
    """The connection could not be made: DNS failed, refused, unreachable, TLS failed."""


class SSLError(ConnectError):
    """The TLS handshake failed, e.g. the server's certificate did not verify; the ``ssl``
    module's exception is the ``__cause__``."""


class ReadError(NetworkError):
    """The connection broke while receiving the response."""


class WriteError(NetworkError):
    """The connection broke while sending the request."""


class RemoteProtocolError(TransportError, _ProtocolRemoteError):
    """The server sent something that is not valid HTTP/1.1, or closed the connection without
    a complete response. Also an instance of the protocol layer's ``RemoteProtocolError``."""


class TooManyRedirects(RequestError):
    """More redirects than ``max_redirects``; ``.response`` is the last redirect received."""

    def __init__(
        self, message: str, *, request: ClientRequest | None = None, response: Any = None
    ) -> None:
        super().__init__(message, request=request)
        self.response: ClientResponse | None = response


class DecodingError(RequestError):
    """The body's Content-Encoding (gzip, deflate) did not decode."""


class HTTPStatusError(ClientError):
    """A 4xx or 5xx response, raised by ``ClientResponse.raise_for_status()``."""

    def __init__(self, message: str, *, request: ClientRequest, response: ClientResponse) -> None:
        super().__init__(message, request=request)
        self.response = response
