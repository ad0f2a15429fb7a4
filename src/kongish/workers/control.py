"""The channel between the master and one worker: calls both ways, as JSON lines.

Each side answers the other's calls with its ``handlers`` (plain or async
functions of keyword arguments) and makes its own with ``call``, which fires
with the answer, or fails with ``RemoteError`` or, once the channel closes,
``ChannelClosed``. A line holds one whole message: a configuration for a
DB-less node travels in one, hence the large line limit.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

log = Logger()

#: Longest message: a DB-less configuration of a large gateway fits.
MAX_MESSAGE = 256 * 1024 * 1024


class RemoteError(Exception):
    """The other side's handler failed; the message says how."""


class ChannelClosed(Exception):
    """The channel closed before the call was answered (the other process ended)."""


Handler = Callable[..., Any]


class ControlChannel(LineOnlyReceiver):
    """One end of a master-worker channel."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, handlers: Mapping[str, Handler], on_lost: Callable[[], None] | None = None) -> None:
        self.handlers = handlers
        self.on_lost = on_lost
        self._pending: dict[int, Deferred[Any]] = {}
        self._next_id = 0
        self.closed = False

    def call(self, method: str, **params: Any) -> Deferred[Any]:
        """Call ``method`` on the other side; fires with what its handler returned."""
        answer: Deferred[Any] = Deferred()
        if self.closed:
            answer.errback(ChannelClosed(method))
            return answer
        self._next_id += 1
        self._pending[self._next_id] = answer
        self._send({"id": self._next_id, "method": method, "params": params})
        return answer

    def _send(self, message: dict[str, Any]) -> None:
        self.sendLine(json.dumps(message, separators=(",", ":")).encode())

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        if "method" in message:
            self._answer(message)
            return
        answer = self._pending.pop(message["id"], None)
        if answer is None or answer.called:  # a call its caller stopped waiting for
            return
        if "error" in message:
            answer.errback(RemoteError(message["error"]))
        else:
            answer.callback(message.get("result"))

    def _answer(self, message: dict[str, Any]) -> None:
        handler = self.handlers.get(message["method"])
        if handler is None:
            self._send({"id": message["id"], "error": f"no such call: {message['method']}"})
            return
        call_id = message["id"]

        def answered(result: Any) -> None:
            if not self.closed:
                self._send({"id": call_id, "result": result})

        def failed(failure: Failure) -> None:
            log.failure("control call {method} failed", failure, method=message["method"])
            if not self.closed:
                self._send({"id": call_id, "error": str(failure.value)})

        maybeDeferred(_run, handler, message.get("params") or {}).addCallbacks(answered, failed)

    def lineLengthExceeded(self, line: bytes) -> None:
        log.error("control message of {size} bytes is over the limit; closing the channel", size=len(line))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        pending, self._pending = self._pending, {}
        for answer in pending.values():
            answer.errback(ChannelClosed())
        if self.on_lost is not None:
            self.on_lost()


def _run(handler: Handler, params: dict[str, Any]) -> Any:
    """The handler's result; a coroutine's becomes a Deferred (maybeDeferred waits for either)."""
    result = handler(**params)
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result


def channel_factory(channel: ControlChannel) -> Factory:
    """A factory that hands out ``channel`` once, for ``adoptStreamConnection``."""
    return Factory.forProtocol(lambda: channel)
