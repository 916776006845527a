"""`local`: attributes with one value per fiber (`threading.local` for fibers, without `patch`).

Each fiber (each greenlet, in fact: outside fibers, each thread's main greenlet has its own)
sees its own namespace. The namespaces live in a dict keyed by the greenlet's id and are removed
by a weak-reference callback when the greenlet is freed, so an entry never outlives its fiber
and a new fiber that reuses the id starts empty; those of greenlets that finished but are kept
alive (by a reference in their own namespace, say) are dropped by a sweep that runs each time
the number of namespaces doubles. Attribute lookup follows Python's rules (data
descriptors on the class, then the fiber's namespace, then the class), so properties, methods
and ``__getattr__`` of a subclass work as on any object.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any
from weakref import ref

from greenlet import getcurrent

_MISSING = object()
#: A `local` with fewer namespaces than this never looks for those of finished greenlets.
_SWEEP_MIN = 64


class _Finalizing:
    """Stands for the greenlet running while the interpreter finalizes, if `_exiting` could
    not note it: greenlet's ``getcurrent()`` then raises RuntimeError."""

    __slots__ = ("__weakref__",)
    dead = False


#: The main thread's greenlet that ran the atexit handlers: the one running, outside any fiber
#: (none can run then), while the interpreter finalizes (``__del__`` methods, say).
_exit_greenlet: Any = _Finalizing()


@atexit.register
def _exiting() -> None:
    global _exit_greenlet
    _exit_greenlet = getcurrent()


def _current() -> Any:
    """``getcurrent()``, or, while the interpreter finalizes, the greenlet that ran the atexit
    handlers. (For the rare paths: the common ones inline the ``try``, free unless it raises.)"""
    try:
        return getcurrent()
    except RuntimeError:  # "greenlet is being finalized"
        return _exit_greenlet


class _Namespaces:
    """The per-greenlet dicts of one `local` object, and the arguments for ``__init__``."""

    __slots__ = ("dicts", "args", "kwargs", "sweep_at", "__weakref__")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        #: id(greenlet) -> (weak reference to the greenlet, its namespace)
        self.dicts: dict[int, tuple[ref[Any], dict[str, Any]]] = {}
        self.args = args
        self.kwargs = kwargs
        #: How many namespaces make `create` drop those of finished greenlets first.
        self.sweep_at = _SWEEP_MIN

    def create(self, glet: Any) -> dict[str, Any]:
        """A new, empty namespace for ``glet``, dropped when ``glet`` is freed."""
        if len(self.dicts) >= self.sweep_at:
            self.drop_finished()
        key = id(glet)
        me = ref(self)

        def greenlet_freed(_: ref[Any], key: int = key) -> None:
            namespaces = me()
            if namespaces is not None:
                namespaces.dicts.pop(key, None)

        namespace: dict[str, Any] = {}
        self.dicts[key] = (ref(glet, greenlet_freed), namespace)
        return namespace

    def drop_finished(self) -> None:
        """Drop the namespaces of greenlets that have finished but are not freed: a fiber that
        stored a reference to itself (or to something holding it) in its own namespace is
        kept alive by it, and would otherwise keep its values as long as the `local` lives.
        Called as the count doubles, so it costs O(1) per namespace made."""
        dicts = self.dicts
        for key, (wr, _) in list(dicts.items()):
            glet = wr()
            if glet is None or glet.dead:
                dicts.pop(key, None)
        self.sweep_at = max(_SWEEP_MIN, 2 * len(dicts))


def _find_on_type(tp: type, name: str) -> Any:
    for klass in tp.__mro__:
        attr = klass.__dict__.get(name, _MISSING)
        if attr is not _MISSING:
            return attr
    return _MISSING


def _is_data_descriptor(attr: Any) -> bool:
    tp = type(attr)
    return hasattr(tp, "__set__") or hasattr(tp, "__delete__")


class local:  # noqa: N801 - named after threading.local
    """An object whose attributes have one value per fiber (`threading.local` for fibers).

    Works without `unknot.patch` (which makes `threading.local` itself fiber-local). A fiber
    sees only what it set; a new fiber starts with an empty namespace, and the namespace is
    dropped when its fiber is freed. Subclass it to give every fiber initial values:
    ``__init__`` runs again, with the constructor's arguments, the first time each fiber
    touches the object. Outside fibers, each thread has its own namespace too.

    Pool calls run in worker fibers that serve several calls in turn (`Pool.map`): calls served
    by the same worker share its namespace.
    """

    __slots__ = ("_local__namespaces", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        namespaces = _Namespaces(args, kwargs)
        object.__setattr__(self, "_local__namespaces", namespaces)
        namespaces.create(_current())  # the creator's namespace; type() calls __init__ on it
        return self

    def __getattribute__(self, name: str) -> Any:
        namespace = _namespace(self)
        if name == "__dict__":
            return namespace
        tp = type(self)
        attr = _find_on_type(tp, name)
        if attr is not _MISSING and _is_data_descriptor(attr):
            return type(attr).__get__(attr, self, tp)
        value = namespace.get(name, _MISSING)
        if value is not _MISSING:
            return value
        if attr is not _MISSING:
            get = getattr(type(attr), "__get__", None)
            return attr if get is None else get(attr, self, tp)
        raise AttributeError(f"{tp.__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        namespace = _namespace(self)
        attr = _find_on_type(type(self), name)
        if attr is not _MISSING and hasattr(type(attr), "__set__"):
            type(attr).__set__(attr, self, value)
            return
        namespace[name] = value

    def __delattr__(self, name: str) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        namespace = _namespace(self)
        attr = _find_on_type(type(self), name)
        if attr is not _MISSING and hasattr(type(attr), "__delete__"):
            type(attr).__delete__(attr, self)
            return
        try:
            del namespace[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self) -> Any:
        # As the C threading.local: copy.copy, deepcopy and pickle refuse it (a copy would
        # share its namespaces). A subclass may define its own.
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")


_get_namespaces: Callable[[local], _Namespaces] = local.__dict__["_local__namespaces"].__get__


def _namespace(obj: local) -> dict[str, Any]:
    """The current greenlet's namespace of ``obj``, made (and ``__init__`` run) on first use."""
    namespaces = _get_namespaces(obj)
    try:
        glet = getcurrent()
    except RuntimeError:  # "greenlet is being finalized": the interpreter exits, no fiber runs
        glet = _exit_greenlet
    entry = namespaces.dicts.get(id(glet))
    if entry is not None:
        return entry[1]
    namespace = namespaces.create(glet)
    init = type(obj).__init__
    if init is not object.__init__:
        try:
            init(obj, *namespaces.args, **namespaces.kwargs)
        except BaseException:
            namespaces.dicts.pop(id(glet), None)
            raise
    return namespace
