"""`App`: route requests to endpoints by method and path; an `App` is itself a handler.

::

    app = App()

    @app.get("/items/{id:int}")
    def item(request, id):
        return Response.json({"id": id})

    app.static("/assets", "./public")
    app.mount("/admin", admin_app)

Path templates are matched against the percent-decoded path. ``{name}`` matches one segment
(``str``); ``{name:int}`` digits (an ``int``); ``{name:float}`` digits with an optional
fraction (a finite ``float``); ``{name:uuid}`` a UUID (a `uuid.UUID`); ``{name:path}`` the
rest of the path, slashes included (possibly empty). ``{name}`` and ``{name:path}`` take any
other character, a decoded newline (``%0A``) included. A value that does not convert is no
match (404, not 500).

Lookup: a template without parameters is one dict lookup, and it wins over templates with
parameters; the others are tried in the order they were added, among those whose first
segment could match (templates are grouped by their first literal segment). Matching is
exact: ``/items`` and ``/items/`` are different paths.

Answers the `App` gives by itself: 404 when no route or mount matches; 405 with ``Allow``
when the path matches but not the method; HEAD routed to the GET endpoint (unless a HEAD
endpoint is given: the server drops the body of an answer to HEAD and keeps its headers);
OPTIONS answered 204 with ``Allow`` (unless an OPTIONS endpoint is given). The 404 and 405
answers are `HTTPError`\\ s, so error handlers (``@app.errorhandler(404)``) can change them; the
204 is a plain `Response`.

``OPTIONS *`` asks about the server in general (RFC 9110, 9.3.7): 204 with ``Allow`` listing
every method of the app's routes and of what it mounts, `App`\\ s (their routes and mounts, in
turn) and `StaticFiles` (GET, HEAD, OPTIONS). A plain handler mounted cannot tell its methods:
it is left out of that list, and not called for ``*`` (it expects a path below its prefix).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ._message import HTTPError, Request
from ._response import Response
from ._static import STATIC_METHODS, StaticFiles

__all__ = ["App", "Endpoint", "Handler"]

#: ``endpoint(request, **path_params)`` returns what a handler returns.
Endpoint = Callable[..., Any]
#: ``handler(request)`` returns a `Response` or ``(status, headers, body)``.
Handler = Callable[[Request], Any]
#: ``error_handler(request, exc)`` returns what a handler returns.
ErrorHandler = Callable[[Request, Exception], Any]

_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: converter name -> (regex for the value, function converting it; None keeps the str)
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "str": ("[^/]+", None),
    "int": ("[0-9]+", int),
    "float": (r"[0-9]+(?:\.[0-9]+)?", lambda value: _finite(float(value))),
    "uuid": (_UUID, uuid.UUID),
    "path": (".*", None),
}
_PARAM = re.compile(r"\{([^{}:]*)(?::([^{}]*))?\}")


def _finite(value: float) -> float:
    """``value`` if finite: a float parameter too long for a float (``inf``) is no match."""
    if value == math.inf:
        raise ValueError("not a finite number")
    return value


class _Route:
    """The endpoints of one path template, by method."""

    __slots__ = ("template", "regex", "converters", "endpoints", "explicit", "methods")

    def __init__(
        self,
        template: str,
        regex: re.Pattern[str] | None,
        converters: tuple[tuple[str, Callable[[str], Any]], ...],
    ) -> None:
        self.template = template
        self.regex = regex
        self.converters = converters
        self.endpoints: dict[str, Endpoint] = {}  # HEAD included, from GET if not given
        self.explicit: list[str] = []  # methods given, in order
        self.methods: list[str] = []  # what Allow lists

    def add(self, method: str, endpoint: Endpoint) -> None:
        self.explicit.append(method)
        self.endpoints[method] = endpoint
        if method == "GET" and "HEAD" not in self.explicit:
            self.endpoints["HEAD"] = endpoint
        methods = list(self.explicit)
        if "GET" in methods and "HEAD" not in methods:
            methods.insert(methods.index("GET") + 1, "HEAD")
        if "OPTIONS" not in methods:
            methods.append("OPTIONS")
        self.methods = methods

    def params(self, match: re.Match[str]) -> dict[str, Any] | None:
        """The converted path parameters, or None if one does not convert."""
        params: dict[str, Any] = match.groupdict()
        for name, convert in self.converters:
            try:
                params[name] = convert(params[name])
            except ValueError:  # int() of a 5000-digit number, say
                return None
        return params


def _compile(template: str) -> _Route:
    """The route of a path template (its regex is None when it has no parameters)."""
    if not template.startswith("/"):
        raise ValueError(f"a path template starts with '/': {template!r}")
    pattern: list[str] = []
    converters: list[tuple[str, Callable[[str], Any]]] = []
    names: set[str] = set()
    position = 0
    for match in _PARAM.finditer(template):
        pattern.append(_literal(template, template[position : match.start()]))
        name, kind = match.group(1), match.group(2)
        if kind is None:
            kind = "str"
        if not name.isidentifier():
            raise ValueError(f"bad parameter name {name!r} in {template!r}")
        if name in names:
            raise ValueError(f"parameter {name!r} twice in {template!r}")
        if kind not in _CONVERTERS:
            raise ValueError(
                f"unknown converter {kind!r} in {template!r} (known: {', '.join(_CONVERTERS)})"
            )
        names.add(name)
        regex, convert = _CONVERTERS[kind]
        pattern.append(f"(?P<{name}>{regex})")
        if convert is not None:
            converters.append((name, convert))
        position = match.end()
    pattern.append(_literal(template, template[position:]))
    if not names:
        return _Route(template, None, ())
    # DOTALL: a decoded path may hold any character, a newline (``%0A``) included, and
    # ``{name:path}`` is all the rest of it. (Matching is ``fullmatch``: no ``$`` that would
    # also match before a final newline.)
    return _Route(template, re.compile("".join(pattern), re.DOTALL), tuple(converters))


def _literal(template: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"unbalanced brace in {template!r}")
    return re.escape(text)


def _allow(methods: Iterable[str]) -> dict[str, str]:
    return {"allow": ", ".join(methods)}


class App:
    """A handler that routes each request to an endpoint by method and path.

    Endpoints are added with the decorators `get`, `post`, `put`, `patch`, `delete` and
    `route`, and called as ``endpoint(request, **path_params)`` (``request.path_params``
    holds the same dict); they return what a handler returns. `mount` serves a prefix with
    another handler (an `App`, `StaticFiles`, any ``handler(request)``), `static` a directory.
    ``app(request)`` answers the request: an `HTTPError` nobody handled becomes its default
    response; any other exception an endpoint raises and no error handler takes propagates
    (the server answers 500 and logs it).
    """

    def __init__(self) -> None:
        self._static_routes: dict[str, _Route] = {}
        self._dynamic_routes: dict[str, _Route] = {}  # template -> route
        self._by_first_segment: dict[str, list[_Route]] = {}
        self._any_first_segment: list[_Route] = []  # templates starting with a parameter
        self._mounts: list[tuple[str, Handler]] = []  # longest prefix first
        self._mounted: list[Handler] = []  # the handlers as given, in the order mounted
        self._status_handlers: dict[int, ErrorHandler] = {}
        self._exception_handlers: dict[type[BaseException], ErrorHandler] = {}

    # -- building ----------------------------------------------------------------------------

    def add_route(self, path: str, endpoint: Endpoint, methods: Iterable[str] = ("GET",)) -> None:
        """Call ``endpoint`` for requests with one of ``methods`` whose path matches ``path``."""
        if isinstance(methods, str):
            raise TypeError("methods is a list of method names, e.g. ['GET', 'POST']")
        methods = [m.upper() for m in methods]
        if not methods:
            raise ValueError("a route needs at least one method")
        route = self._static_routes.get(path) or self._dynamic_routes.get(path)
        taken = [m for m in methods if route is not None and m in route.explicit]
        if taken or len(set(methods)) != len(methods):
            raise ValueError(f"{', '.join(taken or methods)} {path} has an endpoint already")
        if route is None:
            route = _compile(path)
            if route.regex is None:
                self._static_routes[path] = route
            else:
                self._dynamic_routes[path] = route
                self._index(route)
        for method in methods:
            route.add(method, endpoint)

    def _index(self, route: _Route) -> None:
        first = route.template[1:].split("/", 1)[0]
        if "{" in first:
            self._any_first_segment.append(route)
            for routes in self._by_first_segment.values():
                routes.append(route)
        else:
            bucket = self._by_first_segment.get(first)
            if bucket is None:  # the templates added so far that start with a parameter
                bucket = self._by_first_segment[first] = list(self._any_first_segment)
            bucket.append(route)

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the function is the endpoint of ``path`` for ``methods``."""

        def decorator(endpoint: Endpoint) -> Endpoint:
            self.add_route(path, endpoint, methods)
            return endpoint

        return decorator

    def get(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the GET endpoint of ``path`` (HEAD too, unless it has its own)."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the POST endpoint of ``path``."""
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the PUT endpoint of ``path``."""
        return self.route(path, ("PUT",))

    def patch(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the PATCH endpoint of ``path``."""
        return self.route(path, ("PATCH",))

    def delete(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Decorator: the DELETE endpoint of ``path``."""
        return self.route(path, ("DELETE",))

    def mount(self, prefix: str, handler: Handler) -> None:
        """Serve every path under ``prefix`` (whole segments) with ``handler``.

        The handler sees ``request.path`` relative to the prefix (``/api/users`` under
        ``/api`` is ``/users``; ``/api`` itself is ``""``) and ``request.root_path`` grown by
        the prefix; both are restored when it returns. Routes of this app win over mounts;
        among mounts the longest prefix wins. Errors from a mounted `App` or `StaticFiles`
        that its own error handlers leave reach this app's error handlers.
        """
        if not prefix.startswith("/"):
            raise ValueError(f"a mount prefix starts with '/': {prefix!r}")
        prefix = prefix.rstrip("/")
        if any(p == prefix for p, _ in self._mounts):
            raise ValueError(f"{prefix or '/'} is mounted already")
        target = handler.handle if isinstance(handler, (App, StaticFiles)) else handler
        self._mounts.append((prefix, target))
        self._mounts.sort(key=lambda item: len(item[0]), reverse=True)
        self._mounted.append(handler)

    def static(self, prefix: str, directory: str, **options: Any) -> StaticFiles:
        """Serve the files of ``directory`` under ``prefix``; ``options`` go to `StaticFiles`."""
        files = StaticFiles(directory, **options)
        self.mount(prefix, files)
        return files

    def errorhandler(self, key: int | type[Exception]) -> Callable[[ErrorHandler], ErrorHandler]:
        """Decorator: ``handler(request, exc)`` answers an error instead of the default.

        ``key`` is a status (for `HTTPError`\\ s with that status, including the app's own
        404 and 405 answers) or an exception class (for it and its subclasses; the
        most specific class wins; a status handler wins over ``HTTPError``'s).
        """
        if isinstance(key, int) and not isinstance(key, bool):
            status: int | None = key
        elif isinstance(key, type) and issubclass(key, Exception):
            status = None
        else:
            raise TypeError(f"errorhandler takes a status or an exception class, not {key!r}")

        def decorator(handler: ErrorHandler) -> ErrorHandler:
            if status is not None:
                self._status_handlers[status] = handler
            else:
                self._exception_handlers[key] = handler  # type: ignore[index]
            return handler

        return decorator

    # -- serving -----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Any:
        """Answer ``request``: what the endpoint or an error handler returned."""
        try:
            # A route without parameters, found here: one call less for the common request.
            route = self._static_routes.get(request.path or "/")
            if route is not None:
                endpoint = route.endpoints.get(request.method)
                if endpoint is not None:
                    return endpoint(request)
            return self._dispatch(request, route)
        except Exception as exc:  # as `handle`, inlined (one call less per request)
            handler = self._error_handler(exc)
            if handler is None:
                if isinstance(exc, HTTPError):
                    return exc.response()
                raise
            try:
                return handler(request, exc)
            except HTTPError as again:
                return again.response()

    def handle(self, request: Request) -> Any:
        """As calling the app, but an `HTTPError` no error handler takes propagates."""
        try:
            return self._dispatch(request, self._static_routes.get(request.path or "/"))
        except Exception as exc:
            handler = self._error_handler(exc)
            if handler is None:
                raise
            return handler(request, exc)

    def _error_handler(self, exc: Exception) -> ErrorHandler | None:
        if self._status_handlers and isinstance(exc, HTTPError):
            handler = self._status_handlers.get(exc.status)
            if handler is not None:
                return handler
        if self._exception_handlers:
            for cls in type(exc).__mro__:
                handler = self._exception_handlers.get(cls)
                if handler is not None:
                    return handler
        return None

    def _dispatch(self, request: Request, route: _Route | None) -> Any:
        """Route ``request``; ``route`` is the route without parameters of its path, if any."""
        method = request.method
        path = request.path or "/"
        allowed: list[str] = []
        if route is not None:
            endpoint = route.endpoints.get(method)
            if endpoint is not None:
                return endpoint(request)
            allowed = route.methods
        end = path.find("/", 1)
        first_segment = path[1:end] if end > 0 else path[1:]
        routes = self._by_first_segment.get(first_segment, self._any_first_segment)
        for route in routes:
            match = route.regex.fullmatch(path)  # type: ignore[union-attr]
            if match is None:
                continue
            params = route.params(match)
            if params is None:
                continue
            endpoint = route.endpoints.get(method)
            if endpoint is None:
                allowed = allowed + [m for m in route.methods if m not in allowed]
                continue
            request.path_params = params
            return endpoint(request, **params)
        if allowed:
            if method == "OPTIONS":
                return Response(204, _allow(allowed))
            raise HTTPError(405, headers=_allow(allowed))
        if method == "OPTIONS" and request.target == b"*":
            return Response(204, _allow(self._all_methods()))
        return self._dispatch_mounted(request)

    def _dispatch_mounted(self, request: Request) -> Any:
        path = request.path
        for prefix, handler in self._mounts:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                root_path = request.root_path
                request.path = path[len(prefix) :]
                request.root_path = root_path + prefix
                try:
                    return handler(request)
                finally:
                    request.path = path
                    request.root_path = root_path
        raise HTTPError(404)

    def _all_methods(self) -> list[str]:
        """What ``OPTIONS *`` lists: the methods of the routes, then of the mounts."""
        methods: list[str] = []
        self._collect_methods(methods, set())
        return methods or ["OPTIONS"]

    def _collect_methods(self, methods: list[str], seen: set[App]) -> None:
        """Add to ``methods`` those of this app's routes and of the `App`\\ s and `StaticFiles`
        it mounts (``seen``: the apps visited, so an app mounted within itself ends)."""
        if self in seen:
            return
        seen.add(self)
        for route in [*self._static_routes.values(), *self._dynamic_routes.values()]:
            methods += [m for m in route.methods if m not in methods]
        for handler in self._mounted:
            if isinstance(handler, App):
                handler._collect_methods(methods, seen)
            elif isinstance(handler, StaticFiles):
                methods += [m for m in STATIC_METHODS if m not in methods]

    def __repr__(self) -> str:
        routes = len(self._static_routes) + len(self._dynamic_routes)
        return f"<App: {routes} routes, {len(self._mounts)} mounts>"
