"""A tool with an auto-invoked handler: the model calls it, realtalk runs the handler (sync
handlers in a worker thread), sends the output and asks for the follow-up response.

    python examples/tools.py [URL]     # default: the embedded simulator
"""

import asyncio
import contextlib
import sys

from realtalk import RealtimeClient
from realtalk.simulator import Simulator

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def get_weather(arguments: dict) -> dict:
    return {"city": arguments["city"], "temperature_c": 21, "sky": "clear"}


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        client = await stack.enter_async_context(RealtimeClient(url, api_key="sk-local"))
        await client.add_tool(WEATHER_TOOL, get_weather)
        answered = asyncio.Event()  # the call, its output, then the spoken answer
        client.on("conversation.item.completed", lambda event: answered.set()
                  if event["item"].role == "assistant" else None)
        await client.send_user_message_content("Use get_weather: how warm is it in Paris?")
        await client.create_response()
        await asyncio.wait_for(answered.wait(), timeout=30)
        for item in client.conversation.items:
            print(f"{item.type:>20}  {item.name or item.role or '':11}  "
                  f"{item.arguments or item.output or item.text or item.transcript}")

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
