"""The connection supervision's I/O half: connect, handshake, replay, expiry, one reader and
one writer per connection, and reconnecting after a retryable loss.

``ConnectionSupervisor.run`` is the client's supervisor task. Each attempt opens a link,
waits for ``session.created`` and pushes the session config and tools; on a reconnect it then
replays the conversation's history (messages as text, tool calls and their outputs, chained
by ``previous_item_id``) and the user-level events the old connection never confirmed
(``_delivery``), then what was still queued and the audio held over the outage. When to retry
and how long to wait is ``_supervision.ReconnectPolicy``; what a loss means for responses,
item requests and the conversation is the client's (``_on_connection_lost``,
``_report_lost``, ``_fail_waiters``). Until the new link is ready nothing queued is lost: a
message leaves the requeue only once written.
"""

from __future__ import annotations

import random
import time
from contextlib import AbstractAsyncContextManager
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from realtalk import events as _events
from realtalk._ids import new_event_id as _new_event_id
from realtalk._ids import new_item_id as _new_item_id
from realtalk._supervision import ReconnectPolicy
from realtalk.conversation import Item
from realtalk.errors import (
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    ProtocolError,
    Timeout,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from realtalk._delivery import Delivery, DeliveryLedger
    from realtalk._responses import ResponseSlot
    from realtalk._uplink import FrameHandoff, OutageBuffer
    from realtalk.client import ClientMetrics, ConnectFactory, Link
    from realtalk.conversation import Conversation

__all__ = ["ConnectionSupervisor", "SupervisedClient"]


class SupervisedClient(Protocol):
    """Everything the supervisor may read, change or call on its client, in one place.

    ``RealtimeClient`` is one (structurally: it declares nothing for it); mypy holds the
    supervisor to this list, so a new reach into the client shows up here first. The
    settings are read each time they are used: they are public attributes a program may
    change between connections."""

    # ---- settings (read) ----
    @property
    def url(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def protocol(self) -> _events.Protocol: ...
    @property
    def connect_timeout_s(self) -> float: ...
    @property
    def reconnect(self) -> bool: ...
    @property
    def max_reconnect_attempts(self) -> int: ...
    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def outage_audio_ms(self) -> float: ...
    @property
    def expiry_margin_s(self) -> float: ...
    # a transcription session replays no history
    @property
    def intent(self) -> str: ...
    @property
    def _api_key(self) -> str | None: ...
    @property
    def _headers(self) -> dict[str, str]: ...
    @property
    def _connect_factory(self) -> ConnectFactory | None: ...

    # ---- state shared with the client ----
    # reconnects, outage_audio_dropped_ms, client_events_replayed
    @property
    def metrics(self) -> ClientMetrics: ...
    # replayed after a reconnect, aliased to the new ids
    @property
    def conversation(self) -> Conversation: ...
    # user-level events to confirm, replay or report lost
    @property
    def _ledger(self) -> DeliveryLedger: ...
    # audio held over an outage, sent by the next handshake
    @property
    def _outage(self) -> OutageBuffer: ...
    # what the writer sends
    @property
    def _outbox_receive(self) -> MemoryObjectReceiveStream[bytes]: ...
    # the expiry rotation waits for it to be idle
    @property
    def _responses(self) -> ResponseSlot: ...
    # its expires_at
    @property
    def _server_session(self) -> dict[str, Any]: ...
    # closed when the supervisor gives up
    @property
    def _handoff(self) -> FrameHandoff: ...
    _link: Link | None  # set once a connection is ready, None when it ends
    _closed: bool
    _final_error: BaseException | None  # set when the supervisor gives up

    # ---- what the client does for it ----
    def _parse(self, message: str | bytes) -> dict[str, Any]: ...
    def _on_message(self, message: bytes, is_text: bool) -> None: ...
    def _invalid_server_event(self, message: bytes, exc: BaseException) -> None: ...
    def _on_error(self, event: dict[str, Any]) -> None: ...
    def _on_session(self, event: dict[str, Any]) -> None: ...
    def _emit_server_event(self, event: Mapping[str, Any]) -> None: ...
    def _emit(self, name: str, data: Mapping[str, Any]) -> None: ...
    def _local_error(self, code: str, message: str, **extra: Any) -> None: ...
    def _log_wire(self, source: str, message: bytes) -> None: ...
    def _full_session(self) -> dict[str, Any]: ...
    def _drain_handoff(self) -> bool: ...
    def _on_connection_lost(self, error: BaseException | None) -> None: ...
    def _report_lost(self, delivery: Delivery, why: str) -> None: ...
    def _fail_waiters(self) -> None: ...
    async def _audible_watcher(self) -> None: ...


class ConnectionSupervisor:
    """Owns the client's connections, one at a time, for the client's whole life."""

    def __init__(self, client: SupervisedClient) -> None:
        self._client = client
        # Messages taken off the outbox for a connection that died before writing them,
        # in order; the next handshake writes them first.
        self.requeue: list[bytes] = []
        # The message the writer is writing right now (kept if the write fails).
        self.pending: bytes | None = None
        # Item ids in the old session -> their replays' ids in the current one.
        self.replayed_ids: dict[str, str] = {}

    def _open(self) -> AbstractAsyncContextManager[Link]:
        client = self._client
        if client._connect_factory is not None:
            return client._connect_factory()
        from realtalk import transport
        from realtalk.connection import realtime_request

        # One place builds the URL and the auth headers (OpenAI, beta, Azure, ek_ tokens).
        url, headers = realtime_request(client.url, model=client.model, api_key=client._api_key,
                                        protocol=client.protocol, headers=client._headers)
        return transport.open_websocket(url, headers=headers)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The supervisor task: started once the first session is set up (its failure is the
        caller's), then reconnects after each loss until the policy gives up or the client
        closes."""
        client = self._client
        attempt = 0
        started = False
        restored_after_loss = False
        dropped_before = 0.0
        while True:
            error: BaseException | None = None
            try:
                async with self._open() as link:
                    with anyio.fail_after(client.connect_timeout_s):
                        await self._handshake(link, reconnecting=started)
                    if not started:
                        started = True
                        task_status.started()
                    elif restored_after_loss:
                        client.metrics.reconnects += 1
                        dropped = client.metrics.outage_audio_dropped_ms - dropped_before
                        if dropped > 0:
                            client._local_error(
                                "outage_audio_dropped",
                                f"{dropped:.0f} ms of microphone audio appended during the "
                                f"outage did not fit the {client.outage_audio_ms} ms buffer "
                                "and was not sent (the oldest went first)")
                        client._emit("connection.restored", {"attempts": attempt})
                    attempt = 0
                    restored_after_loss = False
                    await self._run_connection(link)
            except ConnectionClosed as exc:
                error = exc
            except (ConnectError, HandshakeError, OSError, Timeout, TimeoutError,
                    ProtocolError) as exc:
                error = exc
            finally:
                client._link = None
            if client._closed:
                return
            # Read each time: the settings are public attributes a program may change.
            policy = ReconnectPolicy(client.reconnect, client.max_reconnect_attempts,
                                     client.backoff_initial_s, client.backoff_max_s)
            if not started:
                raise error or ConnectionClosed(1006, "connection ended during setup")
            if not restored_after_loss:
                client._on_connection_lost(error)
                restored_after_loss = True
                dropped_before = client.metrics.outage_audio_dropped_ms
            attempt += 1
            if policy.gives_up(error, attempt):
                client._final_error = error
                client._handoff.close()  # device threads now get the error, not a queue
                self.drain_outbox_into_outage()
                for delivery in client._ledger.give_up():
                    client._report_lost(delivery, "no new connection came to replay it")
                undelivered = len(self.requeue) + len(client._outage)
                client._local_error("connection_failed",
                                    f"giving up on the connection: {error}; {undelivered} "
                                    "queued client events were not delivered", final=True,
                                    undelivered=undelivered)
                client._fail_waiters()
                return
            await anyio.sleep(policy.delay(attempt, random.random()))

    def drain_outbox_into_outage(self) -> None:
        """Keep what the dead connection did not write for the next one, in order."""
        keep = self.requeue  # what an earlier handshake did not get to comes first
        if self.pending is not None:
            keep.append(self.pending)
            self.pending = None
        while True:
            try:
                keep.append(self._client._outbox_receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self.requeue = keep

    async def _handshake(self, link: Link, *, reconnecting: bool) -> None:
        client = self._client
        while True:
            data, _ = await link.receive_raw()
            client._log_wire("server", data)  # session.created, or the refusal, is logged too
            try:
                first = client._parse(data)
            except Exception as exc:  # garbage before session.created: skipped, reported
                client._invalid_server_event(data, exc)
                continue
            if first.get("type") == "session.created":
                break
            if first.get("type") != "error":
                raise ProtocolError(f"expected session.created first, got {first.get('type')!r}")
            # A refused connection says why in an error event, then closes (3000/4000).
            client._on_error(first)
        client._on_session(first)
        client._emit_server_event(first)
        await self._send_on(link, _events.serialize_client_event(
            {"type": "session.update", "session": client._full_session(),
             "event_id": _new_event_id()}, client.protocol))
        if reconnecting:
            await self._replay_history(link)
            await self._replay_unconfirmed(link)
        # Each message leaves its queue only once written: if this connection dies too, the
        # rest waits for the next one instead of vanishing with the handshake.
        while self.requeue:
            await self._send_on(link, self.requeue[0])
            del self.requeue[0]
        while client._outage:
            await self._send_on(link, client._outage.peek())
            client._outage.pop()
        client._link = link
        if client._handoff:
            client._drain_handoff()

    async def _replay_unconfirmed(self, link: Link) -> None:
        """User-level events written to the old connection that the server never confirmed
        go out again, once; those already replayed once are reported lost."""
        client = self._client
        replay, lost = client._ledger.at_reconnect()
        for delivery in lost:
            client._report_lost(delivery, "was replayed once and still never confirmed")
        for delivery in replay:
            event = dict(delivery.event)
            previous = event.get("previous_item_id")
            if isinstance(previous, str) and previous != "root":
                if previous in self.replayed_ids:
                    event["previous_item_id"] = self.replayed_ids[previous]
                elif not any(previous == d.item_id for d in client._ledger.pending()):
                    # Not in the new session under any id: the item goes at the end.
                    del event["previous_item_id"]
            message = _events.serialize_client_event(event, client.protocol)
            client._ledger.replace_message(delivery, event, message)
            client.metrics.client_events_replayed += 1
            await self._send_on(link, message)

    async def _replay_history(self, link: Link) -> None:
        """Give the new session the conversation so far, chained in order: messages as text
        (their transcript for audio), tool calls with their arguments and outputs."""
        client = self._client
        client.conversation.start_new_session()
        self.replayed_ids = {}
        if client.intent == "transcription":
            return  # no model reads a context there: the new session continues the transcripts
        previous: str | None = None
        replayed_calls: set[str] = set()
        for item in client.conversation.items:
            body = self._replayable(item, replayed_calls)
            if body is None:
                continue
            replay_id = _new_item_id()
            client.conversation.alias(replay_id, item.id)
            self.replayed_ids[item.id] = replay_id
            event: dict[str, Any] = {"type": "conversation.item.create",
                                     "event_id": _new_event_id(),
                                     "item": {"id": replay_id, **body}}
            if previous is not None:
                event["previous_item_id"] = previous
            await self._send_on(link, _events.serialize_client_event(event, client.protocol))
            previous = replay_id
        if previous is not None:
            # What the new session appends after the replay follows our whole history, items
            # that were not replayed (audio without transcript, unfinished calls) included.
            client.conversation.alias(previous, client.conversation.items[-1].id)

    @staticmethod
    def _replayable(item: Item, replayed_calls: set[str]) -> dict[str, Any] | None:
        """The item's replay (without id), or None if there is nothing a session can take."""
        if item.type == "message" and item.role in ("user", "assistant", "system"):
            text = item.text or item.transcript
            if not text:
                return None
            kind = "output_text" if item.role == "assistant" else "input_text"
            return {"type": "message", "role": item.role,
                    "content": [{"type": kind, "text": text}]}
        if item.type == "function_call" and item.call_id and item.name \
                and item.status == "completed":
            replayed_calls.add(item.call_id)
            return {"type": "function_call", "call_id": item.call_id, "name": item.name,
                    "arguments": item.arguments}
        if item.type == "function_call_output" and item.call_id in replayed_calls \
                and item.output is not None:
            return {"type": "function_call_output", "call_id": item.call_id,
                    "output": item.output}
        return None

    async def _run_connection(self, link: Link) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, link)
                tg.start_soon(self._expiry_watch, link)
                tg.start_soon(self._client._audible_watcher)
                await self._reader(link)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from None

    async def _expiry_watch(self, link: Link) -> None:
        client = self._client
        expires_at = client._server_session.get("expires_at")
        if not isinstance(expires_at, int | float) or expires_at <= 0:
            return
        remaining = expires_at - time.time()
        if remaining < 4 * client.expiry_margin_s:
            return  # too short to rotate ahead (expires_at has 1 s resolution): the close does
        await anyio.sleep(remaining - client.expiry_margin_s)
        # Rotate ahead of the server's own close so nothing is cut mid-turn.
        while client._responses.busy:
            await client._responses.wait_idle()
        raise ConnectionClosed(1001, "session close to expires_at: rotating")

    async def _writer(self, link: Link) -> None:
        client = self._client
        outbox = client._outbox_receive
        while True:
            try:
                # A message already queued goes out without a trip through the event loop.
                message = outbox.receive_nowait()
            except anyio.WouldBlock:
                try:
                    message = await outbox.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return
            self.pending = message
            await self._send_on(link, message)
            self.pending = None
            if client._handoff:
                client._drain_handoff()

    async def _send_on(self, link: Link, message: bytes) -> None:
        client = self._client
        await link.send_text(message)
        client._ledger.written(message)
        client._log_wire("client", message)

    async def _reader(self, link: Link) -> None:
        client = self._client
        consume = getattr(link, "consume", None)
        if consume is not None:
            # The transport's reader task handles each message as it arrives: one wake-up of
            # the event loop per message instead of two (reader task, then this task).
            await consume(client._on_message)
        while True:
            message, is_text = await link.receive_raw()
            client._on_message(message, is_text)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that ended a connection's tasks (the others are its consequences)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_leaf(exc)
        return exc
    return group
