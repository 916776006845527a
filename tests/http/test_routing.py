"""App: routes, typed path parameters, 404/405/HEAD/OPTIONS, error handlers, mounts."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from unknot.http._message import HTTPError, Request
from unknot.http._response import Response, normalize_result
from unknot.http._routing import App


def call(app: Any, method: str, target: str) -> tuple[int, dict[bytes, bytes], Any]:
    """Answer a request built directly; headers as a dict (the tests use no repeats)."""
    status, headers, body = normalize_result(app(Request(method, target.encode(), [])))
    return status, dict(headers), body


def echo(request: Request, **params: Any) -> Response:
    """An endpoint answering with what it was called with."""
    assert request.path_params == params
    return Response.json(
        {"endpoint": request.method, "params": {k: repr(v) for k, v in params.items()}}
    )


def params_of(app: App, target: str, method: str = "GET") -> dict[str, str]:
    status, _, body = call(app, method, target)
    assert status == 200, (target, status, body)
    return dict(json.loads(body)["params"])


@pytest.fixture
def app() -> App:
    app = App()
    app.add_route("/", lambda request: (200, None, b"root"))
    app.add_route("/items/{id:int}", echo)
    app.add_route("/users/{name}", echo)
    app.add_route("/prices/{x:float}", echo)
    app.add_route("/things/{u:uuid}", echo)
    app.add_route("/files/{p:path}", echo)
    app.add_route("/a/{x}/b/{y:int}", echo)
    return app


def test_static_route_and_triple_result(app: App) -> None:
    assert call(app, "GET", "/") == (200, {}, b"root")


def test_typed_path_parameters(app: App) -> None:
    assert params_of(app, "/items/42") == {"id": "42"}
    assert params_of(app, "/items/007") == {"id": "7"}
    assert params_of(app, "/users/al%20ice") == {"name": "'al ice'"}
    assert params_of(app, "/prices/3.25") == {"x": "3.25"}
    assert params_of(app, "/prices/3") == {"x": "3.0"}
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert params_of(app, f"/things/{u}") == {"u": repr(u)}
    assert params_of(app, f"/things/{str(u).upper()}") == {"u": repr(u)}
    assert params_of(app, "/files/a/b/c.txt") == {"p": "'a/b/c.txt'"}
    assert params_of(app, "/files/") == {"p": "''"}
    assert params_of(app, "/a/x1/b/5") == {"x": "'x1'", "y": "5"}


def test_a_float_too_long_for_a_float_is_no_match(app: App) -> None:
    """float() of 400 digits is inf: no match (404), as an int too long for int() is."""
    assert call(app, "GET", "/prices/" + "9" * 400)[0] == 404
    assert call(app, "GET", "/prices/1." + "9" * 400)[0] == 200  # (rounds to 2.0: finite)


@pytest.mark.parametrize("template", ["/x/{a:}", "/x/{a: int}"])
def test_an_empty_or_spaced_converter_name_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="unknown converter"):
        App().add_route(template, echo)


def test_parameter_values_have_their_types() -> None:
    app = App()
    seen: list[Any] = []

    @app.get("/v/{i:int}/{f:float}/{u:uuid}/{s}")
    def endpoint(request: Request, i: int, f: float, u: uuid.UUID, s: str) -> Any:
        seen.extend([i, f, u, s])
        return 204, None, b""

    assert call(app, "GET", "/v/1/2.5/00000000-0000-0000-0000-000000000001/x")[0] == 204
    assert seen == [1, 2.5, uuid.UUID(int=1), "x"]
    assert [type(v) for v in seen] == [int, float, uuid.UUID, str]


def test_path_and_str_parameters_take_any_character_newlines_included(app: App) -> None:
    # "%0A" is a newline once decoded: {name:path} is all the rest of the path, whatever it is
    assert params_of(app, "/files/a%0Ab") == {"p": repr("a\nb")}
    assert params_of(app, "/files/a/%0A/b%0D%0A") == {"p": repr("a/\n/b\r\n")}
    assert params_of(app, "/files/%0A") == {"p": repr("\n")}
    assert params_of(app, "/users/a%0Ab") == {"name": repr("a\nb")}
    assert params_of(app, "/users/%0A") == {"name": repr("\n")}
    assert params_of(app, "/a/%0A/b/1") == {"x": repr("\n"), "y": "1"}
    mounted = App()
    mounted.add_route("/{rest:path}/end", echo)
    assert params_of(mounted, "/x%0Ay/z/end") == {"rest": repr("x\ny/z")}


@pytest.mark.parametrize(
    "target",
    [
        "/items/1%0A",  # a trailing newline is no digit ($ would have matched before it)
        "/items/%0A1",
        "/prices/1.5%0A",
        "/things/12345678-1234-5678-1234-567812345678%0A",
        "/users/a%0A/b",
        "/a/x/b/1%0A",
    ],
)
def test_typed_parameters_refuse_newlines(app: App, target: str) -> None:
    assert call(app, "GET", target)[0] == 404


@pytest.mark.parametrize(
    "target",
    [
        "/items/abc",
        "/items/-1",
        "/items/1.5",
        "/items/",
        "/items/1/2",
        "/items/" + "9" * 5000,  # int() refuses it: still a 404, not a 500
        "/users/",
        "/users/a/b",
        "/prices/1.",
        "/prices/.5",
        "/prices/1e5",
        "/things/not-a-uuid",
        "/things/12345678-1234-5678-1234-56781234567",
        "/files",
        "/nowhere",
        "/a/x/b/y",
        "/ITEMS/1",  # case matters
    ],
)
def test_non_matching_paths_are_404(app: App, target: str) -> None:
    status, headers, body = call(app, "GET", target)
    assert status == 404
    assert body == b"Not Found\n"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"


def test_static_templates_win_over_parameters_and_order_decides_the_rest() -> None:
    app = App()
    app.add_route("/{lang}/about", lambda r, lang: (200, None, b"lang " + lang.encode()))
    app.add_route("/items/{id}", lambda r, id: (200, None, b"item " + id.encode()))
    app.add_route("/items/new", lambda r: (200, None, b"static new"))
    app.add_route("/{a}/{b}", lambda r, a, b: (200, None, b"pair"))  # after the buckets exist
    assert call(app, "GET", "/items/new")[2] == b"static new"
    assert call(app, "GET", "/items/about")[2] == b"lang items"  # added first, matches first
    assert call(app, "GET", "/items/7")[2] == b"item 7"
    assert call(app, "GET", "/fr/about")[2] == b"lang fr"
    assert call(app, "GET", "/x/y")[2] == b"pair"
    assert call(app, "GET", "/items/z/more")[0] == 404


def test_decorators_register_methods() -> None:
    app = App()
    for method in ("get", "post", "put", "patch", "delete"):
        getattr(app, method)("/r")(lambda request, m=method: (200, None, m.encode()))
    app.route("/multi", methods=["post", "PUT"])(lambda request: (201, None, b"multi"))
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        assert call(app, method, "/r")[2] == method.lower().encode()
    assert call(app, "PUT", "/multi")[0] == 201
    assert call(app, "POST", "/multi")[0] == 201


def test_405_lists_allowed_methods() -> None:
    app = App()
    app.add_route("/r", lambda request: (200, None, b""), ["GET", "POST"])
    status, headers, body = call(app, "DELETE", "/r")
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD, POST, OPTIONS"
    assert body == b"Method Not Allowed\n"


def test_405_collects_methods_of_every_matching_template() -> None:
    app = App()
    app.add_route("/i/{id:int}", lambda request, id: (200, None, b"int"), ["GET"])
    app.add_route("/i/{name}", lambda request, name: (200, None, b"name"), ["POST"])
    app.add_route("/i/static", lambda request: (200, None, b"static"), ["PUT"])
    assert call(app, "POST", "/i/5")[2] == b"name"  # the int template has no POST: go on
    assert call(app, "GET", "/i/5")[2] == b"int"
    assert call(app, "POST", "/i/static")[2] == b"name"
    status, headers, _ = call(app, "DELETE", "/i/static")
    assert status == 405
    assert headers[b"allow"] == b"PUT, OPTIONS, POST"
    status, headers, _ = call(app, "DELETE", "/i/5")
    assert headers[b"allow"] == b"GET, HEAD, OPTIONS, POST"


def test_head_is_routed_to_get_unless_given() -> None:
    app = App()
    app.add_route("/g", lambda request: (200, {"x-method": request.method}, b"body"))
    app.add_route("/h", lambda request: (200, None, b"get"))
    app.add_route("/h", lambda request: (200, None, b"head"), ["HEAD"])
    app.add_route("/p/{x}", lambda request, x: (200, None, x.encode()))
    # the body is kept here: the server drops it from an answer to HEAD
    assert call(app, "HEAD", "/g") == (200, {b"x-method": b"HEAD"}, b"body")
    assert call(app, "HEAD", "/h")[2] == b"head"
    assert call(app, "GET", "/h")[2] == b"get"
    assert call(app, "HEAD", "/p/v")[2] == b"v"
    post_only = App()
    post_only.add_route("/q", lambda request: (200, None, b""), ["POST"])
    assert call(post_only, "HEAD", "/q")[0] == 405


def test_options_is_answered_unless_given() -> None:
    app = App()
    app.add_route("/r", lambda request: (200, None, b""), ["GET", "DELETE"])
    app.add_route("/d/{x}", lambda request, x: (200, None, b""), ["PUT"])
    app.add_route("/own", lambda request: (200, {"x-own": "1"}, b""), ["OPTIONS"])
    assert call(app, "OPTIONS", "/r") == (204, {b"allow": b"GET, HEAD, DELETE, OPTIONS"}, b"")
    assert call(app, "OPTIONS", "/d/1") == (204, {b"allow": b"PUT, OPTIONS"}, b"")
    assert call(app, "OPTIONS", "/own") == (200, {b"x-own": b"1"}, b"")
    assert call(app, "OPTIONS", "/missing")[0] == 404
    status, headers, _ = call(app, "OPTIONS", "*")
    assert status == 204
    assert headers[b"allow"].split(b", ") == [b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"PUT"]


def test_error_handlers_by_status() -> None:
    app = App()
    app.add_route("/r", lambda request: (200, None, b""))
    app.add_route("/teapot", lambda request: _raise(HTTPError(418, "short and stout")))

    @app.errorhandler(404)
    def not_found(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, HTTPError)
        return Response.json({"missing": request.path}, status=404)

    @app.errorhandler(405)
    def not_allowed(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, HTTPError)
        return 405, exc.headers + [(b"x-custom", b"1")], b"custom 405"

    assert call(app, "GET", "/x") == (
        404,
        {b"content-type": b"application/json"},
        b'{"missing":"/x"}',
    )
    assert call(app, "POST", "/r") == (
        405,
        {b"allow": b"GET, HEAD, OPTIONS", b"x-custom": b"1"},
        b"custom 405",
    )
    assert call(app, "GET", "/teapot")[:3:2] == (418, b"short and stout\n")


def _raise(exc: BaseException) -> Any:
    raise exc


class AppError(Exception):
    pass


class SpecificError(AppError):
    pass


def test_error_handlers_by_exception_class() -> None:
    app = App()
    app.add_route("/specific", lambda request: _raise(SpecificError("s")))
    app.add_route("/base", lambda request: _raise(AppError("b")))
    app.add_route("/key", lambda request: _raise(KeyError("k")))
    app.add_route("/http", lambda request: _raise(HTTPError(409)))
    app.add_route("/http-404", lambda request: _raise(HTTPError(404)))
    app.errorhandler(AppError)(lambda request, exc: (500, None, b"app error " + str(exc).encode()))
    app.errorhandler(SpecificError)(lambda request, exc: (400, None, b"specific"))
    app.errorhandler(HTTPError)(lambda request, exc: (599, None, str(exc).encode()))
    app.errorhandler(404)(lambda request, exc: (404, None, b"status handler"))
    assert call(app, "GET", "/specific") == (400, {}, b"specific")
    assert call(app, "GET", "/base") == (500, {}, b"app error b")
    assert call(app, "GET", "/http") == (599, {}, b"409 Conflict")
    assert call(app, "GET", "/http-404") == (404, {}, b"status handler")  # status wins
    with pytest.raises(KeyError):  # no handler: propagates (the server answers 500)
        call(app, "GET", "/key")


def test_an_unhandled_exception_propagates_and_handle_lets_http_errors_through() -> None:
    app = App()
    app.add_route("/boom", lambda request: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        app(Request("GET", b"/boom", []))
    with pytest.raises(HTTPError) as info:
        app.handle(Request("GET", b"/missing", []))
    assert info.value.status == 404


def test_an_error_handler_may_raise_an_http_error() -> None:
    app = App()
    app.add_route("/forbidden", lambda request: _raise(PermissionError()))
    app.errorhandler(PermissionError)(lambda request, exc: _raise(HTTPError(403, "no")))
    assert call(app, "GET", "/forbidden") == (
        403,
        {b"content-type": b"text/plain; charset=utf-8"},
        b"no\n",
    )
    with pytest.raises(HTTPError):
        app.handle(Request("GET", b"/forbidden", []))


def test_endpoints_run_once_per_request() -> None:
    calls: list[str] = []
    app = App()
    app.add_route("/ok", lambda request: calls.append("ok") or (200, None, b""))
    app.add_route("/fail", lambda request: calls.append("fail") or _raise(HTTPError(409)))
    app.add_route("/boom", lambda request: calls.append("boom") or 1 / 0)
    call(app, "GET", "/ok")
    call(app, "GET", "/fail")
    with pytest.raises(ZeroDivisionError):
        call(app, "GET", "/boom")
    assert calls == ["ok", "fail", "boom"]


def test_a_failing_error_handler_propagates() -> None:
    app = App()
    app.errorhandler(404)(lambda request, exc: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        app(Request("GET", b"/missing", []))


def test_mount_sees_the_relative_path() -> None:
    seen: list[tuple[str, str, bytes]] = []
    api = App()

    @api.get("/users/{id:int}")
    def user(request: Request, id: int) -> Any:
        seen.append((request.path, request.root_path, request.raw_path))
        return Response.json({"id": id})

    @api.get("/")
    def api_root(request: Request) -> Any:
        seen.append((request.path, request.root_path, request.raw_path))
        return 200, None, b"api root"

    app = App()
    app.mount("/api/", api)  # a trailing slash is dropped
    request = Request("GET", b"/api/users/3", [])
    assert normalize_result(app(request))[2] == b'{"id":3}'
    assert seen.pop() == ("/users/3", "/api", b"/api/users/3")
    assert (request.path, request.root_path) == ("/api/users/3", "")  # restored
    assert call(app, "GET", "/api")[2] == b"api root"
    assert seen.pop() == ("", "/api", b"/api")
    assert call(app, "GET", "/api/")[2] == b"api root"
    assert call(app, "GET", "/apix/users/3")[0] == 404  # whole segments only
    assert call(app, "GET", "/api/nope")[0] == 404


def test_nested_mounts_and_longest_prefix() -> None:
    inner = App()
    inner.add_route("/x", lambda r: (200, None, f"inner {r.root_path} {r.path}".encode()))
    middle = App()
    middle.mount("/in", inner)
    app = App()
    app.mount("/m", middle)
    app.mount("/m/in/deep", lambda r: (200, None, f"deep {r.root_path} {r.path}".encode()))
    app.mount("/", lambda r: (200, None, f"catch-all {r.path}".encode()))
    assert call(app, "GET", "/m/in/x")[2] == b"inner /m/in /x"
    assert call(app, "GET", "/m/in/deep/y")[2] == b"deep /m/in/deep /y"
    assert call(app, "GET", "/elsewhere")[2] == b"catch-all /elsewhere"


def test_routes_win_over_mounts() -> None:
    app = App()
    app.add_route("/api/health", lambda r: (200, None, b"route"))
    app.mount("/api", lambda r: (200, None, b"mount"))
    assert call(app, "GET", "/api/health")[2] == b"route"
    assert call(app, "GET", "/api/other")[2] == b"mount"
    assert call(app, "POST", "/api/health")[0] == 405  # the route owns the path


def test_mounted_errors_reach_the_parent_handlers() -> None:
    child = App()
    child.add_route("/own", lambda r: _raise(HTTPError(403)))
    child.add_route("/boom", lambda r: _raise(AppError("x")))
    child.errorhandler(403)(lambda r, exc: (403, None, b"child 403"))
    parent = App()
    parent.mount("/c", child)
    parent.errorhandler(404)(lambda r, exc: (404, None, f"parent 404 {r.path}".encode()))
    parent.errorhandler(AppError)(lambda r, exc: (500, None, b"parent app error"))
    assert call(parent, "GET", "/c/own")[2] == b"child 403"
    assert call(parent, "GET", "/c/missing")[2] == b"parent 404 /c/missing"
    assert call(parent, "GET", "/c/boom")[2] == b"parent app error"
    assert call(child, "GET", "/missing")[2] == b"Not Found\n"  # alone, its own default


def test_app_static_mounts_a_directory(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hi")
    app = App()
    files = app.static("/assets", str(tmp_path), index=None)
    assert files.index is None
    status, headers, body = call(app, "GET", "/assets/hello.txt")
    assert status == 200
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert body == b"hi"  # (a small file: read whole; a large one would be a FileBody)
    app.errorhandler(404)(lambda r, exc: (404, None, b"custom"))
    assert call(app, "GET", "/assets/missing.txt")[2] == b"custom"
    assert call(app, "GET", "/assets/../x")[2] == b"custom"


@pytest.mark.parametrize(
    "template, error",
    [
        ("items", ValueError),
        ("/items/{id:integer}", ValueError),
        ("/items/{1x}", ValueError),
        ("/items/{}", ValueError),
        ("/items/{a}/{a}", ValueError),
        ("/items/{a", ValueError),
        ("/items/a}", ValueError),
    ],
)
def test_bad_templates_are_refused(template: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        App().add_route(template, echo)


def test_bad_registrations_are_refused() -> None:
    app = App()
    app.add_route("/r", echo)
    with pytest.raises(ValueError, match="already"):
        app.add_route("/r", echo)
    app.add_route("/p/{x}", echo)
    with pytest.raises(ValueError, match="already"):
        app.add_route("/p/{x}", echo, ["get"])
    with pytest.raises(ValueError, match="already"):
        app.add_route("/p/{x}", echo, ["POST", "GET"])  # refused whole: POST stays free
    app.add_route("/p/{x}", echo, ["POST"])
    with pytest.raises(ValueError, match="already"):
        app.add_route("/q", echo, ["GET", "get"])
    with pytest.raises(TypeError):
        app.add_route("/s", echo, "GET")
    with pytest.raises(ValueError):
        app.add_route("/s", echo, [])
    with pytest.raises(TypeError):
        app.errorhandler("404")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        app.mount("api", echo)
    app.mount("/api", echo)
    with pytest.raises(ValueError, match="mounted already"):
        app.mount("/api/", echo)
    assert "2 routes, 1 mounts" in repr(app)
