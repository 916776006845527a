"""`unknot.backdoor`: a console inside the hub, reached over a real socket by an outside client."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fiber_helpers import BackdoorClient

import unknot
from unknot import backdoor


def session(client: BackdoorClient) -> dict[str, str]:
    out = {"banner": client.until_prompt()}
    out["sum"] = client.run("answer + 1")
    out["print"] = client.run("print('hello', 'there')")
    out["dump"] = client.run("dump()")
    out["stats"] = client.run("stats()")
    out["error"] = client.run("1/0")
    out["block"] = client.run("for i in range(2):", b"... ")
    out["block_end"] = client.run("    i", b"... ")
    out["after"] = client.run("")
    client.sock.sendall(b"exit()\n")
    out["closed"] = str(client.closed())
    client.sock.close()
    return out


def _check(out: dict[str, str]) -> None:
    assert "unknot backdoor" in out["banner"]
    assert "43" in out["sum"]
    assert "hello there" in out["print"]
    assert "=== unknot: hub in thread 'MainThread'" in out["dump"]
    assert "fiber busy: waiting on sleep" in out["dump"]
    assert "fibers" in out["stats"] and "loop lag" in out["stats"]
    assert "ZeroDivisionError" in out["error"]
    assert out["after"].replace("\r\n", "\n").split() == ["0", "1", ">>>"]
    assert out["closed"] == "True"


def test_console_over_tcp() -> None:
    outs: list[dict[str, str]] = []

    def main() -> None:
        unknot.spawn(unknot.sleep, 60, name="busy")
        with backdoor.serve(locals={"answer": 42}) as srv:
            host, port = srv.address
            assert host == "127.0.0.1" and port
            outs.append(unknot.to_thread(lambda: session(BackdoorClient((host, port)))))
            # a second client, at the same time as a third: each has its own namespace
            c1 = unknot.to_thread(BackdoorClient, (host, port))
            c2 = unknot.to_thread(BackdoorClient, (host, port))
            unknot.to_thread(c1.until_prompt)
            unknot.to_thread(c2.until_prompt)
            unknot.to_thread(c1.run, "mine = 1")
            assert "NameError" in unknot.to_thread(c2.run, "mine")
            c1.sock.close()  # a client that goes away without exit()
            c2.sock.close()
            unknot.sleep(0.05)
        for f in list(unknot.lowlevel.current_hub().fibers):  # type: ignore[union-attr]
            f.cancel()

    unknot.run(main)
    _check(outs[0])
    # print() went to the client, not to this process's stdout (checked above); and the real
    # streams were put back:
    import sys

    assert sys.stdout is not None and not type(sys.stdout).__name__.startswith("_Writer")


def test_console_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "backdoor.sock")
    outs: list[dict[str, str]] = []

    def main() -> None:
        unknot.spawn(unknot.sleep, 60, name="busy")
        srv = backdoor.serve(path, locals={"answer": 42})
        try:
            assert srv.address == path
            assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
            outs.append(unknot.to_thread(lambda: session(BackdoorClient(path))))
        finally:
            srv.stop()
        assert not Path(path).exists()
        for f in list(unknot.lowlevel.current_hub().fibers):  # type: ignore[union-attr]
            f.cancel()

    unknot.run(main)
    _check(outs[0])


def test_console_over_an_abstract_unix_socket() -> None:
    """A Linux abstract name (a leading NUL): no file to check, chmod or remove."""
    name = f"\0unknot-backdoor-test-{os.getpid()}"
    outs: list[str] = []

    def main() -> None:
        with backdoor.serve(name, locals={"answer": 42}):

            def talk() -> str:
                client = BackdoorClient(name)
                client.until_prompt()
                out = client.run("answer + 1")
                client.sock.close()
                return out

            outs.append(unknot.to_thread(talk))

    unknot.run(main)
    assert "43" in outs[0]


def test_ipv4_shorthand_loopback_addresses_are_loopback() -> None:
    def main() -> None:
        with backdoor.serve(("127.1", 0)) as srv:
            assert srv.address[0] == "127.0.0.1"
        with pytest.raises(ValueError, match="refuses to listen on '10.1'"):
            backdoor.serve(("10.1", 0))

    unknot.run(main)


def test_refuses_non_loopback_unless_allowed() -> None:
    def main() -> None:
        with pytest.raises(ValueError, match="refuses to listen on '0.0.0.0'"):
            backdoor.serve(("0.0.0.0", 0))
        with pytest.raises(TypeError, match="backdoor address"):
            backdoor.serve(12345)
        with backdoor.serve(("0.0.0.0", 0), allow_remote=True) as srv:
            assert srv.address[1]
        with backdoor.serve(("::1", 0)) as srv6:
            assert srv6.address[0] == "::1"

    unknot.run(main)


def test_an_endless_line_ends_the_session_not_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backdoor, "MAX_LINE", 1000)

    def flood(address: Any) -> bool:
        """True once the server ended the session (closed, or reset: input was left unread)."""
        c = BackdoorClient(address)
        try:
            c.until_prompt()
            c.sock.sendall(b"x" * 5000)
            while c.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        finally:
            c.sock.close()

    def main() -> None:
        with backdoor.serve() as srv:
            assert unknot.to_thread(flood, srv.address)
            c = unknot.to_thread(BackdoorClient, srv.address)  # still serving
            unknot.to_thread(c.until_prompt)
            assert "3" in unknot.to_thread(c.run, "1 + 2")
            c.sock.close()

    unknot.run(main)


def test_commands_of_two_sessions_that_overlap_put_the_streams_back() -> None:
    # Session a's command starts, then b's; a's ends first, then b's. Each used to save the
    # streams it found and put them back: b saved a's client writer as "sys.stdout" and left it
    # there for good, so the program's print() then wrote to a closed socket.
    import sys

    before = (sys.stdout, sys.stderr, sys.displayhook)
    outputs: list[str] = []

    def main() -> None:
        started: unknot.Queue[str] = unknot.Queue()
        gates = {"a": unknot.Event(), "b": unknot.Event()}
        with backdoor.serve(locals={"started": started, "gates": gates}) as srv:
            clients = {}
            for name in ("a", "b"):
                c = clients[name] = unknot.to_thread(BackdoorClient, srv.address)
                unknot.to_thread(c.until_prompt)
                line = f"started.put({name!r}); gates[{name!r}].wait(); print('done', {name!r})\n"
                unknot.to_thread(c.sock.sendall, line.encode())
                assert started.get() == name  # its command runs, and waits
            for name in ("a", "b"):
                gates[name].set()
                outputs.append(unknot.to_thread(clients[name].until_prompt))
            for c in clients.values():
                c.sock.close()

    unknot.run(main)
    assert "done a" in outputs[0] and "done b" in outputs[1]
    assert (sys.stdout, sys.stderr, sys.displayhook) == before


def test_what_other_fibers_print_while_a_command_waits_stays_with_the_program(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Only the session's own output (and its echoed results) goes to the client: the program's
    # other fibers used to print to the client for as long as a console command blocked.
    client_saw: list[str] = []

    def main() -> None:
        started, gate = unknot.Event(), unknot.Event()
        with backdoor.serve(locals={"started": started, "gate": gate}) as srv:
            c = unknot.to_thread(BackdoorClient, srv.address)
            unknot.to_thread(c.until_prompt)
            line = b"started.set(); gate.wait(); print('from the console'); 6 * 7\n"
            unknot.to_thread(c.sock.sendall, line)
            started.wait()
            print("from the program")
            import sys

            sys.stderr.write("program error output\n")
            gate.set()
            client_saw.append(unknot.to_thread(c.until_prompt))
            c.sock.close()

    unknot.run(main)
    captured = capsys.readouterr()
    assert "from the console" in client_saw[0] and "42" in client_saw[0]
    assert "from the program" not in client_saw[0]
    assert "program error output" not in client_saw[0]
    assert "from the program" in captured.out and "program error output" in captured.err
    assert "from the console" not in captured.out
