"""Writing to the client: `write`, and the bodies that are not bytes (files, iterables).

A `FileBody` goes out with ``sendfile`` (zero-copy) on plain sockets, and read in 64 KiB
pieces and written over TLS; the file is closed afterwards, whatever happens. An iterable
goes out chunk by chunk, each chunk in one write: chunked for an HTTP/1.1 client (unless the
handler gave a Content-Length), until the connection closes for an HTTP/1.0 one. The head waits
for the first chunk, so that an iterable failing at once still gets a clean 500, and whether
it says ``Connection: close`` is decided then (the iterable may have read the request body to
make that chunk; see ``_conn._body_closes``). As the iterable may read the body after its first
chunk too, a client waiting for ``100 Continue`` gets it before the head. A list or a tuple of
bytes is joined and sent as one response with a Content-Length. The iterable's ``close()`` is
always called (a generator's ``finally`` runs), also when the client goes away. A HEAD request
gets the head only: the file is not read, the iterable not iterated.

Failures: `ClientGone` when the client cannot be written to (it went away or stopped reading
for the write timeout): the connection ends quietly. Whatever cuts a response short after its
head was handed to the socket carries the body bytes written before it (`sent_before`), for
the access log. `ResponseAborted` when the body failed
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

__all__ = [
    "ClientGone",
    "ResponseAborted",
    "record_sent",
    "send_file",
    "send_stream",
    "sent_before",
    "write",
]

log = logging.getLogger("unknot.http")

#: The most bytes one write (hence one write timeout) covers.
WRITE_BLOCK = 1 << 20
_MSG_MORE = getattr(_socket, "MSG_MORE", 0)


class ClientGone(ConnectionError):
    """The connection to the client broke: it went away, or stopped reading for longer than
    the write timeout. Raised to a handler reading the body, too."""

    #: Raised by `write`: how many bytes of its data went out before the failure (in whole
    #: blocks of `WRITE_BLOCK`: what the failed ``sendall`` sent is not known).
    written = 0


class ResponseAborted(Exception):
    """The response failed after its head was sent (``__cause__`` says why): the connection
    must be dropped."""


#: The attribute `record_sent` sets on an exception.
_SENT = "_unknot_body_sent"


def record_sent(exc: BaseException, sent: int) -> None:
    """Note on ``exc``, which cut a response short after its head was handed to the socket,
    the body bytes written before it (for the access log: see `sent_before`)."""
    try:
        setattr(exc, _SENT, sent)
    except (AttributeError, TypeError):  # (an exception class without a __dict__)
        pass


def sent_before(exc: BaseException) -> int | None:
    """The body bytes `record_sent` noted on ``exc``; None if the response's head had not gone
    out (nothing was sent for it)."""
    sent: int | None = getattr(exc, _SENT, None)
    return sent


def write(conn: HTTPConnection, data: bytes, more: bool = False) -> None:
    """Send all of ``data`` to the client, within the write timeout per 1 MiB. ``more``: more
    bytes follow at once (``MSG_MORE``: the kernel may hold this piece to fill a packet)."""
    sock = conn.sock
    timeout = conn.settings.write_timeout
    start = 0
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
        gone = ClientGone(f"cannot write to the client: {exc}")
        gone.written = start
        raise gone from exc
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
        sent = 0
        try:
            if is_head or not length:
                write(conn, data + proto.end_response())
                return 0
            write(conn, data, more=True)
            sent = _send_file_bytes(conn, body, length)
            if sent < length:
                raise OSError(f"the file ended {length - sent} bytes short of its length")
            proto.data_sent(sent)
            proto.end_response()
        except ClientGone as exc:
            record_sent(exc, sent_before(exc) or sent)
            raise
        except Exception as exc:
            aborted = ResponseAborted("sending the file failed")
            record_sent(aborted, sent_before(exc) or sent)
            raise aborted from exc
        except BaseException as exc:  # (cancelled by ``stop``...)
            record_sent(exc, sent_before(exc) or sent)
            raise
        return sent
    finally:
        body.close()


def _send_file_bytes(conn: HTTPConnection, body: FileBody, length: int) -> int:
    """Up to ``length`` bytes of ``body`` sent (fewer if the file is shorter). An exception
    out of it carries the bytes sent before it (`record_sent`)."""
    sent = 0
    if conn.settings.tls:  # no sendfile through TLS: read and write
        try:
            for chunk in body.chunks():
                write(conn, chunk)
                sent += len(chunk)
        except BaseException as exc:
            record_sent(exc, sent)
            raise
        return sent
    sock = conn.sock
    timeout = conn.settings.write_timeout
    file, offset = body.file, body.offset
    try:
        while sent < length:
            conn.deadline = monotonic() + timeout
            n = sock.sendfile(file, offset + sent, min(WRITE_BLOCK, length - sent))
            if not n:
                break
            sent += n
    except (ConnectionError, TimeoutError) as exc:
        gone = ClientGone(f"cannot write to the client: {exc}")
        record_sent(gone, sent)
        raise gone from exc
    except BaseException as exc:
        record_sent(exc, sent)
        raise
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
            size = 0 if is_head else len(content)
            try:
                write(conn, data)
            except ClientGone as exc:
                record_sent(exc, max(0, min(size, exc.written - (len(data) - size))))
                raise
            return size
        if is_head or status == 204 or status == 304:
            # (the iterable is not iterated: it reads nothing)
            headers = conn.head_headers(head, body, headers, False)
            data = conn.pending + proto.start_response(status, headers) + proto.end_response()
            conn.pending = b""
            try:
                write(conn, data)
            except ClientGone as exc:
                record_sent(exc, 0)
                raise
            return 0
        iterator = iter(chunks)
        first = _as_bytes(next(iterator, b""))
        data = conn.pending
        if body is not None and proto.client_is_waiting_for_100_continue:
            # The iterable may read the body after this head (RFC 9110 10.1.1): a client
            # waiting for the 100 would not send it once the final answer has begun.
            data += proto.send_informational(100)
        headers = conn.head_headers(head, body, headers, True)
        data += proto.start_response(status, headers) + proto.send_data(first)
        conn.pending = b""
        sent = 0
        try:
            write(conn, data)
            sent = len(first)
            for chunk in _rest(iterator):
                if chunk:
                    write(conn, proto.send_data(chunk))
                    sent += len(chunk)
            write(conn, proto.end_response())
        except ClientGone as exc:
            record_sent(exc, sent)
            raise
        except Exception as exc:
            aborted = ResponseAborted("streaming the response failed")
            record_sent(aborted, sent)
            raise aborted from exc
        except BaseException as exc:  # (cancelled by ``stop``...)
            record_sent(exc, sent)
            raise
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
