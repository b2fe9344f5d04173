"""Barge-in with exact truncation: the reply streams into ``client.playback`` (a Rust
PlaybackBuffer at the device rate); an audio callback pulls from it. When the user starts
speaking, ``interrupt()`` drops what is queued and truncates the item on the server to what
the speaker really played.

    python examples/barge_in.py [URL]     # default: the embedded simulator
"""

import asyncio
import contextlib
import sys

from realtalk import RealtimeClient
from realtalk.simulator import Simulator

DEVICE_RATE = 48000


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        client = await stack.enter_async_context(
            RealtimeClient(url, api_key="sk-local", playback_rate=DEVICE_RATE))
        await client.send_user_message_content("Tell me a long story about the sea.")
        await client.create_response()
        await client.wait_for_response_done(timeout=30)
        # A sound card would call pull() from its own thread every 10 ms; play 0.75 s.
        for _ in range(75):
            client.playback.pull(DEVICE_RATE // 100)
        cut = await client.interrupt()  # what the user heard, in the output format's clock
        print(f"truncated {cut['item_id']} at {cut['audio_end_ms']} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
