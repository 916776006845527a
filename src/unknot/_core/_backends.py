"""Choosing a hub selector backend: ``$UNKNOT_SELECTOR`` (epoll, poll, select) or the best."""

from __future__ import annotations

import os
import select
from collections.abc import Callable

from ._io_poll import PollHub, SelectHub
from ._selector_hub import HubSelector

BACKENDS: dict[str, type[HubSelector]] = {"poll": PollHub, "select": SelectHub}
if hasattr(select, "epoll"):
    from ._io_epoll import EpollHub

    BACKENDS["epoll"] = EpollHub


def make_hub_selector(clock: Callable[[], float] | None = None) -> HubSelector:
    """A hub selector: ``$UNKNOT_SELECTOR`` (epoll, poll, select) or the best available."""
    name = os.environ.get("UNKNOT_SELECTOR", "").strip().lower()
    if not name:
        name = "epoll" if "epoll" in BACKENDS else "poll" if hasattr(select, "poll") else "select"
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"UNKNOT_SELECTOR={name!r} is not available here; choose one of {sorted(BACKENDS)}"
        ) from None
    return cls(clock)  # type: ignore[call-arg]
