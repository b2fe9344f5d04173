"""A telephony leg: 8 kHz G.711 mu-law both ways, as a SIP or Twilio-style gateway sees it.
The caller's audio goes up as mu-law bytes; the reply comes back as mu-law for the phone line.
Every clock (the 100 ms commit rule, audio_end_ms) runs at 8 kHz.

    python examples/telephony_g711.py [URL]     # default: the embedded simulator
"""

import asyncio
import contextlib
import sys

import numpy as np

from realtalk import RealtimeClient
from realtalk.audio import resample, ulaw_decode, ulaw_encode
from realtalk.simulator import Simulator, synthesize_speech

PHONE_RATE = 8000
MULAW = {"type": "audio/pcmu"}


async def main(url: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(Simulator())).url
        session = {"audio": {"input": {"format": MULAW, "turn_detection": None},
                             "output": {"format": MULAW}}}
        client = await stack.enter_async_context(RealtimeClient(
            url, api_key="sk-local", session=session, input_rate=PHONE_RATE,
            playback_rate=PHONE_RATE))
        # The caller's speech as the line delivers it: 20 ms mu-law packets.
        speech = np.frombuffer(synthesize_speech("Hello, I have a question about my bill.").pcm,
                               dtype=np.int16)
        caller = ulaw_encode(resample(speech, 24000, PHONE_RATE))
        for packet in np.split(caller, range(160, caller.shape[0], 160)):
            client.append_input_audio(ulaw_decode(packet))
        await client.commit_input_audio()
        await client.create_response()
        await client.wait_for_response_done(timeout=30)
        reply = client.conversation.items[-1]
        line = ulaw_encode(reply.audio)  # back to the phone line
        print(f"caller {caller.shape[0] / PHONE_RATE:.2f} s -> reply {line.shape[0]} mu-law "
              f"bytes ({line.shape[0] / PHONE_RATE:.2f} s): {reply.transcript}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
