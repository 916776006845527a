"""Channel: unbuffered rendezvous, close, iteration, and select over channel operations."""

from __future__ import annotations

import pytest

import unknot
from unknot.testing import MockClock


@pytest.mark.unknot
def test_send_waits_for_receiver(autojump_clock: MockClock) -> None:
    ch: unknot.Channel[str] = unknot.Channel()
    sent_at: list[float] = []

    def sender() -> None:
        ch.send("hi")
        sent_at.append(unknot.current_time())

    s = unknot.spawn(sender)
    unknot.sleep(5)
    assert sent_at == []  # no receiver yet: the send is still waiting
    assert ch.recv() == "hi"
    s.join()
    assert sent_at == [pytest.approx(5)]


@pytest.mark.unknot
def test_recv_waits_for_sender(autojump_clock: MockClock) -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    unknot.spawn(lambda: (unknot.sleep(3), ch.send(42)))
    assert ch.recv() == 42
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_values_in_order_and_none() -> None:
    ch: unknot.Channel[object] = unknot.Channel()
    values: list[object] = [None, 0, "", (), 1, "x"]

    def sender() -> None:
        for v in values:
            ch.send(v)

    unknot.spawn(sender)
    got = [ch.recv() for _ in values]
    assert got == values


@pytest.mark.unknot
def test_recv_timeout(autojump_clock: MockClock) -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    with pytest.raises(TimeoutError):
        ch.recv(timeout=2)
    assert unknot.current_time() == pytest.approx(2)
    assert not ch._receivers


@pytest.mark.unknot
def test_send_timeout(autojump_clock: MockClock) -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    with pytest.raises(TimeoutError):
        ch.send(1, timeout=2)
    assert not ch._senders
    # the timed-out value is not delivered later
    unknot.spawn(lambda: (unknot.sleep(1), ch.send(2)))
    assert ch.recv() == 2


@pytest.mark.unknot
def test_zero_timeout_polls() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    with pytest.raises(TimeoutError):
        ch.recv(timeout=0)
    with pytest.raises(TimeoutError):
        ch.send(1, timeout=0)
    s = unknot.spawn(ch.send, 7)
    unknot.sleep(0)
    assert ch.recv(timeout=0) == 7
    s.join()


@pytest.mark.unknot
def test_close_wakes_receivers_and_senders() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    other: unknot.Channel[int] = unknot.Channel()
    receivers = [unknot.spawn(ch.recv) for _ in range(3)]
    unknot.sleep(0)
    ch.close()
    for r in receivers:
        with pytest.raises(unknot.ChannelClosed):
            r.join()
    senders = [unknot.spawn(other.send, i) for i in range(3)]
    unknot.sleep(0)
    other.close()
    for s in senders:
        with pytest.raises(unknot.ChannelClosed):
            s.join()
    assert ch.closed and other.closed


@pytest.mark.unknot
def test_send_recv_on_closed_channel() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    ch.close()
    ch.close()  # idempotent
    with pytest.raises(unknot.ChannelClosed):
        ch.send(1)
    with pytest.raises(unknot.ChannelClosed):
        ch.recv()
    with pytest.raises(unknot.ChannelClosed):
        unknot.select(ch.recv_op())
    assert "closed" in repr(ch)


@pytest.mark.unknot
def test_iteration_until_closed() -> None:
    ch: unknot.Channel[int] = unknot.Channel()

    def producer() -> None:
        for i in range(5):
            ch.send(i)
        ch.close()

    unknot.spawn(producer)
    assert list(ch) == [0, 1, 2, 3, 4]


@pytest.mark.unknot
def test_many_senders_one_receiver() -> None:
    ch: unknot.Channel[tuple[int, int]] = unknot.Channel()

    def sender(s: int) -> None:
        for i in range(50):
            ch.send((s, i))

    with unknot.TaskGroup() as tg:
        for s in range(4):
            tg.spawn(sender, s)
        got = [ch.recv() for _ in range(200)]
    assert sorted(got) == [(s, i) for s in range(4) for i in range(50)]
    for s in range(4):  # per sender, order is kept
        assert [i for t, i in got if t == s] == list(range(50))


@pytest.mark.unknot
def test_cancelled_receiver_does_not_take_value() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    a = unknot.spawn(ch.recv)
    b = unknot.spawn(ch.recv)
    unknot.sleep(0)
    a.cancel()
    ch.send(1)  # must go to b
    assert b.join() == 1
    with pytest.raises(unknot.FiberCancelled):
        a.join()


@pytest.mark.unknot
def test_cancelled_sender_value_not_delivered() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    a = unknot.spawn(ch.send, 1)
    b = unknot.spawn(ch.send, 2)
    unknot.sleep(0)
    a.cancel()
    assert ch.recv() == 2
    b.join()
    with pytest.raises(TimeoutError):
        ch.recv(timeout=0)


