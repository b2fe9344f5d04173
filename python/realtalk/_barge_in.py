"""Barge-in that knows what was heard (issue 22): where the cut goes and when to make it.

Three pieces, the first two pure (no I/O, no clock of their own; unit-tested as they are):

- ``PlaybackReports``: the positions a remote player reports (``report_playback``), monotonic
  per item; where automatic barge-in cuts when the client does not play the audio itself.
- ``BargeInPolicy`` and ``Decision``: the policy and its small state machine. On a speech
  start it says cut now (the default), or pause and decide: speech shorter than
  ``min_speech_ms``, or a turn whose transcript comes back empty, is a false interruption
  (resume, nothing truncated); otherwise the cut goes at the pause position.
- ``BargeIn``: the glue the client calls from its hook lines; it feeds the machine the
  server's (or the local VAD's) turn events and carries out its verdicts on the client: local
  ``PlaybackBuffer.pause``/``resume``, or the ``playback.pause``/``resume``/``flush``
  notifications for a remote player.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

if TYPE_CHECKING:
    from realtalk.client import RealtimeClient

__all__ = ["BargeInPolicy"]

# How many items' reported positions are kept (the oldest go first): a reply is a few items.
_REPORTED_ITEMS = 64
# A stop comes later than the silence duration after the speech: the detector's hangover
# (about 0.1 s for `Vad`) and, from a server, the network and a loop that runs late.
_STOP_MARGIN_S = 0.3

Action = Literal["cut", "pause", "resume"] | None


@dataclass(frozen=True, slots=True)
class BargeInPolicy:
    """How the client reacts when the user starts speaking over a reply.

    ``min_speech_ms``: speech shorter than this does not interrupt (0, the default, cuts at
    once, as before). ``pause_then_decide``: on speech start, pause playback (the local
    ``PlaybackBuffer``, or a ``playback.pause`` notification for a remote player) instead of
    flushing it, and decide afterwards. ``false_interruption_timeout_s``: how long a paused
    decision waits for the turn's transcript (with input transcription on); still undecided
    then, the interruption is real. Speech counts as long enough once no stop can still come
    for it (``min_speech_ms`` plus the detector's ``silence_duration_ms`` and 0.3 s of margin
    after its start), so no decision falls before that either. A false interruption (speech under
    ``min_speech_ms``, or a transcript that comes back empty while paused with input
    transcription on) resumes playback where it paused and truncates nothing; a real one
    truncates at the pause position and cancels the response.

    With server turn detection and ``interrupt_response: false`` the default policy leaves
    the decision to the app (a ``conversation.interrupted`` notification with
    ``"automatic": False``); any other policy makes the decision itself, and sends the cancel.
    With ``interrupt_response: true`` the server stops the reply at the speech start
    whatever the policy decides: a resumed reply ends with the audio already received."""

    min_speech_ms: int = 0
    pause_then_decide: bool = False
    false_interruption_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.min_speech_ms, int) or isinstance(self.min_speech_ms, bool) \
                or self.min_speech_ms < 0:
            raise ValueError(f"min_speech_ms must be a whole number of ms >= 0, "
                             f"got {self.min_speech_ms!r}")
        timeout = self.false_interruption_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not math.isfinite(timeout) or timeout * 1000 < self.min_speech_ms:
            raise ValueError(f"false_interruption_timeout_s must be a number of seconds at "
                             f"least min_speech_ms long, got {timeout!r}")

    @property
    def immediate(self) -> bool:
        """True when a speech start cuts at once (the behaviour without a policy)."""
        return self.min_speech_ms == 0 and not self.pause_then_decide


def check_position(item_id: Any, played_ms: Any) -> None:
    """ValueError unless ``item_id`` is None or a non-empty str and ``played_ms`` None or a
    finite number >= 0."""
    if item_id is not None and (not isinstance(item_id, str) or not item_id):
        raise ValueError(f"item_id must be a non-empty string, got {item_id!r}")
    if played_ms is not None and (isinstance(played_ms, bool) or not isinstance(
            played_ms, int | float) or not 0 <= played_ms < math.inf):
        raise ValueError(f"played_ms must be a finite number >= 0, got {played_ms!r}")


class PlaybackReports:
    """A remote player's progress, per item: ``report`` keeps the furthest position (a report
    going backwards is refused and counted in ``refused``, the position stays). One dict slot
    per item and two attributes, so it is cheap enough every 20 ms, and each step is one
    dict or attribute store, safe from any thread under the GIL."""

    __slots__ = ("_played_ms", "last_item_id", "last_content_index", "refused")

    def __init__(self) -> None:
        self._played_ms: dict[str, float] = {}
        self.last_item_id: str | None = None
        self.last_content_index = 0
        self.refused = 0

    def report(self, item_id: str, played_ms: float, content_index: int = 0) -> bool:
        """Record that ``played_ms`` of ``item_id`` have been heard; False if refused."""
        if item_id is None or played_ms is None:
            raise ValueError("a playback report needs an item_id and played_ms")
        check_position(item_id, played_ms)
        if isinstance(content_index, bool) or not isinstance(content_index, int) \
                or content_index < 0:
            raise ValueError(f"content_index must be an int >= 0, got {content_index!r}")
        known = self._played_ms.get(item_id)
        if known is not None and played_ms < known:
            self.refused += 1
            return False
        if known is None and len(self._played_ms) >= _REPORTED_ITEMS:
            self._played_ms.pop(next(iter(self._played_ms)), None)
        self._played_ms[item_id] = played_ms
        self.last_content_index = content_index
        self.last_item_id = item_id
        return True

    def played_ms(self, item_id: str) -> float:
        """The furthest position reported for ``item_id`` (0 if none)."""
        return self._played_ms.get(item_id, 0)


class Decision:
    """The barge-in state machine for one policy. Times are seconds on any one clock the
    caller keeps to (wall time for the server's events, the audio clock for a local VAD).
    Each input returns the action to take: ``"cut"`` (truncate at the pause position, cancel,
    flush), ``"pause"``, ``"resume"`` (a false interruption while paused) or None."""

    def __init__(self, policy: BargeInPolicy) -> None:
        self.policy = policy
        self.deciding = False
        self.paused = False
        self.false_interruptions = 0
        self._item_id: str | None = None
        self._started = 0.0
        self._long_enough = False
        self._await_transcript = False
        self._long_at = 0.0
        self._timeout_at = 0.0

    @property
    def deadline(self) -> float | None:
        """When ``tick`` next has something to decide, or None."""
        if not self.deciding:
            return None
        return self._timeout_at if self._long_enough else self._long_at

    def speech_started(self, now: float, item_id: str | None = None,
                       await_transcript: bool = False, stop_lag_s: float = 0.0) -> Action:
        """The user started speaking. ``await_transcript``: a transcript of the turn will
        come (input transcription is on), so a paused decision waits for it.
        ``stop_lag_s``: how late the detector reports a stop (its silence duration): only
        when no stop came by ``min_speech_ms`` plus that lag has the speech surely lasted
        ``min_speech_ms``."""
        if self.policy.immediate:
            return "cut"
        if self.deciding:
            return None  # one decision per interruption
        self.deciding = True
        self._item_id = item_id
        self._started = now
        self._long_enough = False
        self._long_at = now + self.policy.min_speech_ms / 1000 + max(0.0, stop_lag_s)
        self._timeout_at = max(now + self.policy.false_interruption_timeout_s, self._long_at)
        self._await_transcript = await_transcript and self.policy.pause_then_decide
        if self.policy.pause_then_decide:
            self.paused = True
            return "pause"
        return None

    def speech_stopped(self, now: float, speech_ms: float | None = None) -> Action:
        """The user stopped; ``speech_ms`` is how long they spoke (default: since the start)."""
        if not self.deciding:
            return None
        if speech_ms is None:
            speech_ms = (now - self._started) * 1000
        if speech_ms < self.policy.min_speech_ms:
            return self._false()
        self._long_enough = True
        return None if self._await_transcript else self._cut()

    def transcript(self, item_id: str | None, text: str) -> Action:
        """The turn's transcript arrived (an empty one says nobody spoke)."""
        if not self.deciding or (self._item_id is not None and item_id != self._item_id):
            return None
        return self._false() if not text.strip() else self._cut()

    def tick(self, now: float) -> Action:
        """Time passed: speech still going ``min_speech_ms`` (plus the stop lag) after it
        started is long enough; at the timeout, no transcript having said otherwise, the
        interruption is real."""
        if not self.deciding:
            return None
        if not self._long_enough and now >= self._long_at:
            self._long_enough = True
            if not self._await_transcript:
                return self._cut()
        if now >= self._timeout_at:
            return self._cut()  # long enough by now, and no transcript said otherwise
        return None

    def reset(self) -> None:
        """The reply was cut by other means (``interrupt()``): no decision is pending."""
        self.deciding = self.paused = False

    def _cut(self) -> Action:
        self.deciding = False
        self.paused = False
        return "cut"

    def _false(self) -> Action:
        self.deciding = False
        self.false_interruptions += 1
        was_paused, self.paused = self.paused, False
        return "resume" if was_paused else None


def resolve_cut(
    heard: tuple[str, int, int] | None,
    reports: PlaybackReports | None,
    item_id: str | None,
    played_ms: float | None,
) -> tuple[str, int, float] | None:
    """Where to truncate: (item_id, content_index, played_ms) or None. An explicit
    ``item_id``/``played_ms`` wins; otherwise the local buffer's ``heard`` position
    (``reports`` None) or the remote player's last report."""
    default: tuple[str, int, float] | None
    if reports is None:
        default = heard
    elif reports.last_item_id is None:
        default = None
    else:
        default = (reports.last_item_id, reports.last_content_index,
                   reports.played_ms(reports.last_item_id))
    if item_id is None and played_ms is None:
        return default
    if item_id is None:
        if default is None:
            return None
        item_id = default[0]
    content_index = default[1] if default is not None and default[0] == item_id else 0
    if played_ms is None:
        if default is not None and default[0] == item_id:
            played_ms = default[2]
        else:
            played_ms = reports.played_ms(item_id) if reports is not None else 0
    return item_id, content_index, played_ms


class BargeIn:
    """The client's barge-in: what its hook lines call."""

    def __init__(self, client: RealtimeClient, policy: BargeInPolicy | None,
                 local_playback: bool) -> None:
        if policy is not None and not isinstance(policy, BargeInPolicy):
            raise TypeError(f"barge_in must be a BargeInPolicy, got {type(policy).__name__}")
        self._client = client
        self.policy = policy or BargeInPolicy()
        self.decision = Decision(self.policy)
        self.reports = None if local_playback else PlaybackReports()
        self._audio_clock = False
        self._started_event: Mapping[str, Any] | None = None
        self._local_start: float | None = None

    def heard_any(self, item_id: str) -> bool:
        """True once the player (local or remote) has played some of ``item_id``."""
        if self.reports is None:
            return bool(self._client.playback.played(item_id) > 0)
        return self.reports.played_ms(item_id) > 0

    # ---- the turn events ----

    def on_speech_started(self, event: Mapping[str, Any]) -> None:
        """The server's ``input_audio_buffer.speech_started``."""
        client = self._client
        turn = client._turn_detection() or {}
        server_cancels = bool(turn.get("interrupt_response", True))
        if not server_cancels and self.policy.immediate:
            self._notify_undecided()
            return
        self._audio_clock = False
        self._started_event = event
        action = self.decision.speech_started(
            time.monotonic(), event.get("item_id"), await_transcript=self._transcribing(),
            stop_lag_s=_number(turn.get("silence_duration_ms")) / 1000 + _STOP_MARGIN_S)
        self._act(action, server_cancels)
        if self.decision.deciding and client._tg is not None:
            client._tg.start_soon(self._timer, server_cancels)

    def on_speech_stopped(self, event: Mapping[str, Any]) -> None:
        """The server's ``input_audio_buffer.speech_stopped``. The speech lasted from the
        start's ``audio_start_ms`` (which includes ``prefix_padding_ms`` before the onset) to
        this ``audio_end_ms`` (which includes ``silence_duration_ms`` after the speech)."""
        started, speech_ms = self._started_event, None
        start, end = (started or {}).get("audio_start_ms"), event.get("audio_end_ms")
        if isinstance(start, int | float) and isinstance(end, int | float):
            turn = self._client._turn_detection() or {}
            padding = _number(turn.get("prefix_padding_ms"))
            silence = _number(turn.get("silence_duration_ms"))
            speech_ms = max(0.0, float(end) - silence - float(start) - padding)
        self._act(self.decision.speech_stopped(time.monotonic(), speech_ms),
                  self._server_cancels())

    def on_transcript(self, event: Mapping[str, Any]) -> None:
        """``conversation.item.input_audio_transcription.completed``."""
        transcript = event.get("transcript")
        if isinstance(transcript, str):
            self._act(self.decision.transcript(event.get("item_id"), transcript),
                      self._server_cancels())

    def on_local_speech(self, kind: str, vad_event: Any, audio_ms: float) -> bool:
        """The local VAD's speech start or stop, found at ``audio_ms`` on the input audio
        clock. True when this stop ended a false interruption: the turn is not answered."""
        self._audio_clock = True
        now = audio_ms / 1000
        detector = self._client.local_vad
        if kind == "speech_started":
            self._local_start = _event_ms(vad_event, "audio_start_ms")
            lag_s = _number(getattr(detector, "silence_duration_ms", 0)) / 1000 + _STOP_MARGIN_S
            self._act(self.decision.speech_started(now, stop_lag_s=lag_s),
                      server_cancels=False)
            return False
        # A `Vad`'s events carry its own clock: the same speech length as the server's.
        start, end = self._local_start, _event_ms(vad_event, "audio_end_ms")
        speech_ms = None
        if start is not None and end is not None:
            padding = _number(getattr(detector, "prefix_padding_ms", 0))
            silence = _number(getattr(detector, "silence_duration_ms", 0))
            speech_ms = max(0.0, end - silence - start - padding)
        before = self.decision.false_interruptions
        self._act(self.decision.speech_stopped(now, speech_ms), server_cancels=False)
        return self.decision.false_interruptions > before

    def on_local_audio(self, audio_ms: float) -> None:
        """Input audio went out (local VAD): time passes on the audio clock."""
        if self.decision.deciding and self._audio_clock:
            self._act(self.decision.tick(audio_ms / 1000), server_cancels=False)

    def after_cut(self) -> None:
        """The reply was cut: no decision is pending, local playback is not held, and the
        remote player's next cut needs a report made after this one."""
        self.decision.reset()
        if self.reports is not None:
            self.reports.last_item_id = None
        if self._client.playback.paused:
            self._client.playback.resume()

    # ---- carrying out ----

    def _act(self, action: Action, server_cancels: bool) -> None:
        client = self._client
        if action == "cut":
            # The local half now: a deferred flush could take the next reply's audio with it.
            local = client._cut_playback()
            assert client._tg is not None
            client._tg.start_soon(functools.partial(client._send_cut, local,
                                                    server_cancels=server_cancels,
                                                    automatic=True))
        elif action in ("pause", "resume"):
            if self.reports is None:
                (client.playback.pause if action == "pause" else client.playback.resume)()
            else:
                client._emit(f"playback.{action}", self._heard())

    async def _timer(self, server_cancels: bool) -> None:
        while (deadline := self.decision.deadline) is not None and not self._audio_clock:
            await anyio.sleep(max(0.0, deadline - time.monotonic()))
            self._act(self.decision.tick(time.monotonic()), server_cancels)

    def _notify_undecided(self) -> None:
        """``interrupt_response: false``: nothing is cut, the app is told what would be."""
        self._client._emit("conversation.interrupted",
                           {**self._heard(), "automatic": False, "cut": False})

    def _heard(self) -> dict[str, Any]:
        client = self._client
        heard: tuple[str, int, float] | None
        if self.reports is None:
            current = client.playback.current
            heard = None if current is None else (
                current[0], current[1],
                client.playback.played(current[0]) * 1000 // client.playback.sample_rate)
        else:
            heard = resolve_cut(None, self.reports, None, None)
        if heard is None:
            return {"item_id": None, "content_index": 0, "audio_end_ms": 0}
        item_id, content_index, played_ms = heard
        end_ms = min(int(played_ms), client.conversation.audio_ms_received(item_id))
        return {"item_id": item_id, "content_index": content_index, "audio_end_ms": end_ms}

    def _server_cancels(self) -> bool:
        return bool((self._client._turn_detection() or {}).get("interrupt_response", True))

    def _transcribing(self) -> bool:
        source = self._client._server_session or self._client._config
        return bool(((source.get("audio") or {}).get("input") or {}).get("transcription"))


def _event_ms(event: Any, name: str) -> float | None:
    """A VAD event's ``name`` field (attribute or mapping key) if it is a number."""
    value = event.get(name) if isinstance(event, Mapping) else getattr(event, name, None)
    return _number(value) if isinstance(value, int | float) else None


def _number(value: Any) -> float:
    """A config field that should be a number of ms, else 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0
