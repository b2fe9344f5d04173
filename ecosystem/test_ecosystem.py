"""The Python voice ecosystem against `realtalk simulate`, unpatched (issue 18).

Each framework runs in its own cached virtual environment (ecosystem/envs.py) and is pointed at
a `python -m realtalk simulate` process of the realtalk under test by its base URL only. A
scenario script (ecosystem/scenarios/) drives the framework and reports every server event the
framework received; this module judges the report against the protocol
(/work/shared/protocol.md), not against the simulator's own code:

- every event validated against the framework's own types (the script checked; no rejections),
- no `error` event, except the one the live API sends for the scenario (pipecat's unknown id),
- the scenario's facts, read from the raw events: a completed echo reply (text), VAD's
  speech_started/stopped/committed and a reply measuring the espeak-ng utterance (audio), a tool
  call whose output the framework sent and a follow-up that reports it (tool), a
  `conversation.item.truncated` of the streaming reply at the played length (barge-in through
  the framework's interrupt), the same when the user talks over the reply (vad_barge_in: the
  server's VAD cancels the reply, the framework truncates it), and pipecat's retrieve of a known
  and an unknown item id.

Run with `make test-ecosystem` (the environments are built on first use; later runs reuse them).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envs  # noqa: E402 - the folder is not a package

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
RATE = 24000
SCENARIO_TIMEOUT_S = 60

FRAMEWORKS: dict[str, tuple[str, list[str]]] = {
    "openai": ("openai_client.py", [f"{version}_{name}" for version in ("ga", "beta")
                                    for name in ("text", "audio", "tool", "barge_in")]),
    "openai_agents": ("openai_agents.py", ["text", "audio", "tool", "barge_in", "vad_barge_in"]),
    "pipecat": ("pipecat_service.py", ["text", "audio", "tool", "barge_in", "vad_barge_in",
                                       "retrieve"]),
    "livekit": ("livekit_agents.py", ["text", "audio", "tool", "barge_in", "vad_barge_in"]),
}
CASES = [(framework, scenario) for framework, (_, scenarios) in FRAMEWORKS.items()
         for scenario in scenarios]
RESULTS: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A spoken question made by espeak-ng, as pcm16 mono 24 kHz, and its length in seconds."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("speech")
    wav_path = folder / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(wav_path), "What is the weather like in Paris today"],
                   check=True, capture_output=True)
    with wave.open(str(wav_path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    resampled = soxr.resample(samples.astype(np.float32), rate, RATE)
    pcm_path = folder / "question.pcm"
    pcm_path.write_bytes(np.clip(np.round(resampled), -32768, 32767).astype("<i2").tobytes())
    return pcm_path, len(samples) / rate


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m realtalk simulate` from the realtalk under test, at real-time pace."""
    log_path = tmp_path_factory.mktemp("simulator") / "simulate.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "realtalk", "simulate", "--port", "0", "--pace", "realtime"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            found = re.search(r"listening on (ws://[^/\s]+)", log_path.read_text())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"realtalk simulate did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("framework", "scenario"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_framework_scenario(framework: str, scenario: str, simulator: str,
                            speech: tuple[Path, float], tmp_path: Path) -> None:
    python = envs.ensure_env(framework)  # built by `make test-ecosystem` before pytest
    script, _ = FRAMEWORKS[framework]
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    run = subprocess.run(
        [str(python), str(SCENARIO_DIR / script), "--url", simulator, "--scenario", scenario,
         "--speech", str(speech[0]), "--report", str(report_path)],
        capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S)
    seconds = time.monotonic() - started
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    RESULTS.append({"framework": framework, "scenario": scenario, "seconds": seconds,
                    "versions": report.get("versions", {}),
                    "warnings": report.get("outcome", {}).get("warnings", [])})
    assert run.returncode == 0, (
        f"{framework} {scenario} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    events: list[dict[str, Any]] = report["events"]
    assert report["invalid"] == [], "events the framework's own types reject"
    assert events and events[0]["type"] == "session.created"
    kind = scenario.split("_", 1)[1] if framework == "openai" else scenario
    assert unexpected_errors(kind, events) == []
    assert report["outcome"].get("session_errors", []) == []
    CHECKS[kind](events, report["outcome"], speech[1])
    RESULTS[-1]["checked"] = True


# ---- what each scenario must show, read from the raw server events ----------------------------

EXPECTED_ERROR_CODES = {"retrieve": ["item_retrieve_invalid_item_id"]}


def unexpected_errors(kind: str, events: list[dict[str, Any]]) -> list[Any]:
    """Error events the live API would not have sent here, and expected ones that are missing.

    Besides the scenario's expected codes, one more is the live API's own answer: a
    response.cancel when no response is active gets `response_cancel_not_active`
    (protocol.md, response.cancel). livekit sends response.cancel on every interruption, also
    when its first cancel or the server's VAD (turn_detected) has already ended the response.
    """
    wanted = list(EXPECTED_ERROR_CODES.get(kind, []))
    unexpected: list[Any] = []
    for index, event in enumerate(events):
        if event["type"] != "error":
            continue
        code = event["error"].get("code")
        before = [e["type"] for e in events[:index]]
        idle = before.count("response.created") == before.count("response.done")
        if code in wanted:
            wanted.remove(code)
        elif not (code == "response_cancel_not_active" and idle):
            unexpected.append(event["error"])
    return unexpected + [f"missing error {code}" for code in wanted]


def responses_done(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["response"] for e in events if e["type"] == "response.done"]


def reply_text(response: dict[str, Any]) -> str:
    return " ".join(part.get("text") or part.get("transcript") or ""
                    for item in response["output"] if item["type"] == "message"
                    for part in item.get("content") or [])


def check_text(events: list[dict[str, Any]], outcome: dict[str, Any], _: float) -> None:
    (response,) = responses_done(events)
    assert response["status"] == "completed"
    # The default responder echoes the user's words (README, "The simulator").
    assert "hello from the ecosystem test" in reply_text(response)


def check_audio(events: list[dict[str, Any]], outcome: dict[str, Any], speech_s: float) -> None:
    types = [e["type"] for e in events]
    vad = [types.index(t) for t in ("input_audio_buffer.speech_started",
                                    "input_audio_buffer.speech_stopped",
                                    "input_audio_buffer.committed")]
    assert vad == sorted(vad), "VAD events out of order"
    started = events[vad[0]]
    stopped = events[vad[1]]
    assert started["item_id"] == stopped["item_id"] == events[vad[2]]["item_id"]
    # VAD's segment covers the utterance (protocol: start includes prefix padding, end the
    # silence tail), so it is at least as long as the speech and not wildly longer.
    segment_s = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert speech_s - 0.3 <= segment_s <= speech_s + 1.5
    responses = responses_done(events)
    assert responses and responses[-1]["status"] == "completed"
    heard = re.search(r"I heard ([\d.]+) s", reply_text(responses[-1]))
    assert heard and abs(float(heard.group(1)) - speech_s) < 0.5


def check_tool(events: list[dict[str, Any]], outcome: dict[str, Any], _: float) -> None:
    responses = responses_done(events)
    calls = [item for response in responses for item in response["output"]
             if item["type"] == "function_call"]
    assert [call["name"] for call in calls] == ["get_weather"]
    assert isinstance(json.loads(calls[0]["arguments"])["city"], str)
    # The framework sent the tool's output as an item (the server confirms each item it adds).
    outputs = [e["item"] for e in events
               if e["type"] in ("conversation.item.added", "conversation.item.created")
               and e["item"]["type"] == "function_call_output"]
    assert [o["call_id"] for o in outputs] == [calls[0]["call_id"]]
    follow_up = responses[-1]
    assert follow_up["status"] == "completed"
    assert "get_weather tool returned" in reply_text(follow_up)


def check_barge_in(events: list[dict[str, Any]], outcome: dict[str, Any], _: float) -> None:
    """The reply streaming when the framework interrupted is truncated once, inside the audio
    the server had sent for it. (A later reply may be truncated too when the session closes
    while it still plays, as livekit does: that is not the barge-in.)"""
    interrupted_at = outcome["interrupted_at"]
    audio_types = ("response.output_audio.delta", "response.audio.delta")
    before = [e for e in events[:interrupted_at] if e["type"] in audio_types]
    assert before, "the interrupt came before any reply audio"
    item_id = before[-1]["item_id"]
    # Still streaming: no response.done before the interrupt (livekit then cancels first and
    # truncates after; the others truncate the live item).
    assert not any(e["type"] == "response.done" for e in events[:interrupted_at])
    cuts = [index for index, e in enumerate(events)
            if e["type"] == "conversation.item.truncated" and e["item_id"] == item_id]
    assert len(cuts) == 1, "the streaming reply was not truncated exactly once"
    sent = [e for e in events[:cuts[0]] if e["type"] in audio_types and e["item_id"] == item_id]
    sent_ms = sum(len(base64.b64decode(e["delta"])) for e in sent) / 2 / RATE * 1000
    assert 0 < events[cuts[0]]["audio_end_ms"] <= sent_ms


def check_vad_barge_in(events: list[dict[str, Any]], outcome: dict[str, Any],
                       speech_s: float) -> None:
    """The user talked over the reply: the server's VAD cancelled it (protocol: status
    cancelled, reason turn_detected), the framework truncated it, the user's turn was answered."""
    check_barge_in(events, outcome, speech_s)
    first, *_, last = responses_done(events)
    assert first["status"] == "cancelled"
    assert first["status_details"]["reason"] == "turn_detected"
    assert last["status"] == "completed"
    heard = re.search(r"I heard ([\d.]+) s", reply_text(last))
    assert heard and abs(float(heard.group(1)) - speech_s) < 0.5


def check_retrieve(events: list[dict[str, Any]], outcome: dict[str, Any], _: float) -> None:
    retrieved = [e["item"]["id"] for e in events if e["type"] == "conversation.item.retrieved"]
    known = outcome["known_id"]
    assert retrieved == [known, known]
    assert outcome["known_result"] == outcome["known_again"] == known
    assert outcome["unknown_raised"], "the unknown id's retrieve did not fail in the framework"
    # The live API names the unknown id in its message (protocol.md, error codes).
    assert "item_not_in_this_conversation" in outcome["unknown_error"]


CHECKS = {"text": check_text, "audio": check_audio, "tool": check_tool,
          "barge_in": check_barge_in, "vad_barge_in": check_vad_barge_in,
          "retrieve": check_retrieve}
