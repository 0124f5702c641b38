"""Commands from the hub's services to the device endpoint (cloud to device).

Data flows one way (ARCHITECTURE.md): services never call into the endpoint. They dispatch a
command on the :class:`CommandBus`, and every endpoint subscribed to it decides whether it
holds the identity's live session. In one process that is a function call; at scale the same
commands travel between nodes (NATS), to the node that holds the device.

A handler answers ``True`` when it took the command (the identity is connected there and,
for a method request, subscribed to methods); the bus answers whether anyone did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CloudMessageQueued",
    "Command",
    "CommandBus",
    "CommandHandler",
    "DesiredPropertiesChanged",
    "MethodRequest",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MethodRequest:
    """Deliver ``$iothub/methods/POST/{method_name}/?$rid={request_id}`` to ``identity``."""

    identity: str
    method_name: str
    request_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DesiredPropertiesChanged:
    """The desired section of ``identity``'s twin changed to ``version``.

    ``body`` is the notification (the patch with ``$version``) for sessions subscribed to
    desired-property patches.
    """

    identity: str
    version: int
    body: bytes


@dataclass(frozen=True, slots=True)
class CloudMessageQueued:
    """A cloud-to-device or module input message was queued for ``identity``."""

    identity: str


Command = MethodRequest | DesiredPropertiesChanged | CloudMessageQueued

#: Returns ``True`` when it took the command.
CommandHandler = Callable[[Command], bool]


class CommandBus:
    """Delivers commands to the endpoints of this process."""

    def __init__(self) -> None:
        self._handlers: list[CommandHandler] = []

    def subscribe(self, handler: CommandHandler) -> Callable[[], None]:
        """Call ``handler`` for every command; returns a function that unsubscribes it."""
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    def dispatch(self, command: Command) -> bool:
        """Offer ``command`` to every handler; whether one took it.

        A handler that raises is logged and counts as not taking the command: a failing
        endpoint must not break the service that dispatched.
        """
        taken = False
        for handler in list(self._handlers):
            try:
                taken = handler(command) or taken
            except Exception:
                logger.exception("command handler failed command=%s", type(command).__name__)
        return taken
