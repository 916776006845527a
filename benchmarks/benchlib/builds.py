"""``--unknot-python PY``: unknot's compiled build against its pure build, in one run.

With the option, a benchmark script adds two peers beside its others (`PEERS`):

* ``unknot-compiled``: the script's unknot server or worker run by the interpreter ``PY`` with
  the unknot installed in PY's environment, as installed (the mypyc build, docs/compiled.md);
* ``unknot-pure``: the same with ``UNKNOT_PURE=1``, so that the same install runs its
  pure-Python modules.

Neither gets this checkout's ``src/``: their environment (`env`) has no ``PYTHONPATH``, and
carries `EXPECT_ENV`, which the child checks after importing unknot (`check`, called by
``ab.assert_unknot_source``): a child whose ``unknot.compiled`` is not the one its peer's name
says stops instead of measuring the wrong build. The parent checks both once before measuring
(`verify`), and the reports give the ratio compiled / pure (`ratio_table`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

COMPILED = "unknot-compiled"
PURE = "unknot-pure"
#: The build peers and whether each one must run the compiled modules.
PEERS = {COMPILED: True, PURE: False}
#: Peers other than unknot that use its compiled build's C helpers (``unknot._nbio``): run, like
#: `COMPILED`, by the ``--unknot-python`` interpreter with its installed unknot.
USES_COMPILED = frozenset({"greenlet-floor"})
#: Set in a build peer's environment to "1" (compiled) or "0" (pure); checked by `check`.
EXPECT_ENV = "UNKNOT_EXPECT_COMPILED"
#: What a build peer's environment leaves out: any tree put on the path, and the build switch.
_DROPPED = ("PYTHONPATH", "UNKNOT_PURE", "UNKNOT_BENCH_EXPECT_SRC")
PROBE_TIMEOUT = 60.0


class BuildError(RuntimeError):
    """A build peer cannot run: PY does not import unknot, or not the build expected."""


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--unknot-python PY`` to a script's command line."""
    parser.add_argument(
        "--unknot-python",
        metavar="PY",
        type=os.path.abspath,  # the venv's own path: resolving its symlink would leave the venv
        help=f"also measure {COMPILED} and {PURE}: the unknot peer run by the interpreter PY "
        "with the unknot installed in its environment (no PYTHONPATH), as installed (compiled: "
        "docs/compiled.md) and with UNKNOT_PURE=1",
    )


def add_peers(peers: Sequence[str], python: str | None) -> list[str]:
    """``peers`` with the build peers appended (those not named already) when ``python``."""
    out = list(peers)
    if python:
        out += [p for p in PEERS if p not in out]
    return out


def known(peers: Sequence[str], python: str | None) -> list[str]:
    """The names ``--peers`` may use: ``peers``, and the build peers when ``python``."""
    return [*peers, *PEERS] if python else list(peers)


def is_build(peer: str) -> bool:
    """Whether ``peer`` is one of the build peers."""
    return peer in PEERS


def kind(peer: str) -> str:
    """The peer a build peer runs (``unknot``); any other name unchanged."""
    return "unknot" if is_build(peer) else peer


def python(peer: str, unknot_python: str | None) -> str:
    """The interpreter that runs ``peer``: ``unknot_python`` for a build peer (and, when
    given, for a peer of `USES_COMPILED`), else this one."""
    if peer in USES_COMPILED and unknot_python:
        return unknot_python
    if is_build(peer):
        if not unknot_python:
            raise BuildError(f"{peer} needs --unknot-python")
        return unknot_python
    return sys.executable


def installed_env(pure: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which an interpreter runs the unknot installed with it: ``base``
    (default: this process's) without ``PYTHONPATH`` and the build switch, and with
    ``UNKNOT_PURE=1`` when ``pure`` (that install's pure-Python modules)."""
    out = {k: v for k, v in (os.environ if base is None else base).items() if k not in _DROPPED}
    if pure:
        out["UNKNOT_PURE"] = "1"
    return out


def env(peer: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """A build peer's environment: `installed_env` (pure for the pure peer) plus the
    expectation its child checks (`EXPECT_ENV`)."""
    out = installed_env(not PEERS[peer], base)
    out[EXPECT_ENV] = "1" if PEERS[peer] else "0"
    return out


def check(module: ModuleType) -> None:
    """In a child: stop if the harness expects the other build than ``module`` runs."""
    expect = os.environ.get(EXPECT_ENV)
    if expect is None:
        return
    running = bool(getattr(module, "compiled", False))
    if running != (expect == "1"):
        raise SystemExit(
            f"unknot.compiled is {running}, expected {expect == '1'} "
            f"({module.__file__}; {EXPECT_ENV}={expect})"
        )


def verify(peer: str, unknot_python: str) -> str:
    """In the parent: import unknot as ``peer`` will, with ``unknot_python``; return where it
    came from, or raise `BuildError` if it does not import or is not the expected build."""
    code = "import unknot; print(unknot.__file__, unknot.compiled)"
    try:
        done = subprocess.run(
            [unknot_python, "-P", "-c", code],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=env(peer),
        )
    except OSError as exc:
        raise BuildError(f"{peer}: cannot run {unknot_python}: {exc}") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BuildError(f"{peer}: {unknot_python} cannot import unknot: {done.stderr[-500:]}")
    where, _, compiled = lines[-1].rpartition(" ")
    if (compiled == "True") != PEERS[peer]:
        raise BuildError(f"{peer}: unknot.compiled is {compiled} in {unknot_python} ({where})")
    return where


def describe(unknot_python: str | None) -> dict[str, str]:
    """The report's line about the build peers (nothing without ``--unknot-python``)."""
    if not unknot_python:
        return {}
    return {
        "Build peers": f"{COMPILED} and {PURE}: {unknot_python}'s installed unknot, as "
        "installed and with UNKNOT_PURE=1 (no PYTHONPATH)"
    }


def ratio(compiled: float | None, pure: float | None) -> float | None:
    """compiled / pure, or None if either is missing."""
    return compiled / pure if compiled and pure else None


def ratio_table(
    rows: Sequence[tuple[str, float | None, float | None, bool]],
    fmt: Callable[[float], str] = lambda v: f"{v:.3g}",
) -> list[str]:
    """Markdown lines: per row (label, compiled value, pure value, higher is better) both
    values and compiled / pure; no lines when no row has both values."""
    body = []
    for label, compiled, pure, higher in rows:
        r = ratio(compiled, pure)
        if r is None:
            continue
        body.append(
            f"| {label} | {fmt(compiled or 0)} | {fmt(pure or 0)} | {r:.2f}x | "
            f"{'higher' if higher else 'lower'} |"
        )
    if not body:
        return []
    return [
        f"| cell | {COMPILED} | {PURE} | compiled / pure | better |",
        "| --- | ---: | ---: | ---: | --- |",
        *body,
    ]
