"""Mirrors of `multiprocessing`'s submodules whose calls block, `connection`, `queues` and
`managers`, and of `reduction` (which pickles unknot's sockets).

Each mirrors its stdlib module (every name of it is there) and holds the cooperative versions
of its blocking methods, which `unknot.patch` installs on the stdlib's classes
(``multiprocessing.connection.Connection``, ``multiprocessing.queues.Queue``,
``JoinableQueue``, ``SimpleQueue``, ``multiprocessing.managers.BaseProxy``), so that the pipes,
queues and proxies that ``multiprocessing.Pipe()``, ``multiprocessing.Queue()`` and a
``Manager()`` make, also those made before `patch` or unpickled in a child, suspend only the
calling fiber. Outside fibers each is the stdlib's code.

The package itself is not a mirror of ``multiprocessing``: use ``multiprocessing`` (patched).
"""
