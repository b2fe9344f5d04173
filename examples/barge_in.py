"""Barge-in with exact truncation: the reply streams into ``client.playback`` (a Rust
PlaybackBuffer at the device rate); an audio callback pulls from it. When the user starts
speaking, ``interrupt()`` drops what is queued and truncates the item on the server to what
the speaker really played.

    python examples/barge_in.py [URL]     # default: the embedded simulator
"""

import asyncio
import contextlib
import sys
from typing import Any

import numpy as np

from realtalk import RealtimeClient
from realtalk.simulator import Simulator

DEVICE_RATE = 48000
BLOCK = DEVICE_RATE // 100  # 10 ms


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        client = await stack.enter_async_context(
            RealtimeClient(url, api_key="sk-local", playback_rate=DEVICE_RATE))

        def callback(outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
            # sounddevice's output callback: its default outdata is float32, frames x channels.
            client.playback.pull_into(outdata)

        await client.send_user_message_content("Tell me a long story about the sea.")
        await client.create_response()
        await client.wait_for_response_done(timeout=30)
        # A stereo sound card (sounddevice.OutputStream(channels=2, callback=callback)) would
        # call back from its own thread every 10 ms; here the loop plays 0.75 s.
        outdata = np.zeros((BLOCK, 2), dtype=np.float32)
        loudest = 0.0
        for _ in range(75):
            callback(outdata, BLOCK, None, None)
            loudest = max(loudest, float(np.abs(outdata).max()))
        cut = await client.interrupt()  # what the user heard, in the output format's clock
        print(f"played 0.75 s in stereo, peak {loudest:.2f}")
        print(f"truncated {cut['item_id']} at {cut['audio_end_ms']} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
