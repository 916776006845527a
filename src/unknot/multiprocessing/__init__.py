"""Mirrors of `multiprocessing`'s submodules whose calls block: `connection` and `queues`.

Each mirrors its stdlib module (every name of it is there) and holds the cooperative versions
of its blocking methods, which `unknot.patch` installs on the stdlib's classes
(``multiprocessing.connection.Connection``, ``multiprocessing.queues.Queue``,
``JoinableQueue``, ``SimpleQueue``), so that the pipes and queues that ``multiprocessing.Pipe()``
and ``multiprocessing.Queue()`` make, also those made before `patch` or unpickled in a child,
suspend only the calling fiber. Outside fibers each is the stdlib's code.

The package itself is not a mirror of ``multiprocessing``: use ``multiprocessing`` (patched).
"""
