"""A phone call through a media-stream gateway, barge-in included: the truncation lands on what
the caller really heard, as acknowledged by the phone side's marks.

Phone gateways (Twilio's media streams and the like) talk JSON over a WebSocket: ``media``
events carry base64 G.711 mu-law both ways, the agent sends a ``mark`` after the audio it
queued and the gateway sends the mark back once that audio has been played to the caller,
and ``clear`` drops what the gateway still had queued. Here a fake gateway (the phone line)
plays the agent's audio in real time, acknowledges marks, and streams the caller's voice;
after about 0.6 s of the reply the caller talks over it.

The agent (``Agent``) runs realtalk's own WebSocket server for the gateway and a
``RealtimeClient(local_playback=False)``: it forwards each audio delta as 20 ms ``media``
frames with a mark after each, turns acknowledged marks into ``report_playback``, and on the
client's ``playback.flush`` (the server heard the caller start speaking) sends ``clear``. The
client truncates the reply at the last acknowledged position.

    python examples/phone_gateway.py [URL]     # default: the embedded simulator
"""

import asyncio
import base64
import contextlib
import json
import sys
from typing import Any

import anyio
import numpy as np

from realtalk import RealtimeClient
from realtalk.audio import resample, ulaw_encode
from realtalk.simulator import Simulator, synthesize_speech
from realtalk.transport import WebSocket, WebSocketServer, open_websocket

RATE = 8000
FRAME = RATE // 50  # 20 ms of mu-law, one byte a sample
MULAW = {"type": "audio/pcmu"}
SILENCE = bytes([0xFF]) * FRAME  # mu-law's zero
BARGE_IN_AFTER_MS = 600


class Agent:
    """The agent's end of the media stream: the Realtime client on one side, the gateway's
    WebSocket on the other."""

    def __init__(self, client: RealtimeClient, line: WebSocket) -> None:
        self.client = client
        self.line = line
        self.stream_sid = ""
        self.sent_ms: dict[str, int] = {}
        self.acknowledged_ms = 0
        self.cut_items: set[str] = set()
        # Handlers run in the loop and must not wait: what goes to the line is queued, in order.
        self.outbox_send, self.outbox = anyio.create_memory_object_stream[str](10_000)
        client.on("response.output_audio.delta", self.forward_delta)
        client.on("playback.flush", self.clear_line)

    def forward_delta(self, event: Any) -> None:
        item_id = event["item_id"]
        if item_id in self.cut_items:
            return  # late audio of a reply the caller interrupted
        audio = base64.b64decode(event["delta"])
        for start in range(0, len(audio), FRAME):
            frame = audio[start:start + FRAME]
            end_ms = self.sent_ms.get(item_id, 0) + len(frame) * 1000 // RATE
            self.sent_ms[item_id] = end_ms
            self.send({"event": "media", "media": {"payload": base64.b64encode(frame).decode()}})
            self.send({"event": "mark", "mark": {"name": f"{item_id}:{end_ms}"}})

    def clear_line(self, event: Any) -> None:
        if event["item_id"] is not None:
            self.cut_items.add(event["item_id"])
        self.send({"event": "clear"})

    def send(self, message: dict[str, Any]) -> None:
        self.outbox_send.send_nowait(json.dumps({**message, "streamSid": self.stream_sid}))

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.write)
            await self.read()
            tg.cancel_scope.cancel()

    async def write(self) -> None:
        async for message in self.outbox:
            await self.line.send_text(message)

    async def read(self) -> None:
        while True:
            event = json.loads(await self.line.receive())
            kind = event.get("event")
            if kind == "start":
                self.stream_sid = event["start"]["streamSid"]
            elif kind == "media":
                # The caller's voice, already in the session's input format: sent as it is.
                self.client.append_input_audio(event["media"]["payload"])
            elif kind == "mark":
                item_id, _, ms = event["mark"]["name"].rpartition(":")
                # A clear makes the gateway hand back its pending marks: not heard, not counted.
                if item_id not in self.cut_items:
                    self.client.report_playback(item_id, int(ms))
                    self.acknowledged_ms = int(ms)
            elif kind == "stop":
                return


