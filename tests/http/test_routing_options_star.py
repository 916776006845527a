"""``OPTIONS *`` asks about the server in general (RFC 9110, 9.3.7): an `App`'s answer lists
the methods of its own routes and of what it mounts (`App`\\ s, recursively, and `StaticFiles`);
a plain handler mounted cannot tell its methods and is not called for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unknot.http._message import Request
from unknot.http._response import normalize_result
from unknot.http._routing import App
from unknot.http._static import StaticFiles


def allow_of_star(app: App) -> list[str]:
    """The methods ``OPTIONS *`` lists (a 204 with Allow)."""
    status, headers, body = normalize_result(app(Request("OPTIONS", b"*", [])))
    assert (status, body) == (204, b"")
    return dict(headers)[b"allow"].decode().split(", ")


def ok(request: Request, **params: Any) -> Any:
    return 200, None, b"ok"


def test_a_mounted_app_adds_its_methods() -> None:
    api = App()
    api.add_route("/items", ok, ["POST", "DELETE"])
    app = App()
    app.add_route("/", ok)
    app.mount("/api", api)
    assert allow_of_star(app) == ["GET", "HEAD", "OPTIONS", "POST", "DELETE"]


def test_an_app_with_mounts_only() -> None:
    api = App()
    api.add_route("/items/{id:int}", ok, ["PUT", "PATCH"])
    app = App()
    app.mount("/api", api)
    assert allow_of_star(app) == ["PUT", "PATCH", "OPTIONS"]


def test_mounts_within_mounts_and_static_files(tmp_path: Path) -> None:
    inner = App()
    inner.add_route("/x", ok, ["DELETE"])
    middle = App()
    middle.mount("/inner", inner)
    app = App()
    app.add_route("/form", ok, ["POST"])
    app.mount("/middle", middle)
    app.static("/assets", str(tmp_path))
    assert allow_of_star(app) == ["POST", "OPTIONS", "DELETE", "GET", "HEAD"]
    files_only = App()
    files_only.mount("/", StaticFiles(tmp_path))
    assert allow_of_star(files_only) == ["GET", "HEAD", "OPTIONS"]


def test_a_plain_handler_mounted_is_not_called() -> None:
    calls: list[str] = []

    def plain(request: Request) -> Any:
        calls.append(request.target.decode())
        return 200, None, b"plain"

    app = App()
    app.add_route("/r", ok)
    app.mount("/plain", plain)
    assert allow_of_star(app) == ["GET", "HEAD", "OPTIONS"]
    assert calls == []


def test_an_app_mounted_in_itself_does_not_loop() -> None:
    app = App()
    app.add_route("/r", ok, ["PUT"])
    app.mount("/again", app)
    assert allow_of_star(app) == ["PUT", "OPTIONS"]


def test_a_mounted_app_answers_options_star_itself_the_same_way() -> None:
    api = App()
    api.add_route("/items", ok, ["POST"])
    assert allow_of_star(api) == ["POST", "OPTIONS"]
    empty = App()
    assert allow_of_star(empty) == ["OPTIONS"]
