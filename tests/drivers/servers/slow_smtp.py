"""A loopback SMTP server (aiosmtpd) that waits before accepting a message.

``python slow_smtp.py [delay]``: after DATA it sleeps ``delay`` seconds (default 0.2) and then
answers ``250 OK <subject>``, so a client can check that its own message was the one accepted.
Prints the port it listens on, then serves until killed.
"""

from __future__ import annotations

import asyncio
import email
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2


class Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(DELAY)
        message = email.message_from_bytes(envelope.original_content)
        return f"250 OK {message['Subject']} for {','.join(envelope.rcpt_tos)}"


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="unknot.test"), "127.0.0.1", 0, backlog=256
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
