"""The one exception family of the HTTP protocol layer.

Every problem the layer detects is a :class:`ProtocolError`. Bytes from the network never make
it raise anything else: whatever the peer sends ends either in events or in a
:class:`RemoteProtocolError`. A :class:`LocalProtocolError` means the code *using* the layer
asked for something HTTP forbids (a body on a 204, two Content-Lengths, a CR in a header value).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """An HTTP protocol violation; ``status_hint`` is the status a server should answer with.

    After a ``ProtocolError`` the connection is unusable for further messages: the server sends
    an error response with ``status_hint`` if it still can, then closes.
    """

    status_hint: int

    def __init__(self, msg: str, status_hint: int = 400) -> None:
        super().__init__(msg)
        self.status_hint = status_hint


class LocalProtocolError(ProtocolError):
    """This side tried to send something HTTP does not allow (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something HTTP does not allow, or more than the configured limits.

    ``status_hint`` says how a server answers: 400 for malformed or ambiguous requests, 413 for a
    body over the limit, 414 for a request target over the limit, 431 for a header block over
    the limit, 505 for an HTTP version other than 1.0 and 1.1. (A transfer coding other than
    chunked is refused with 400.)
    """