# -- select -------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_select_picks_exactly_one_ready_op() -> None:
    a: unknot.Channel[str] = unknot.Channel()
    b: unknot.Channel[str] = unknot.Channel()
    sa = unknot.spawn(a.send, "from a")
    sb = unknot.spawn(b.send, "from b")
    unknot.sleep(0)  # both senders are waiting: both receives are ready
    op, value = unknot.select(a.recv_op(), b.recv_op())
    assert op.kind == "recv"
    assert value == f"from {'a' if op.channel is a else 'b'}"
    unknot.sleep(0)
    done = [s for s in (sa, sb) if s.done()]
    assert len(done) == 1  # exactly one send completed
    waiting = b if op.channel is a else a
    assert waiting.recv() == f"from {'b' if waiting is b else 'a'}"
    sa.join()
    sb.join()


@pytest.mark.unknot
def test_select_waits_then_completes_one(autojump_clock: MockClock) -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()
    unknot.spawn(lambda: (unknot.sleep(2), b.send(5)))
    unknot.spawn(lambda: (unknot.sleep(4), a.send(6)))
    op, value = unknot.select(a.recv_op(), b.recv_op())
    assert op.channel is b and value == 5
    assert unknot.current_time() == pytest.approx(2)
    # the abandoned receive on `a` must not swallow a's value later
    assert a.recv() == 6


@pytest.mark.unknot
def test_select_send_and_recv() -> None:
    requests: unknot.Channel[int] = unknot.Channel()
    replies: unknot.Channel[str] = unknot.Channel()
    r = unknot.spawn(replies.recv)
    unknot.sleep(0)
    op, value = unknot.select(requests.recv_op(), replies.send_op("reply"))
    assert op.channel is replies and op.kind == "send"
    assert value is None
    assert r.join() == "reply"


@pytest.mark.unknot
def test_select_send_waiting() -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()

    def selector() -> str:
        op, _ = unknot.select(a.send_op(1), b.send_op(2))
        return "a" if op.channel is a else "b"

    s = unknot.spawn(selector)
    unknot.sleep(0)
    assert b.recv() == 2
    assert s.join() == "b"
    with pytest.raises(TimeoutError):
        a.recv(timeout=0)  # the other send was withdrawn


@pytest.mark.unknot
def test_select_timeout(autojump_clock: MockClock) -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()
    with pytest.raises(TimeoutError):
        unknot.select(a.recv_op(), b.send_op(1), timeout=3)
    assert unknot.current_time() == pytest.approx(3)
    with pytest.raises(TimeoutError):
        unknot.select(a.recv_op(), timeout=0)
    assert not a._receivers and not b._senders


@pytest.mark.unknot
def test_select_fairness() -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()
    counts = {"a": 0, "b": 0}

    def pump(ch: unknot.Channel[int]) -> None:
        while True:
            ch.send(1)

    pa = unknot.spawn(pump, a)
    pb = unknot.spawn(pump, b)
    for _ in range(400):
        unknot.sleep(0)  # both pumps are waiting to send
        op, _ = unknot.select(a.recv_op(), b.recv_op())
        counts["a" if op.channel is a else "b"] += 1
    pa.cancel()
    pb.cancel()
    # Random choice: both picked, and neither starves (P(< 100 of 400) is astronomically small).
    assert counts["a"] > 100 and counts["b"] > 100


@pytest.mark.unknot
def test_select_argument_errors() -> None:
    with pytest.raises(ValueError):
        unknot.select()
    with pytest.raises(TypeError):
        unknot.select(unknot.Channel())  # type: ignore[arg-type]


@pytest.mark.unknot
def test_select_closed_while_waiting() -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()
    s = unknot.spawn(unknot.select, a.recv_op(), b.recv_op())
    unknot.sleep(0)
    a.close()
    with pytest.raises(unknot.ChannelClosed):
        s.join()
    assert not b._receivers


@pytest.mark.unknot
def test_select_cancelled_leaves_no_tokens() -> None:
    a: unknot.Channel[int] = unknot.Channel()
    b: unknot.Channel[int] = unknot.Channel()
    with unknot.move_on_after(0.01):
        unknot.select(a.recv_op(), b.send_op(3))
    assert not a._receivers and not b._senders


@pytest.mark.unknot
def test_operation_attributes() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    op = ch.send_op(5)
    assert (op.channel, op.kind, op.value) == (ch, "send", 5)
    rop = ch.recv_op()
    assert (rop.channel, rop.kind) == (ch, "recv")
    assert "send" in repr(op)


@pytest.mark.unknot
def test_ping_pong() -> None:
    ping: unknot.Channel[int] = unknot.Channel()
    pong: unknot.Channel[int] = unknot.Channel()

    def player() -> None:
        for v in ping:
            pong.send(v + 1)

    p = unknot.spawn(player)
    v = 0
    for _ in range(1000):
        ping.send(v)
        v = pong.recv()
    ping.close()
    p.join()
    assert v == 1000
