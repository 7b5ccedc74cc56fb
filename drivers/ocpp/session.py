"""One charger's OCPP-J RPC over one websocket: inbound calls to handlers, outbound calls with timeouts.

Inbound messages are handled one at a time, in order, and answered before the next is read: that is
the one-outstanding-call rule for the charger's direction. Outbound calls hold a lock until their
answer or timeout: one outstanding call in our direction. Handlers return their reply; they never
await an outbound call (that would wait for an answer the receive loop can't read while it waits
for the handler). Work after a reply is scheduled with `after_reply`.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol

import structlog

from drivers.contracts import Clock, CommandOutcome
from drivers.ocpp import rpc
from drivers.ocpp.counters import Counters

Reply = dict[str, Any]
Handler = Callable[[dict[str, Any]], Reply | Awaitable[Reply]]

log = structlog.get_logger("drivers.ocpp.session")


class Transport(Protocol):
    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class CallFailed(Exception):
    """An outbound call that did not get a usable answer."""

    def __init__(self, outcome: CommandOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class RpcSession:
    def __init__(
        self,
        identity: str,
        version: rpc.Version,
        transport: Transport,
        handlers: Mapping[str, Handler],
        counters: Counters,
        clock: Clock,
        *,
        relaxed_actions: Collection[str] = (),
        remote_address: str = "",
    ) -> None:
        self.identity = identity
        self.version = version
        self.remote_address = remote_address
        self._transport = transport
        self._handlers = handlers
        self._counters = counters
        self._clock = clock
        self._relaxed = frozenset(relaxed_actions)
        self._lock = asyncio.Lock()
        self._pending: tuple[str, asyncio.Future[rpc.CallResult | rpc.CallError]] | None = None
        self._after_reply: list[Callable[[], None]] = []
        self._closed = False
        self._log = log.bind(identity=identity, version=version)

    @property
    def closed(self) -> bool:
        return self._closed

    def after_reply(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the reply to the call being handled has been sent."""
        self._after_reply.append(callback)

    async def _send(self, message: str) -> None:
        self._counters.inc(rpc.C_MESSAGES_OUT)
        await self._transport.send(message)

    async def on_message(self, raw: str | bytes) -> None:
        """Handle one inbound websocket message. Never raises for bad input; only a closed
        connection (from sending the reply) propagates."""
        if self._closed:
            return  # replaced by a newer connection: what the old one still says is not acted on
        self._counters.inc(rpc.C_MESSAGES_IN)
        try:
            frame = rpc.parse_frame(raw)
        except rpc.OcppFault as fault:
            self._counters.inc(fault.counter)
            self._log.warning("ocpp.bad_frame", counter=fault.counter, error=fault.description)
            if fault.reply:
                await self._send(
                    rpc.error_frame(self.version, fault.unique_id, fault.code, fault.description)
                )
            return
        if isinstance(frame, rpc.Call):
            await self._handle_call(frame)
            return
        pending = self._pending
        if pending is None or pending[0] != frame.unique_id or pending[1].done():
            self._counters.inc(rpc.C_UNEXPECTED_RESPONSES)
            self._log.info("ocpp.unexpected_response", unique_id=frame.unique_id)
            return
        pending[1].set_result(frame)

    async def _handle_call(self, call: rpc.Call) -> None:
        self._after_reply.clear()
        try:
            reply = await self._dispatch(call)
        except rpc.OcppFault as fault:
            self._counters.inc(fault.counter)
            self._log.warning(
                "ocpp.call_refused", action=call.action, code=fault.code, error=fault.description
            )
            self._after_reply.clear()
            await self._send(rpc.error_frame(self.version, call.unique_id, fault.code, fault.description))
            return
        except Exception:
            self._counters.inc(rpc.C_HANDLER_ERRORS)
            self._log.exception("ocpp.handler_failed", action=call.action)
            self._after_reply.clear()
            await self._send(rpc.error_frame(self.version, call.unique_id, "InternalError", "internal error"))
            return
        await self._send(rpc.result_frame(call.unique_id, reply))
        callbacks, self._after_reply = self._after_reply, []
        for callback in callbacks:
            callback()

    async def _dispatch(self, call: rpc.Call) -> Reply:
        handler = self._handlers.get(call.action)
        if handler is None:
            try:
                rpc.validate(self.version, rpc.CALL, call.action, {})
            except rpc.OcppFault as fault:
                known = fault.counter != rpc.C_UNKNOWN_ACTION
            else:
                known = True
            # A real action we don't serve is NotSupported; a name no version has is NotImplemented.
            raise rpc.OcppFault(
                "NotSupported" if known else "NotImplemented",
                f"action {call.action[:40]!r} is not served",
                rpc.C_UNKNOWN_ACTION,
            )
        strict = call.action not in self._relaxed
        if strict:
            rpc.validate(self.version, rpc.CALL, call.action, call.payload)
        result = handler(call.payload)
        reply = await result if inspect.isawaitable(result) else result
        if strict:
            try:
                rpc.validate(self.version, rpc.CALL_RESULT, call.action, reply)
            except rpc.OcppFault as fault:
                raise RuntimeError(
                    f"our own {call.action} reply breaks the schema: {fault.description}"
                ) from None
        return reply

    async def call(self, action: str, payload: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload; raises CallFailed. The timeout includes the
        wait for an earlier call to finish (one outstanding call per direction)."""
        strict = action not in self._relaxed
        if strict:
            rpc.validate(self.version, rpc.CALL, action, payload)  # a failure here is our bug: raise
        if self._closed:
            raise CallFailed(CommandOutcome.OFFLINE, "charger is not connected")
        unique_id = str(uuid.uuid4())
        try:
            async with asyncio.timeout(self._clock.loop_seconds(timeout_s)):
                async with self._lock:
                    if self._closed:
                        raise CallFailed(CommandOutcome.OFFLINE, "charger is not connected")
                    future: asyncio.Future[rpc.CallResult | rpc.CallError] = (
                        asyncio.get_running_loop().create_future()
                    )
                    self._pending = (unique_id, future)
                    try:
                        await self._send(rpc.call_frame(unique_id, action, payload))
                        answer = await future
                    finally:
                        self._pending = None
                        if future.done() and not future.cancelled():
                            # mark_closed() may have failed the call while its send was failing
                            # too: the send's error is the one raised, so this one is consumed
                            # here rather than logged by asyncio as never retrieved.
                            future.exception()
        except TimeoutError:
            self._counters.inc(rpc.C_CALL_TIMEOUTS)
            self._log.warning("ocpp.call_timeout", action=action, timeout_s=timeout_s)
            raise CallFailed(CommandOutcome.TIMEOUT, f"no answer to {action} within {timeout_s} s") from None
        except OSError as exc:  # websockets' ConnectionClosed is not an OSError; transports raise both
            raise CallFailed(CommandOutcome.OFFLINE, f"send failed: {exc}") from None
        if isinstance(answer, rpc.CallError):
            self._counters.inc(rpc.C_CALL_ERRORS_RECEIVED)
            outcome = (
                CommandOutcome.NOT_SUPPORTED
                if answer.code in ("NotImplemented", "NotSupported")
                else CommandOutcome.REJECTED
            )
            raise CallFailed(outcome, f"{answer.code}: {answer.description[:120]}")
        if strict:
            try:
                rpc.validate(self.version, rpc.CALL_RESULT, action, answer.payload)
            except rpc.OcppFault as fault:
                self._counters.inc(rpc.C_INVALID_RESPONSES)
                raise CallFailed(CommandOutcome.REJECTED, f"invalid answer: {fault.description}") from None
        return answer.payload

    def mark_closed(self) -> None:
        """The connection is gone: fail the call in flight now rather than at its timeout."""
        self._closed = True
        pending = self._pending
        if pending is not None and not pending[1].done():
            pending[1].set_exception(CallFailed(CommandOutcome.OFFLINE, "connection closed"))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.mark_closed()
        await self._transport.close(code, reason)
