"""Content types for file names (shared by `Response.file` and `StaticFiles`)."""

from __future__ import annotations

import mimetypes

_UTF8_TYPES = {"application/javascript", "application/json", "application/xml", "image/svg+xml"}
_ENCODED_TYPES = {"gzip": "application/gzip"}  # x.tar.gz is a gzip file to the browser


def guess_content_type(name: str) -> str:
    """The Content-Type for a file name: `mimetypes`' guess, UTF-8 for text, else binary."""
    guess_file_type = getattr(mimetypes, "guess_file_type", None)  # Python 3.13+
    if guess_file_type is not None:
        content_type, encoding = guess_file_type(name, strict=False)
    else:
        content_type, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, "application/octet-stream")
    if content_type is None:
        return "application/octet-stream"
    if content_type.startswith("text/") or content_type in _UTF8_TYPES:
        return content_type + "; charset=utf-8"
    return content_type
