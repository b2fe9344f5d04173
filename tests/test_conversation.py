"""The conversation cache against the protocol's event sequences (protocol.md §9) and real
captures (tests/data, see /work/shared/replays/README.md for their provenance)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.conversation import Conversation

DATA = Path(__file__).parent / "data"

# The beta -> GA renames of protocol.md §3.1 that these captures need.
BETA_TO_GA = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}


def load(name: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]
    for event in events:
        event["type"] = BETA_TO_GA.get(event["type"], event["type"])
    return events


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


def user_text(item_id: str, previous: str | None, text: str) -> list[dict[str, Any]]:
    item = {"id": item_id, "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_text", "text": text}]}
    return [
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": item},
    ]


def assistant_turn(
    item_id: str, previous: str | None, response_id: str, deltas: list[str]
) -> list[dict[str, Any]]:
    """A GA text turn (protocol.md §9, steps 3-8)."""
    empty = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant",
             "content": []}
    done = dict(empty, status="completed",
                content=[{"type": "output_text", "text": "".join(deltas)}])
    ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    return [
        {"type": "response.created", "response": {"id": response_id, "conversation_id": "conv_1",
                                                  "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
         "item": empty},
        {"type": "conversation.item.added", "previous_item_id": previous, "item": empty},
        {"type": "response.content_part.added", **ids, "part": {"type": "text", "text": ""}},
        *({"type": "response.output_text.delta", **ids, "delta": d} for d in deltas),
        {"type": "response.output_text.done", **ids, "text": "".join(deltas)},
        {"type": "response.content_part.done", **ids,
         "part": {"type": "text", "text": "".join(deltas)}},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": done},
        {"type": "response.output_item.done", "response_id": response_id, "output_index": 0,
         "item": done},
        {"type": "response.done", "response": {"id": response_id, "status": "completed"}},
    ]


def apply_all(conversation: Conversation, events: list[dict[str, Any]]) -> list[Any]:
    changes = []
    for event in events:
        changes.extend(conversation.apply(event))
    return changes


def test_ga_text_turn_builds_both_items_in_order() -> None:
    conversation = Conversation()
    changes = apply_all(
        conversation,
        user_text("item_u", None, "hi") + assistant_turn("item_a", "item_u", "resp_1",
                                                         ["Hel", "lo ", "there"]),
    )
    assert [i.id for i in conversation] == ["item_u", "item_a"]
    user, assistant = conversation.items
    assert (user.role, user.text, user.status) == ("user", "hi", "completed")
    assert (assistant.role, assistant.text, assistant.status) == (
        "assistant", "Hello there", "completed")
    assert assistant.response_id == "resp_1"
    # Each item is appended once and completed once, whatever the number of events saying so.
    assert [c.item.id for c in changes if c.appended] == ["item_u", "item_a"]
    assert [c.item.id for c in changes if c.completed] == ["item_u", "item_a"]
    text_deltas = [c.delta["text"] for c in changes if c.delta and "text" in c.delta]
    assert text_deltas == ["Hel", "lo ", "there"]


def test_real_beta_capture_text_matches_its_done_event() -> None:
    events = load("real_beta_text_response.liusida.jsonl")
    conversation = Conversation()
    apply_all(conversation, events)
    done = next(e for e in events if e["type"] == "response.output_text.done")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == done["text"]
    (item,) = conversation.items
    assert item.id == done["item_id"]
    assert item.text == done["text"]
    assert item.status == "completed"


def test_items_follow_previous_item_id_not_arrival() -> None:
    conversation = Conversation()
    # c names b as predecessor before b exists; b names a; a is the root.
    apply_all(conversation, user_text("c", "b", "third"))
    apply_all(conversation, user_text("a", None, "first"))
    apply_all(conversation, user_text("b", "a", "second"))
    assert [i.id for i in conversation] == ["a", "b", "c"]
    # An item inserted after "a" goes between a and b, as the server would put it.
    apply_all(conversation, user_text("x", "a", "inserted"))
    assert [i.id for i in conversation] == ["a", "x", "b", "c"]


def test_output_item_announced_before_its_conversation_event_moves_into_place() -> None:
    conversation = Conversation()
    apply_all(conversation, user_text("u1", None, "one") + user_text("u2", "u1", "two"))
    # output_item.added carries no previous_item_id: provisional place at the end...
    conversation.apply({"type": "response.output_item.added", "response_id": "r",
                        "output_index": 0, "item": {"id": "a1", "type": "message",
                                                    "role": "assistant", "content": []}})
    # ...until conversation.item.added says it follows u1.
    conversation.apply({"type": "conversation.item.added", "previous_item_id": "u1",
                        "item": {"id": "a1", "type": "message", "role": "assistant"}})
    assert [i.id for i in conversation] == ["u1", "a1", "u2"]


def test_input_transcripts_attributed_by_item_id_even_before_the_item() -> None:
    conversation = Conversation()
    apply_all(conversation, user_text("u1", None, "typed"))
    audio_item = {"id": "u2", "type": "message", "status": "completed", "role": "user",
                  "content": [{"type": "input_audio", "transcript": None}]}
    # The transcription of u2 starts streaming before u2 itself is announced, interleaved
    # with a failure for another item that is announced later still.
    early = [
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u2",
         "content_index": 0, "delta": "How "},
        {"type": "conversation.item.input_audio_transcription.failed", "item_id": "u3",
         "content_index": 0, "error": {"type": "transcription_error",
                                       "code": "audio_unintelligible", "message": "no"}},
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u2",
         "content_index": 0, "delta": "are"},
    ]
    assert apply_all(conversation, early) == []
    assert conversation.parked_events == 3
    changes = conversation.apply({"type": "conversation.item.added", "previous_item_id": "u1",
                                  "item": audio_item})
    assert [c.delta for c in changes[1:]] == [{"transcript": "How "}, {"transcript": "are"}]
    assert conversation.get("u2").transcript == "How are"
    conversation.apply({"type": "conversation.item.input_audio_transcription.completed",
                        "item_id": "u2", "content_index": 0, "transcript": "How are you?"})
    assert conversation.get("u2").transcript == "How are you?"
    assert conversation.get("u2").content[0]["transcript"] == "How are you?"
    failed = apply_all(conversation, user_text("u3", "u2", ""))
    failure = [c for c in failed if c.delta and "transcription_error" in c.delta]
    assert len(failure) == 1 and failure[0].item.id == "u3"
    assert conversation.get("u3").transcription_error["code"] == "audio_unintelligible"
    assert conversation.get("u2").transcription_error is None
    assert conversation.parked_events == 0


def test_overlapping_audio_items_are_kept_apart_and_parked_until_announced() -> None:
    events = load("synthetic_ga_multi_item_overlapping_audio.pipecat.jsonl")
    conversation = Conversation()
    apply_all(conversation, events)
    assert len(conversation) == 0 and conversation.parked_events == 4
    expected: dict[str, list[np.ndarray]] = {"item_A": [], "item_B": []}
    for event in events:
        if event["type"] == "response.output_audio.delta":
            raw = base64.b64decode(event["delta"])
            expected[event["item_id"]].append(np.frombuffer(raw, dtype="<i2"))
    for item_id, previous in (("item_A", None), ("item_B", "item_A")):
        conversation.apply({"type": "conversation.item.added", "previous_item_id": previous,
                            "item": {"id": item_id, "type": "message", "role": "assistant",
                                     "content": []}})
    for item_id, chunks in expected.items():
        item = conversation.get(item_id)
        np.testing.assert_array_equal(item.audio, np.concatenate(chunks))
        assert item.audio_samples_received == sum(len(c) for c in chunks)
        assert conversation.audio_ms_received(item_id) == item.audio_samples_received // 24


def test_audio_chunks_are_stored_without_copies() -> None:
    conversation = Conversation()
    apply_all(conversation, assistant_turn("a", None, "r", []))
    chunk = np.arange(480, dtype=np.int16)
    conversation.append_audio("a", chunk)
    stored = conversation.get("a").audio_chunks
    assert len(stored) == 1 and stored[0] is chunk


def test_audio_cap_drops_oldest_and_counts() -> None:
    conversation = Conversation(max_audio_samples=1000)
    apply_all(conversation, user_text("a", None, "") + user_text("b", "a", ""))
    rng = np.random.default_rng(1)
    chunks = [rng.integers(-3000, 3000, 300, dtype=np.int16) for _ in range(6)]
    for index, chunk in enumerate(chunks):
        conversation.append_audio("a" if index < 3 else "b", chunk)
    assert conversation.audio_samples_held <= 1000
    assert conversation.audio_samples_dropped == 900
    a, b = conversation.get("a"), conversation.get("b")
    assert (a.audio_samples_dropped, b.audio_samples_dropped) == (900, 0)
    assert len(a.audio) == 0
    np.testing.assert_array_equal(b.audio, np.concatenate(chunks[3:]))
    # The server still holds what the cache dropped: the clock keeps counting it.
    assert a.audio_samples_received == 900


def test_base64_audio_deltas_decode_with_the_session_decoder() -> None:
    conversation = Conversation()
    apply_all(conversation, assistant_turn("a", None, "r", []))
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    conversation.apply({"type": "response.output_audio.delta", "response_id": "r",
                        "item_id": "a", "output_index": 0, "content_index": 0,
                        "delta": b64(samples)})
    np.testing.assert_array_equal(conversation.get("a").audio, samples)
    with pytest.raises(ValueError, match="odd byte count"):
        conversation.apply({"type": "response.output_audio.delta", "item_id": "a",
                            "delta": base64.b64encode(b"abc").decode()})


def test_truncated_item_keeps_only_the_heard_audio_and_loses_its_transcript() -> None:
    conversation = Conversation(audio_rate=8000)
    apply_all(conversation, assistant_turn("a", None, "r", []))
    conversation.apply({"type": "response.output_audio_transcript.delta", "item_id": "a",
                        "delta": "one two three four"})
    samples = np.arange(8000, dtype=np.int16)  # one second at 8 kHz (a G.711 session)
    for chunk in np.split(samples, 10):
        conversation.append_audio("a", chunk)
    conversation.cut_transcript("a", 500)
    assert conversation.get("a").transcript == "one two t"
    conversation.apply({"type": "conversation.item.truncated", "item_id": "a",
                        "content_index": 0, "audio_end_ms": 250})
    item = conversation.get("a")
    np.testing.assert_array_equal(item.audio, samples[:2000])
    assert item.truncated_ms == 250 and item.transcript == ""
    assert conversation.audio_samples_held == 2000


def test_function_call_arguments_stream_into_the_item() -> None:
    conversation = Conversation()
    call = {"id": "fc", "type": "function_call", "status": "in_progress", "call_id": "call_1",
            "name": "get_weather", "arguments": ""}
    conversation.apply({"type": "response.output_item.added", "response_id": "r",
                        "output_index": 0, "item": call})
    for part in ('{"city":', ' "Paris"}'):
        conversation.apply({"type": "response.function_call_arguments.delta", "item_id": "fc",
                            "call_id": "call_1", "delta": part})
    assert conversation.get("fc").arguments == '{"city": "Paris"}'
    conversation.apply({"type": "response.function_call_arguments.done", "item_id": "fc",
                        "call_id": "call_1", "name": "get_weather",
                        "arguments": '{"city":"Paris"}'})
    changes = conversation.apply({"type": "response.output_item.done", "response_id": "r",
                                  "output_index": 0,
                                  "item": dict(call, status="completed",
                                               arguments='{"city":"Paris"}')})
    item = conversation.get("fc")
    assert (item.type, item.name, item.call_id) == ("function_call", "get_weather", "call_1")
    assert json.loads(item.arguments) == {"city": "Paris"}
    assert any(c.completed for c in changes)


def test_out_of_band_responses_stay_out_of_the_conversation() -> None:
    conversation = Conversation()
    conversation.apply({"type": "response.created",
                        "response": {"id": "resp_oob", "conversation_id": None}})
    conversation.apply({"type": "response.output_item.added", "response_id": "resp_oob",
                        "output_index": 0, "item": {"id": "x", "type": "message",
                                                    "role": "assistant", "content": []}})
    conversation.apply({"type": "response.output_text.delta", "response_id": "resp_oob",
                        "item_id": "x", "delta": "summary"})
    assert len(conversation) == 0 and conversation.parked_events == 0


def test_deleted_items_leave_and_release_their_audio() -> None:
    conversation = Conversation()
    apply_all(conversation, user_text("a", None, "") + user_text("b", "a", ""))
    conversation.append_audio("a", np.zeros(100, dtype=np.int16))
    conversation.apply({"type": "conversation.item.deleted", "item_id": "a"})
    assert [i.id for i in conversation] == ["b"] and conversation.audio_samples_held == 0


def test_replayed_history_aliases_to_the_cached_items() -> None:
    conversation = Conversation()
    apply_all(conversation, user_text("u1", None, "hello") + assistant_turn(
        "a1", "u1", "r1", ["hi"]))
    # Reconnected: the new session knows the history under replay ids and a fresh root.
    conversation.start_new_session()
    conversation.alias("replay_1", "u1")
    conversation.alias("replay_2", "a1")
    apply_all(conversation, user_text("replay_1", None, "hello"))
    apply_all(conversation, user_text("u2", "replay_2", "again"))
    assert [i.id for i in conversation] == ["u1", "a1", "u2"]
    assert conversation.get("replay_1") is conversation.get("u1")
    assert conversation.get("u1").text == "hello"


def test_a_new_session_without_replay_continues_after_the_old_items() -> None:
    conversation = Conversation()
    apply_all(conversation, user_text("u1", None, "hello") + user_text("u2", "u1", "more"))
    conversation.start_new_session()
    apply_all(conversation, user_text("n1", None, "first of the new session"))
    apply_all(conversation, user_text("n2", "n1", "second"))
    assert [i.id for i in conversation] == ["u1", "u2", "n1", "n2"]


def test_parked_events_are_bounded_and_counted() -> None:
    conversation = Conversation(max_parked=3)
    for index in range(5):
        conversation.apply({"type": "response.output_text.delta", "item_id": f"i{index}",
                            "delta": "x"})
    assert conversation.parked_events == 3 and conversation.events_dropped == 2


def test_item_cap_drops_oldest_items() -> None:
    conversation = Conversation(max_items=2)
    apply_all(conversation, user_text("a", None, "") + user_text("b", "a", "")
              + user_text("c", "b", ""))
    assert [i.id for i in conversation] == ["b", "c"] and conversation.items_dropped == 1


def test_bad_events_raise_clear_errors() -> None:
    conversation = Conversation()
    with pytest.raises(ValueError, match="type"):
        conversation.apply({"item_id": "x"})
    with pytest.raises(ValueError, match="item"):
        conversation.apply({"type": "conversation.item.added", "item": {"type": "message"}})
    with pytest.raises(TypeError, match="cannot read"):
        conversation.apply(42)
    with pytest.raises(ValueError, match="int16"):
        conversation.append_audio("a", np.zeros(4, dtype=np.float32))  # type: ignore[arg-type]
    # Unknown event types are ignored, as a client must ignore what it does not know.
    assert conversation.apply({"type": "rate_limits.updated", "rate_limits": []}) == []


@given(st.permutations(list(range(8))))
def test_any_arrival_order_gives_the_chain_order(arrival: list[int]) -> None:
    conversation = Conversation()
    for index in arrival:
        previous = None if index == 0 else f"i{index - 1}"
        apply_all(conversation, user_text(f"i{index}", previous, str(index)))
    assert [i.id for i in conversation] == [f"i{k}" for k in range(8)]


def test_items_carry_the_rate_their_audio_is_kept_at() -> None:
    conversation = Conversation(audio_rate=16000)
    conversation.apply({"type": "conversation.item.added", "previous_item_id": None,
                        "item": {"id": "item_a", "type": "message", "role": "assistant"}})
    item = conversation.items[0]
    assert item.sample_rate == 16000
    conversation.append_audio("item_a", np.zeros(8000, dtype=np.int16))
    assert len(item.audio) / item.sample_rate == 0.5
    assert conversation.audio_ms_received("item_a") == 500


@pytest.mark.parametrize("playback_rate", [16000, 24000, 48000])
async def test_readme_duration_arithmetic_holds_for_any_playback_rate(playback_rate: int) -> None:
    """The README's `len(reply.audio) / reply.sample_rate` against the wire: the base64 audio
    of the deltas the server sent (24 kHz pcm16, protocol.md), decoded with the stdlib."""
    from realtalk import RealtimeClient
    from realtalk.simulator import Simulator

    wire_samples = 0

    def count_wire_audio(event: Any) -> None:
        nonlocal wire_samples
        data = event["event"]
        if event["source"] == "server" and data["type"] == "response.output_audio.delta":
            wire_samples += len(base64.b64decode(data["delta"])) // 2

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  playback_rate=playback_rate) as client:
        client.on("realtime.event", count_wire_audio)
        await client.send_user_message_content("What is the capital of France?")
        await client.create_response()
        await client.wait_for_response_done(timeout=30)
        reply = client.conversation.items[-1]
    assert reply.sample_rate == playback_rate
    assert wire_samples > 24000 // 2
    heard_s = len(reply.audio) / reply.sample_rate
    # The resampler holds back its delay (a few ms at most) until a flush.
    assert abs(heard_s - wire_samples / 24000) < 0.005
