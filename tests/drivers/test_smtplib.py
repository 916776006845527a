"""smtplib, unmodified, against aiosmtpd (servers/slow_smtp.py) that waits 0.2 s after DATA."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any


def test_smtplib_sends_concurrently(slow_smtp: Any, concurrently: Any) -> None:
    """50 fibers, each its own SMTP session: EHLO, MAIL, RCPT, DATA (0.2 s in the server).

    ``local_hostname`` is given because smtplib's default, `socket.getfqdn()`, is a DNS look-up,
    which unknot runs on its resolver thread pool: correct, but it would start threads, and
    this test shows that the SMTP conversation itself needs none.
    """

    def work(i: int) -> Any:
        message = EmailMessage()
        message["From"] = "sender@unknot.test"
        message["To"] = f"user{i}@unknot.test"
        message["Subject"] = f"message-{i}"
        message.set_content(f"body {i}\n")
        with smtplib.SMTP(
            "127.0.0.1", slow_smtp.port, local_hostname="client.unknot.test", timeout=10
        ) as smtp:
            smtp.ehlo()
            smtp.mail("sender@unknot.test")
            code, _ = smtp.rcpt(f"user{i}@unknot.test")
            assert code == 250
            code, reply = smtp.data(message.as_bytes())
            assert code == 250
            return reply.decode()

    outcome = concurrently(work)
    assert outcome.results == [f"OK message-{i} for user{i}@unknot.test" for i in range(50)]
