"""The exceptions the core raises that are not cancellation (see `_cancel` for `Cancelled`)."""

from __future__ import annotations


class DeadlockError(RuntimeError):
    """Raised in the root fiber when every fiber is blocked and nothing can ever wake them."""


class NotInFiberError(RuntimeError):
    """A blocking unknot call was made where it cannot suspend (not in a fiber)."""
