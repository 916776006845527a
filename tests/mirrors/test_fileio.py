"""unknot.open: file I/O on the thread pool in fibers (the others keep running), directly outside
fibers; one operation at a time per file; what a cancellation does."""

from __future__ import annotations

import functools
import gc
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import unknot

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe: opening and reading it block until the other side acts, as a slow disk.

    Afterwards, worker threads a failed test left blocked on it are let go (so the process can
    exit): an O_RDWR open ends pending opens, data and then EOF end pending reads.
    """
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield path
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(fd, b"\0" * 64)
    finally:
        os.close(fd)


def bounded(test: Callable[[Path], None]) -> Callable[[Path], None]:
    """Fail a FIFO test (instead of hanging) if a read or open blocks for good."""

    @functools.wraps(test)
    def run(fifo: Path) -> None:
        with unknot.fail_after(10):
            test(fifo)

    return run


class Ticker:
    """A fiber counting while the hub is free to run it."""

    def __init__(self) -> None:
        self.ticks = 0
        self.fiber = unknot.spawn(self._run)

    def _run(self) -> None:
        while True:
            unknot.sleep(0.002)
            self.ticks += 1

    def stop(self) -> int:
        self.fiber.cancel()
        return self.ticks


@pytest.mark.unknot
def test_text_mode_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    with unknot.open(path, "w", encoding="utf-8") as f:
        assert f.write("one\n") == 4
        f.writelines(line for line in ["two\n", "three\n"])  # (a generator is fine)
        f.flush()
        assert f.tell() == len("one\ntwo\nthree\n")
        assert f.name == str(path) and f.mode == "w" and f.encoding == "utf-8"
        assert f.writable() and not f.readable()
        assert f.fileno() >= 0 and not f.closed
    assert f.closed
    assert path.read_text() == "one\ntwo\nthree\n"
    with unknot.open(path, encoding="utf-8") as f:
        assert f.readline() == "one\n"
        assert f.read(3) == "two"
        assert f.readlines() == ["\n", "three\n"]
        assert f.read() == ""
        f.seek(0)
        assert list(f) == ["one\n", "two\n", "three\n"]
        f.seek(0)
        assert [line for line in f][1:] == ["two\n", "three\n"]
    with unknot.open(path, "r+", encoding="utf-8") as f:
        f.seek(4)
        assert f.truncate() == 4
    assert path.read_text() == "one\n"


@pytest.mark.unknot
def test_binary_mode(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    with unknot.open(path, "wb") as f:
        f.write(b"0123456789")
    with unknot.open(path, "rb") as f:
        assert f.peek(1)[:1] == b"0"
        assert f.read(2) == b"01"
        buf = bytearray(3)
        assert f.readinto(buf) == 3 and buf == b"234"
        assert f.read1(2) == b"56"
        buf = bytearray(2)
        assert f.readinto1(buf) == 2 and buf == b"78"
        assert f.seek(-1, os.SEEK_END) == 9
        assert f.read() == b"9"
    with unknot.open(path, "ab") as f:
        f.write(b"!")
    assert path.read_bytes() == b"0123456789!"


@pytest.mark.unknot
def test_errors_come_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        unknot.open(tmp_path / "missing.txt")
    path = tmp_path / "r.txt"
    path.write_text("x")
    with unknot.open(path) as f:
        with pytest.raises(io.UnsupportedOperation):
            f.write("y")
    with pytest.raises(ValueError):
        f.read()  # closed


@pytest.mark.unknot
def test_open_runs_in_a_worker_thread_in_a_fiber(tmp_path: Path) -> None:
    threads: list[int] = []

    def opener(path: str, flags: int) -> int:
        threads.append(threading.get_ident())
        return os.open(path, flags, 0o644)

    with unknot.open(tmp_path / "o.txt", "w", opener=opener) as f:
        f.write("x")
    assert threads and threads[0] != threading.get_ident()


def test_outside_fibers_everything_runs_in_the_calling_thread(tmp_path: Path) -> None:
    threads: list[int] = []

    def opener(path: str, flags: int) -> int:
        threads.append(threading.get_ident())
        return os.open(path, flags, 0o644)

    path = tmp_path / "plain.txt"
    with unknot.open(path, "w", opener=opener) as f:
        f.write("plain\n")
    assert threads == [threading.get_ident()]
    with unknot.open(path) as f:
        assert list(f) == ["plain\n"]


@pytest.mark.unknot
@bounded
def test_other_fibers_run_while_open_and_read_block(fifo: Path) -> None:
    ticker = Ticker()
    got: list[bytes] = []

    def reader() -> None:
        with unknot.open(fifo, "rb", buffering=0) as f:  # blocks until a writer opens
            got.append(f.read(5))  # blocks until the writer writes

    r = unknot.spawn(reader)
    unknot.sleep(0.05)
    assert not r.done()
    with unknot.open(fifo, "wb", buffering=0) as w:
        unknot.sleep(0.05)
        assert not r.done()
        w.write(b"hello")
        r.join(timeout=5)
    assert got == [b"hello"]
    assert ticker.stop() >= 10  # the hub went on all along


@pytest.mark.unknot
@bounded
def test_calls_from_two_fibers_take_turns(fifo: Path) -> None:
    order: list[str] = []

    def read(f: Any, name: str) -> bytes:
        data: bytes = f.read(3)
        order.append(name)
        return data

    with unknot.TaskGroup() as tg:
        opening = tg.spawn(unknot.open, fifo, "rb", 0)
        with unknot.open(fifo, "wb", buffering=0) as w:
            f = opening.join()
            first = tg.spawn(read, f, "first")
            unknot.sleep(0.01)  # first is reading in the pool
            second = tg.spawn(read, f, "second")
            unknot.sleep(0.01)  # second waits for its turn
            w.write(b"abc")
            assert first.join(timeout=5) == b"abc"
            w.write(b"def")
            assert second.join(timeout=5) == b"def"
        f.close()
    assert order == ["first", "second"]


@pytest.mark.unknot
@bounded
def test_a_call_cancelled_while_waiting_for_its_turn_never_runs(fifo: Path) -> None:
    with unknot.TaskGroup() as tg:
        opening = tg.spawn(unknot.open, fifo, "rb", 0)
        with unknot.open(fifo, "wb", buffering=0) as w:
            with opening.join() as f:
                first = tg.spawn(f.read, 3)
                unknot.sleep(0.01)
                waiting = tg.spawn(f.read, 3)
                unknot.sleep(0.01)
                waiting.cancel()
                with pytest.raises(unknot.FiberCancelled):
                    waiting.join(timeout=5)
                w.write(b"abcdef")
                assert first.join(timeout=5) == b"abc"
                assert f.read(3) == b"def"  # the cancelled read took nothing


@pytest.mark.unknot
@bounded
def test_a_read_cancelled_in_the_pool_finishes_there_and_its_data_is_lost(fifo: Path) -> None:
    with unknot.TaskGroup() as tg:
        opening = tg.spawn(unknot.open, fifo, "rb", 0)
        with unknot.open(fifo, "wb", buffering=0) as w:
            with opening.join() as f:
                with unknot.move_on_after(0.02) as scope:
                    f.read(3)  # nothing to read yet: blocks in a worker thread
                assert scope.cancelled_caught  # raised at once, as documented
                w.write(b"abcdef")
                # The cancelled read still took "abc" in the background; the next read waits
                # for it to finish, then goes on from where it left the position.
                assert f.read(3) == b"def"


@pytest.mark.unknot
def test_a_with_block_left_by_a_cancellation_closes_its_file(tmp_path: Path) -> None:
    # close() took its turn on a fiber lock, which raises Cancelled at once in a cancelled
    # scope: the file stayed open (its fd leaked until the garbage collector found it) and
    # what was written stayed in its buffer. Like the builtin's, the with block closes it.
    path = tmp_path / "f.txt"
    with unknot.CancelScope() as scope:
        with unknot.open(path, "w") as f:
            f.write("kept")  # buffered in the file object
            scope.cancel()
    assert scope.cancelled_caught
    assert f.closed
    assert path.read_text() == "kept"
    g = unknot.open(path, "a")
    g.write(" and more")
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            g.close()  # closes, then raises Cancelled as the cancelled scope's calls do
    assert g.closed
    assert path.read_text() == "kept and more"


@pytest.mark.unknot
@bounded
def test_an_open_cancelled_in_the_pool_closes_the_file(fifo: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with unknot.move_on_after(0.02) as scope:
            unknot.open(fifo, "rb", buffering=0)  # waits for a writer in a worker thread
        assert scope.cancelled_caught
        # Opening the writer lets the abandoned open finish; it then closes its file, and with
        # no reader left the writes fail.
        with unknot.open(fifo, "wb", buffering=0) as w:
            while True:
                try:
                    w.write(b"x")
                except BrokenPipeError:
                    break
                unknot.sleep(0.005)
        gc.collect()
    # Closed by unknot, not left for the garbage collector to find open.
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.unknot
def test_many_fibers_each_with_its_own_file(tmp_path: Path) -> None:
    def copy(i: int) -> str:
        src, dst = tmp_path / f"in{i}", tmp_path / f"out{i}"
        src.write_text(f"line {i}\n" * 50)
        with unknot.open(src) as fin, unknot.open(dst, "w") as fout:
            for line in fin:
                fout.write(line)
        with unknot.open(dst) as check:
            return check.read()

    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(copy, i) for i in range(8)]
    assert [f.result() for f in fibers] == [f"line {i}\n" * 50 for i in range(8)]


def iter_lines(path: Path) -> Iterator[str]:
    with unknot.open(path) as f:
        yield from f


@pytest.mark.unknot
def test_iteration_in_a_generator(tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    path.write_text("a\nb\n")
    assert list(iter_lines(path)) == ["a\n", "b\n"]
