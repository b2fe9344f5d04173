"""User message content parts (realtalk._content), checked against base64/numpy oracles."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

import numpy as np
import pytest

from realtalk import audio
from realtalk._content import encode_clip, mime_for, user_content_part

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def part(value: dict[str, object], fmt: str = "pcm16") -> dict[str, object]:
    return user_content_part(value, input_rate=24000, input_format=fmt)


def test_text_and_raw_audio_go_as_they_are() -> None:
    assert part({"type": "input_text", "text": "hi"}) == {"type": "input_text", "text": "hi"}
    raw = bytes(range(10))
    encoded = part({"type": "input_audio", "audio": raw})
    assert base64.b64decode(encoded["audio"]) == raw  # type: ignore[arg-type]
    assert part({"type": "input_audio", "audio": "AAAA"})["audio"] == "AAAA"


def test_a_clip_at_the_wire_rate_is_pcm16_of_its_samples() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0], dtype=np.float32)
    pcm = np.frombuffer(base64.b64decode(encode_clip(samples, 24000, "pcm16")), dtype="<i2")
    expected = np.clip(np.rint(samples * 32767), -32768, 32767).astype(np.int16)
    assert np.abs(pcm.astype(int) - expected.astype(int)).max() <= 1


def test_a_clip_at_another_rate_is_resampled_to_the_formats_rate() -> None:
    clip = np.zeros(48000, dtype=np.float32)  # one second at 48 kHz
    pcm16 = base64.b64decode(encode_clip(clip, 48000, "pcm16"))
    assert abs(len(pcm16) // 2 - 24000) <= 24
    ulaw = base64.b64decode(encode_clip(clip, 48000, "g711_ulaw"))
    assert abs(len(ulaw) - 8000) <= 8  # one byte a sample at 8 kHz
    stereo = np.zeros((2400, 2), dtype=np.float32)
    assert len(base64.b64decode(encode_clip(stereo, 24000, "pcm16"))) == 4800


def test_a_stereo_int16_clip_is_mixed_down_at_its_own_scale() -> None:
    # A mean of int16 channels taken as float keeps PCM16's scale (thousands), which the
    # float path then clipped to full scale. The oracle is the same clip in mono (the float
    # round trip may move a sample by one step).
    t = np.arange(2400) / 24000
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    stereo = np.stack([mono, mono], axis=1)
    expected = audio.pcm16_from_base64(encode_clip(mono, 24000, "pcm16")).astype(np.int32)
    got = audio.pcm16_from_base64(encode_clip(stereo, 24000, "pcm16")).astype(np.int32)
    assert np.max(np.abs(got - expected)) <= 1


def test_images_by_bytes_path_or_data_url(tmp_path: Path) -> None:
    url = part({"type": "input_image", "image": PNG, "detail": "low"})
    assert url == {"type": "input_image", "detail": "low",
                   "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode()}
    path = tmp_path / "photo.JPG"
    path.write_bytes(b"\xff\xd8rest")
    jpeg = str(part({"type": "input_image", "image": path})["image_url"])
    assert jpeg.startswith("data:image/jpeg;base64,")
    assert part({"type": "input_image", "image_url": "data:x"})["image_url"] == "data:x"


@pytest.mark.parametrize(("value", "error"), [
    ({"type": "input_image", "image": b"not an image"}, ValueError),
    ({"type": "input_image", "image": 42}, TypeError),
    ({"type": "input_audio", "audio": 42}, TypeError),
    ({"type": "input_video"}, ValueError),
])
def test_bad_parts_get_a_clear_error(value: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        part(value)


# The hand-written table mime_for replaced (issue 21): the suffixes the client accepts and the
# types they were sent as.
SUFFIX_TYPES_BEFORE_MIMETYPES = {".png": "image/png", ".jpg": "image/jpeg",
                                 ".jpeg": "image/jpeg", ".gif": "image/gif",
                                 ".webp": "image/webp"}


@pytest.mark.parametrize("suffix", [*SUFFIX_TYPES_BEFORE_MIMETYPES,
                                    *(s.upper() for s in SUFFIX_TYPES_BEFORE_MIMETYPES)])
def test_image_suffixes_the_client_accepts_keep_their_types(suffix: str) -> None:
    assert mime_for(suffix) == SUFFIX_TYPES_BEFORE_MIMETYPES[suffix.lower()]


@pytest.mark.parametrize("suffix", ["", ".txt", ".bmp", ".svg", ".gz", ".PNG.gz"])
def test_other_suffixes_are_still_sent_as_png(suffix: str) -> None:
    assert mime_for(suffix) == "image/png"


def test_the_type_does_not_depend_on_the_machines_mime_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What a host's mime.types or registry adds to the global table, on a stand-in table.
    monkeypatch.setattr(mimetypes, "_db", mimetypes.MimeTypes())
    mimetypes.add_type("image/x-png", ".png")
    mimetypes.add_type("image/pjpeg", ".jpg")
    assert mimetypes.guess_type("photo.jpg")[0] == "image/pjpeg"  # the global table moved
    assert (mime_for(".png"), mime_for(".jpg")) == ("image/png", "image/jpeg")


def test_session_config_is_copied_not_shared() -> None:
    # The client keeps its own copy of what the caller passed (a later change to the caller's
    # dicts or lists must not reach the session), and nested mappings merge key by key.
    from realtalk.client import _deep_merge

    tools = [{"type": "function", "name": "a"}]
    update = {"audio": {"output": {"voice": "alloy"}}, "tools": tools}
    config: dict = {"audio": {"input": {"format": {"type": "audio/pcm"}}}}
    _deep_merge(config, update)
    tools.append({"type": "function", "name": "b"})
    update["audio"]["output"]["voice"] = "echo"
    assert config == {"audio": {"input": {"format": {"type": "audio/pcm"}},
                                "output": {"voice": "alloy"}},
                      "tools": [{"type": "function", "name": "a"}]}
