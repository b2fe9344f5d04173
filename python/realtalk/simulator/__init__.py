"""A protocol-faithful local OpenAI Realtime server: the embedded default and the test bed.

    async with Simulator() as sim:          # ws://127.0.0.1:PORT/v1/realtime
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=sim.websocket_base_url)

`ServerSession` is the I/O-free protocol engine behind each connection; `responder` holds the
plug-in API for what the simulated model says (and the fault hooks); `script` the scripted
sessions built on it (``Simulator(script="turns.json")``); `speech` the synthesiser that
voices replies (espeak-ng when installed, else a speech-like buzz).
"""

from realtalk.simulator.responder import (
    Audio,
    Close,
    Delay,
    Drop,
    FunctionCall,
    Part,
    Responder,
    ResponseContext,
    ServerError,
    Text,
    default_responder,
)
from realtalk.simulator.server import (
    Simulator,
    SimulatorStats,
    VirtualClock,
    WallClock,
    run_simulator,
)
from realtalk.simulator.script import Script, ScriptError
from realtalk.simulator.session import ServerSession
from realtalk.simulator.speech import (
    EspeakNg,
    Speech,
    SynthesisError,
    Synthesizer,
    buzz,
    default_synthesizer,
    synthesize_speech,
)

__all__ = [
    "Audio",
    "Close",
    "Delay",
    "Drop",
    "EspeakNg",
    "FunctionCall",
    "Part",
    "Responder",
    "ResponseContext",
    "Script",
    "ScriptError",
    "ServerError",
    "ServerSession",
    "Speech",
    "SynthesisError",
    "Synthesizer",
    "Simulator",
    "SimulatorStats",
    "Text",
    "VirtualClock",
    "WallClock",
    "buzz",
    "default_responder",
    "default_synthesizer",
    "run_simulator",
    "synthesize_speech",
]
