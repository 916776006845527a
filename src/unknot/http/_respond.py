"""Writing to the client: `write`, and the bodies that are not bytes (files, iterables).

A `FileBody` goes out with ``sendfile`` (zero-copy) on plain sockets, and read in 64 KiB
pieces and written over TLS; the file is closed afterwards, whatever happens. An iterable
goes out chunk by chunk, each chunk in one write: chunked for an HTTP/1.1 client (unless the
handler gave a Content-Length), until the connection closes for an HTTP/1.0 one. The head waits
for the first chunk, so that an iterable failing at once still gets a clean 500, and whether
it says ``Connection: close`` is decided then (the iterable may have read the request body to
make that chunk; see ``_conn._body_closes``); a list or a tuple of bytes is joined and sent as
one response with a Content-Length. The iterable's ``close()`` is always called (a
generator's ``finally`` runs), also when the client goes away. A HEAD request gets the head
only: the file is not read, the iterable not iterated.

Failures: `ClientGone` when the client cannot be written to (it went away or stopped reading
for the write timeout): the connection ends quietly. `ResponseAborted` when the body failed
after the head went out (the iterable raised, the file shrank): the connection is dropped, the
only way left to tell the client, and the cause is logged. Anything raised before the head
went out propagates unchanged: the server answers it with a 500.
"""

from __future__ import annotations

import logging
import socket as _socket
from collections.abc import Iterable, Iterator
from time import monotonic
from typing import TYPE_CHECKING, Any

from ._headers import RawHeaders
from ._message import FileBody

if TYPE_CHECKING:
    from ._body import RequestBody
    from ._conn import HTTPConnection
    from ._protocol import RequestHead

__all__ = ["ClientGone", "ResponseAborted", "send_file", "send_stream", "write"]

log = logging.getLogger("unknot.http")

#: The most bytes one write (hence one write timeout) covers.
WRITE_BLOCK = 1 << 20
_MSG_MORE = getattr(_socket, "MSG_MORE", 0)


class ClientGone(ConnectionError):
    """The connection to the client broke: it went away, or stopped reading for longer than
    the write timeout. Raised to a handler reading the body, too."""


class ResponseAborted(Exception):
    """The response failed after its head was sent (``__cause__`` says why): the connection
    must be dropped."""


def write(conn: HTTPConnection, data: bytes, more: bool = False) -> None:
    """Send all of ``data`` to the client, within the write timeout per 1 MiB. ``more``: more
    bytes follow at once (``MSG_MORE``: the kernel may hold this piece to fill a packet)."""
    sock = conn.sock
    timeout = conn.settings.write_timeout
    try:
        conn.deadline = monotonic() + timeout
        if len(data) <= WRITE_BLOCK:
            if more and _MSG_MORE and not conn.settings.tls:
                sock.sendall(data, _MSG_MORE)
            else:
                sock.sendall(data)
            return
        with memoryview(data) as view:
            for start in range(0, len(view), WRITE_BLOCK):
                conn.deadline = monotonic() + timeout
                sock.sendall(view[start : start + WRITE_BLOCK])
    except OSError as exc:
        raise ClientGone(f"cannot write to the client: {exc}") from exc
    finally:
        conn.deadline = 0.0


def send_file(
    conn: HTTPConnection, status: int, headers: RawHeaders, body: FileBody, is_head: bool
) -> int:
    """Send a response whose body is ``body``; the body bytes sent. Closes the file."""
    try:
        proto = conn.proto
        length = None if status == 204 or status == 304 else body.length()
        data = conn.pending + proto.start_response(status, headers, content_length=length)
        conn.pending = b""
        if is_head or not length:
            write(conn, data + proto.end_response())
            return 0
        write(conn, data, more=True)
        try:
            sent = _send_file_bytes(conn, body, length)
            if sent < length:
                raise OSError(f"the file ended {length - sent} bytes short of its length")
            proto.data_sent(sent)
            proto.end_response()
        except ClientGone:
            raise
        except Exception as exc:
            raise ResponseAborted("sending the file failed") from exc
        return sent
    finally:
        body.close()


def _send_file_bytes(conn: HTTPConnection, body: FileBody, length: int) -> int:
    """Up to ``length`` bytes of ``body`` sent (fewer if the file is shorter)."""
    if conn.settings.tls:  # no sendfile through TLS: read and write
        sent = 0
        for chunk in body.chunks():
            write(conn, chunk)
            sent += len(chunk)
        return sent
    sock = conn.sock
    timeout = conn.settings.write_timeout
    file, offset = body.file, body.offset
    sent = 0
    try:
        while sent < length:
            conn.deadline = monotonic() + timeout
            n = sock.sendfile(file, offset + sent, min(WRITE_BLOCK, length - sent))
            if not n:
                break
            sent += n
    except (ConnectionError, TimeoutError) as exc:
        raise ClientGone(f"cannot write to the client: {exc}") from exc
    finally:
        conn.deadline = 0.0
    return sent


def send_stream(
    conn: HTTPConnection,
    status: int,
    headers: RawHeaders,
    chunks: Iterable[Any],
    head: RequestHead,
    body: RequestBody | None,
) -> int:
    """Send a response to ``head`` whose body is the bytes ``chunks`` yields; the body bytes
    sent. Whether the head says ``Connection: close`` is decided when it is written (see
    `HTTPConnection.head_headers`): after the first chunk, which the iterable may have read
    ``body`` to make, and ``stop`` may have been called meanwhile."""
    proto = conn.proto
    is_head = head.method == b"HEAD"
    try:
        if type(chunks) is list or type(chunks) is tuple:
            content = b"".join([_as_bytes(chunk) for chunk in chunks])
            headers = conn.head_headers(head, body, headers, False)
            data = conn.pending + proto.send_response(status, headers, content)
            conn.pending = b""
            write(conn, data)
            return 0 if is_head else len(content)
        if is_head or status == 204 or status == 304:
            # (the iterable is not iterated: it reads nothing)
            headers = conn.head_headers(head, body, headers, False)
            data = conn.pending + proto.start_response(status, headers) + proto.end_response()
            conn.pending = b""
            write(conn, data)
            return 0
        iterator = iter(chunks)
        first = _as_bytes(next(iterator, b""))
        headers = conn.head_headers(head, body, headers, True)
        data = conn.pending + proto.start_response(status, headers) + proto.send_data(first)
        conn.pending = b""
        try:
            write(conn, data)
            sent = len(first)
            for chunk in _rest(iterator):
                if chunk:
                    write(conn, proto.send_data(chunk))
                    sent += len(chunk)
            write(conn, proto.end_response())
        except ClientGone:
            raise
        except Exception as exc:
            raise ResponseAborted("streaming the response failed") from exc
        return sent
    finally:
        _close(chunks)


def _rest(iterator: Iterator[Any]) -> Iterator[bytes]:
    for chunk in iterator:
        yield _as_bytes(chunk)


def _as_bytes(chunk: Any) -> bytes:
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"a streamed body yields bytes, not {type(chunk).__name__}")


def _close(chunks: Any) -> None:
    """Call ``chunks.close()`` if it has one; what it raises is logged, not propagated."""
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing a streamed response body failed")
