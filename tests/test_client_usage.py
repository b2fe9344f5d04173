"""Token usage, rate limits and cost (``client.usage``, ``client.rate_limits``,
``realtalk.usage.Prices``; issue 23), against the simulator on asyncio and trio, GA and beta.

Oracles: the ``response.done`` and ``rate_limits.updated`` events on the raw wire (protocol.md
§5, §7.3), the text and audio the client received (the simulator bills 4 characters of text,
50 ms of output audio and 100 ms of input audio a token), and the cost worked out here by hand.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client_helpers import Recorder, speech_then_silence, stream, until

from realtalk.client import RealtimeClient
from realtalk.simulator import Simulator
from realtalk.usage import Prices, RateLimit, Tokens, Usage

TEXT_ONLY = {"output_modalities": ["text"]}
PROTOCOLS = ["ga", "beta"]
# An example table (US dollars per million tokens); the figures only need to differ.
PRICES = Prices(input_text=4.0, input_audio=32.0, cached_text=0.4, cached_audio=0.4,
                output_text=16.0, output_audio=64.0)


def wire_usages(recorder: Recorder) -> dict[str, dict[str, Any]]:
    return {e["response"]["id"]: e["response"]["usage"]
            for e in recorder.wire("server", "response.done")}


def assert_matches_wire(tokens: Tokens, usage: dict[str, Any]) -> None:
    details_in, details_out = usage["input_token_details"], usage["output_token_details"]
    assert tokens.input == usage["input_tokens"]
    assert tokens.output == usage["output_tokens"]
    assert tokens.total == usage["total_tokens"]
    assert tokens.cached == details_in["cached_tokens"]
    assert (tokens.input_text, tokens.input_audio) == (details_in["text_tokens"],
                                                       details_in["audio_tokens"])
    assert (tokens.cached_text, tokens.cached_audio) == (
        details_in["cached_tokens_details"]["text_tokens"],
        details_in["cached_tokens_details"]["audio_tokens"])
    assert (tokens.output_text, tokens.output_audio) == (details_out["text_tokens"],
                                                         details_out["audio_tokens"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_usage_sums_every_response_as_the_server_reported_it(protocol: str) -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test", protocol=protocol,
                                                  session=TEXT_ONLY, prices=PRICES) as client:
        recorder = Recorder(client)
        for text in ("Hi.", "Tell me a long story about a lighthouse keeper and the sea."):
            await client.send_user_message_content(text)
            await client.create_response()
            await client.wait_for_response_done(5)
        await client.create_response(conversation="none", instructions="Say hi.")
        await until(lambda: len(recorder.wire("server", "response.done")) == 3
                    and len(recorder.wire("server", "rate_limits.updated")) == 3)
        reported = wire_usages(recorder)
        # Every response is counted once, in-conversation and out-of-band alike.
        assert list(client.usage.responses) == list(reported)
        for response_id, usage in reported.items():
            assert_matches_wire(client.usage.responses[response_id], usage)
        total = client.usage.total
        assert total == sum(client.usage.responses.values(), Tokens())
        assert total.total == sum(u["total_tokens"] for u in reported.values())
        # The simulator's token budget went down by exactly what it billed.
        (tokens_limit,) = [limit for limit in client.rate_limits if limit.name == "tokens"]
        assert tokens_limit.remaining == tokens_limit.limit - total.total
        latest = recorder.wire("server", "rate_limits.updated")[-1]["rate_limits"]
        assert [vars(limit) for limit in client.rate_limits] == [
            {**entry, "reset_seconds": float(entry["reset_seconds"])} for entry in latest]
        # The cost, by hand: uncached input, cached input and output at their prices.
        expected = sum(
            ((u["input_token_details"]["text_tokens"]
              - u["input_token_details"]["cached_tokens_details"]["text_tokens"]) * 4.0
             + u["input_token_details"]["cached_tokens_details"]["text_tokens"] * 0.4
             + u["output_token_details"]["text_tokens"] * 16.0) / 1e6
            for u in reported.values())
        assert client.usage.cost == pytest.approx(expected, rel=1e-12)
        assert sum(client.usage.response_cost(r) for r in reported) == pytest.approx(expected)


async def test_the_simulator_bills_text_by_its_length_and_caches_the_prefix() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        replies = []
        for text in ("Hi.", "Tell me a long story about a lighthouse keeper and the sea."):
            await client.send_user_message_content(text)
            replies.append(await client.create_response())
            await client.wait_for_response_done(5)
        first, second = (client.usage.responses[r] for r in replies)
        for response_id, tokens in zip(replies, (first, second), strict=True):
            (reply,) = [i for i in client.conversation.items if i.response_id == response_id]
            assert tokens.output_text == math.ceil(len(reply.text) / 4) > 0
            assert tokens.output_audio == 0
        # The second response reads the first one's context again, and more.
        assert second.input_text > first.input_text > 0
        assert second.cached_text == first.input_text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_audio_tokens_grow_with_the_audio_heard_and_spoken(protocol: str) -> None:
    session = {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                                      "silence_duration_ms": 300}}}}
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", protocol=protocol, session=session) as client:
        recorder = Recorder(client)
        for speech_ms in (800, 1600):
            await stream(client, speech_then_silence(speech_ms, 700))
            count = len(client.usage.responses) + 1
            await until(lambda: len(client.usage.responses) == count)  # noqa: B023
        first, second = client.usage.responses.values()
        assert second.input_audio > first.input_audio > 0
        assert second.cached_audio == first.input_audio
        for response_id, tokens in client.usage.responses.items():
            (reply,) = [i for i in client.conversation.items if i.response_id == response_id]
            # 50 ms of generated audio a token (the client holds all of it: nothing played).
            assert tokens.output_audio == math.ceil(reply.audio.shape[0] / 24000 * 1000 / 50)
            # The model writes the spoken words as text too (protocol.md §5's live example
            # bills text tokens in an audio reply): 4 characters of transcript a token.
            assert tokens.output_text == math.ceil(len(reply.transcript) / 4) > 0
        assert recorder.errors() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_transcriptions_are_counted_apart_from_responses(protocol: str) -> None:
    session = {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"},
                                   "turn_detection": {"type": "server_vad",
                                                      "silence_duration_ms": 300}}}}
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test", protocol=protocol,
                                                  intent="transcription", session=session,
                                                  prices=PRICES) as client:
        recorder = Recorder(client)
        await stream(client, speech_then_silence(800, 700))
        await until(lambda: client.transcripts and client.transcripts[-1].final)
        await client.update_session(audio={"input": {"transcription": {"model": "whisper-1"}}})
        await stream(client, speech_then_silence(1200, 700))
        await until(lambda: len(client.transcripts) == 2 and client.transcripts[-1].final)
        tokens, duration = (u["usage"] for u in recorder.wire(
            "server", "conversation.item.input_audio_transcription.completed"))
        assert (tokens["type"], duration["type"]) == ("tokens", "duration")
        transcription = client.usage.transcription
        assert transcription.input == tokens["input_tokens"] > 0
        assert transcription.input_audio == tokens["input_token_details"]["audio_tokens"]
        assert transcription.output == tokens["output_tokens"] > 0
        assert client.usage.transcription_seconds == duration["seconds"] > 0
        # Not a response: neither in the responses' total nor in their cost.
        assert client.usage.total == Tokens() and client.usage.cost == 0


# ---- the parts on their own ----


def test_tokens_from_usage_takes_the_ga_and_beta_shapes_and_survives_garbage() -> None:
    ga = {"total_tokens": 253, "input_tokens": 132, "output_tokens": 121,
          "input_token_details": {"text_tokens": 119, "audio_tokens": 13, "image_tokens": 0,
                                  "cached_tokens": 64, "cached_tokens_details": {
                                      "text_tokens": 64, "audio_tokens": 0, "image_tokens": 0}},
          "output_token_details": {"text_tokens": 30, "audio_tokens": 91}}
    beta = {"total_tokens": 1289, "input_tokens": 984, "output_tokens": 305,
            "input_token_details": {"text_tokens": 984, "audio_tokens": 0, "cached_tokens": 960,
                                    "cached_tokens_details": {"text_tokens": 960,
                                                              "audio_tokens": 0}},
            "output_token_details": {"text_tokens": 61, "audio_tokens": 244}}
    for usage in (ga, beta):  # protocol.md §5 and §7.3's own examples
        assert_matches_wire(Tokens.from_usage(usage), usage)
    for garbage in (None, "x", [], {"input_token_details": {"text_tokens": -3}},
                    {"input_token_details": {"text_tokens": True, "audio_tokens": "9"}}):
        assert Tokens.from_usage(garbage) == Tokens()


def test_usage_counts_a_response_once_and_ignores_malformed_ones() -> None:
    usage = Usage()
    done = {"id": "resp_1", "usage": {"input_token_details": {"text_tokens": 10},
                                      "output_token_details": {"audio_tokens": 5}}}
    usage.add_response(done)
    usage.add_response(done)
    usage.add_response({"usage": {}})  # no id
    usage.add_response("garbage")  # type: ignore[arg-type]
    assert list(usage.responses) == ["resp_1"]
    assert usage.total == Tokens(input_text=10, output_audio=5)
    assert usage.cost is None and usage.response_cost("resp_1") is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True, None])
def test_prices_refuse_what_is_not_a_price(bad: Any) -> None:
    with pytest.raises(ValueError, match="Prices.output_audio must be a finite number"):
        Prices(input_text=1, input_audio=1, cached_text=1, cached_audio=1, output_text=1,
               output_audio=bad)


def test_a_price_table_of_the_wrong_type_is_refused_by_the_client() -> None:
    with pytest.raises(TypeError, match="prices must be a realtalk.usage.Prices"):
        RealtimeClient("ws://127.0.0.1:9/v1/realtime",
                       prices={"input_text": 1})  # type: ignore[arg-type]


def test_rate_limits_skip_malformed_entries() -> None:
    parsed = RateLimit.parse([{"name": "tokens", "limit": 100, "remaining": 40,
                               "reset_seconds": 1.5}, {"name": "requests"}, "x",
                              {"name": "tokens", "limit": True, "remaining": 1,
                               "reset_seconds": 0}])
    assert parsed == [RateLimit("tokens", 100, 40, 1.5)]
    assert RateLimit.parse(None) == []


# ---- the command line ----

SCRIPT = Path(sys.executable).with_name("realtalk")
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}


def test_talk_prints_the_tokens_the_server_billed() -> None:
    logged = subprocess.run([str(SCRIPT), "talk", "Count to three.", "--json"],
                            capture_output=True, text=True, timeout=60, env=ENVIRONMENT)
    assert logged.returncode == 0, logged.stderr
    records = [json.loads(line) for line in logged.stdout.splitlines()]
    (done,) = [r["event"] for r in records if r["event"]["type"] == "response.done"]
    usage = done["response"]["usage"]
    table = {"input_text": 4.0, "input_audio": 32.0, "cached_text": 0.4, "cached_audio": 0.4,
             "output_text": 16.0, "output_audio": 64.0}
    result = subprocess.run([str(SCRIPT), "talk", "Count to three.", "--prices",
                             json.dumps(table)], capture_output=True, text=True, timeout=60,
                            env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[1].strip(): line.strip().split("  ")[-1].strip()
            for line in result.stdout.splitlines() if line.startswith("  ")}
    # The simulator is deterministic: the same turn bills the same tokens.
    assert rows["tokens in / out"] == f"{usage['input_tokens']} / {usage['output_tokens']}"
    assert rows["tokens cached / audio out"] == (
        f"{usage['input_token_details']['cached_tokens']} / "
        f"{usage['output_token_details']['audio_tokens']}")
    details_in, details_out = usage["input_token_details"], usage["output_token_details"]
    cached = details_in["cached_tokens_details"]
    dollars = ((details_in["text_tokens"] - cached["text_tokens"]) * 4.0
               + (details_in["audio_tokens"] - cached["audio_tokens"]) * 32.0
               + cached["text_tokens"] * 0.4 + cached["audio_tokens"] * 0.4
               + details_out["text_tokens"] * 16.0 + details_out["audio_tokens"] * 64.0) / 1e6
    assert rows["cost"] == f"${dollars:.6f}"
    (limits,) = [r["event"]["rate_limits"] for r in records
                 if r["event"]["type"] == "rate_limits.updated"]
    (tokens,) = [limit for limit in limits if limit["name"] == "tokens"]
    assert tokens["remaining"] == tokens["limit"] - usage["total_tokens"]
    assert rows["rate limit (tokens)"] == f"{tokens['remaining']} of {tokens['limit']} left"


@pytest.mark.parametrize(("prices", "expected"), [
    ('{"input_text": 4}', "the price table lacks input_audio"),
    ('{"input_text": 1, "input_audio": 1, "cached_text": 1, "cached_audio": 1, '
     '"output_text": 1, "output_audio": -2}', "Prices.output_audio must be a finite number"),
    ('{"input_txt": 1}', "unknown price categories ['input_txt']"),
    ("{not json", "--prices: Expecting property name"),
    ("missing-prices.json", "--prices missing-prices.json: No such file"),
])
def test_talk_refuses_a_bad_price_table_in_one_line(prices: str, expected: str) -> None:
    result = subprocess.run([str(SCRIPT), "talk", "hi", "--prices", prices],
                            capture_output=True, text=True, timeout=60, env=ENVIRONMENT)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
