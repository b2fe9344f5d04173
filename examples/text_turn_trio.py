"""The same text turn on trio: realtalk runs on anyio, so only the entry point changes.

    python examples/text_turn_trio.py [URL]     # default: the embedded simulator
"""

import contextlib
import sys

import trio

from realtalk import RealtimeClient
from realtalk.simulator import Simulator


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        client = await stack.enter_async_context(RealtimeClient(url, api_key="sk-local"))
        client.on("conversation.updated", lambda event: print(
            (event["delta"] or {}).get("transcript", ""), end="", flush=True))
        await client.send_user_message_content("What is the capital of France?")
        await client.create_response()
        await client.wait_for_response_done(timeout=30)
        reply = client.conversation.items[-1]
        print(f"\n[{reply.role}: {len(reply.audio) / reply.sample_rate:.2f} s of audio]")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