class PhoneLine:
    """The fake gateway: plays what it is sent in real time, acknowledges marks once the
    audio before them has played, and streams the caller (silence, then words)."""

    def __init__(self, ws: WebSocket, caller: bytes) -> None:
        self.ws = ws
        self.caller = caller
        self.queue: list[bytes | str] = []  # audio frames and mark names, in arrival order
        self.played_ms = 0  # the end of the frame playing now
        self.played_at_clear: int | None = None

    async def run(self, seconds: float) -> None:
        await self.ws.send_text(json.dumps({"event": "start", "start": {"streamSid": "MZ1"}}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.receive)
            await self.tick(seconds)
            await self.ws.send_text(json.dumps({"event": "stop", "streamSid": "MZ1"}))
            tg.cancel_scope.cancel()

    async def receive(self) -> None:
        while True:
            event = json.loads(await self.ws.receive())
            if event["event"] == "media":
                self.queue.append(base64.b64decode(event["media"]["payload"]))
            elif event["event"] == "mark":
                self.queue.append(event["mark"]["name"])
            elif event["event"] == "clear":
                self.played_at_clear = self.played_ms
                pending = [entry for entry in self.queue if isinstance(entry, str)]
                self.queue.clear()
                for name in pending:
                    await self.send("mark", {"mark": {"name": name}})

    async def tick(self, seconds: float) -> None:
        """Every 20 ms: play one frame to the caller, send one frame of the caller's voice."""
        spoken = 0
        deadline = anyio.current_time()
        for _ in range(int(seconds * 50)):
            # The frame before each of these marks has finished playing.
            while self.queue and isinstance(self.queue[0], str):
                await self.send("mark", {"mark": {"name": self.queue.pop(0)}})
            if self.queue:
                self.queue.pop(0)
                self.played_ms += 20
            talking = self.played_ms >= BARGE_IN_AFTER_MS or spoken
            frame = self.caller[spoken:spoken + FRAME] if talking else b""
            spoken += len(frame)
            payload = base64.b64encode(frame.ljust(FRAME, SILENCE[:1])).decode()
            await self.send("media", {"media": {"payload": payload}})
            deadline += 0.02
            await anyio.sleep(max(0.0, deadline - anyio.current_time()))

    async def send(self, kind: str, fields: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps({"event": kind, "streamSid": "MZ1", **fields}))


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        turn = {"type": "server_vad", "silence_duration_ms": 300, "create_response": False}
        session = {"audio": {"input": {"format": MULAW, "turn_detection": turn},
                             "output": {"format": MULAW}}}
        client = await stack.enter_async_context(RealtimeClient(
            url, api_key="sk-local", session=session, input_rate=RATE, playback_rate=RATE,
            local_playback=False))
        agents: list[Agent] = []

        async def handle(line: WebSocket) -> None:
            agent = Agent(client, line)
            agents.append(agent)
            await agent.run()

        server = await stack.enter_async_context(WebSocketServer(handle))
        words = np.frombuffer(synthesize_speech("Wait, wait, I have a question.").pcm,
                              dtype=np.int16)
        caller = ulaw_encode(resample(words, 24000, RATE)).tobytes()
        async with open_websocket(f"ws://127.0.0.1:{server.port}/media") as ws:
            line = PhoneLine(ws, caller)
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run, 1.6)
                await client.send_user_message_content(
                    "Tell me everything about my bill, slowly, in many sentences.")
                await client.create_response()
        (agent,) = agents
        with anyio.fail_after(5):  # the server's conversation.item.truncated
            while not (cut := [i for i in client.conversation.items
                               if i.truncated_ms is not None]):
                await anyio.sleep(0.01)
        item = cut[0]
        held = base64.b64decode((await client.retrieve_item(item.id))["content"][0]["audio"])
        assert line.played_at_clear is not None
        unconfirmed = line.played_at_clear - agent.acknowledged_ms
        print(f"the phone was playing the reply's 20 ms up to {line.played_at_clear} ms when "
              f"the agent cleared the line; marks acknowledged {agent.acknowledged_ms} ms "
              f"({unconfirmed} ms playing, not yet confirmed)")
        print(f"truncated {item.id} at {item.truncated_ms} ms; the server keeps "
              f"{len(held) * 1000 // RATE} ms of it")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
