"""User message content for ``conversation.item.create``: text, audio clips and images.

The encoding half of ``RealtimeClient.send_user_message_content``: each content part a user
passes (numpy audio at any rate, raw bytes, image bytes or a path) becomes the wire part in the
session's input format. Pure functions; no connection or event loop.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from realtalk import audio as _audio

__all__ = ["encode_clip", "user_content_part"]

# The sample rate of each session input format on the wire.
WIRE_RATES = {"pcm16": 24000, "g711_ulaw": 8000, "g711_alaw": 8000}


def decode_wire_audio(raw: bytes | bytearray | memoryview, format_: str) -> np.ndarray:
    """Audio bytes in a session input format (pcm16: an even byte count) as int16 samples at
    that format's rate: the inverse of the encoding step of :func:`encode_clip`."""
    if format_ == "pcm16":
        return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
    codes = np.frombuffer(raw, dtype=np.uint8)
    return _audio.ulaw_decode(codes) if format_ == "g711_ulaw" else _audio.alaw_decode(codes)


def mono_float(samples: np.ndarray) -> np.ndarray:
    """float32 or int16 samples, mono or ``(frames, channels)``, as contiguous mono float32
    in [-1, 1]. int16 is scaled (sample / 32768) before the channels are averaged: their mean
    taken as float would keep PCM16's scale."""
    if samples.dtype == np.int16:
        flat = _audio.pcm16_to_float(np.ascontiguousarray(samples).reshape(-1))
        samples = flat.reshape(samples.shape)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def encode_clip(samples: np.ndarray, rate: int, format_: str) -> str:
    """A whole clip (not a stream) as base64 in a session input format."""
    if samples.ndim == 2:
        samples = mono_float(samples)
    if samples.dtype not in (np.float32, np.int16):
        samples = samples.astype(np.float32)
    wire_rate = WIRE_RATES[format_]
    if rate != wire_rate:
        samples = _audio.resample(np.ascontiguousarray(samples), rate, wire_rate)
    pcm = samples if samples.dtype == np.int16 else _audio.float_to_pcm16(samples)
    if format_ == "pcm16":
        return _audio.pcm16_to_base64(pcm)
    codes = _audio.ulaw_encode(pcm) if format_ == "g711_ulaw" else _audio.alaw_encode(pcm)
    return _audio.b64encode(codes)


def user_content_part(part: Mapping[str, Any], *, input_rate: int,
                      input_format: str) -> dict[str, Any]:
    """One part of a user message as it goes on the wire (see
    ``RealtimeClient.send_user_message_content`` for what each type takes)."""
    kind = part.get("type")
    if kind == "input_text":
        return {"type": "input_text", "text": str(part["text"])}
    if kind == "input_audio":
        data = part.get("audio")
        if isinstance(data, np.ndarray):
            rate = int(part.get("sample_rate", input_rate))
            return {"type": "input_audio", "audio": encode_clip(data, rate, input_format)}
        if isinstance(data, bytes | bytearray | memoryview):
            return {"type": "input_audio", "audio": base64.b64encode(bytes(data)).decode()}
        if isinstance(data, str):
            return {"type": "input_audio", "audio": data}
        raise TypeError("input_audio needs 'audio' as a numpy array, bytes or base64 text")
    if kind == "input_image":
        image = part.get("image", part.get("image_url"))
        if isinstance(image, str) and image.startswith("data:"):
            url = image
        elif isinstance(image, str | Path):
            path = Path(image)
            url = data_url(path.read_bytes(), mime_for(path.suffix))
        elif isinstance(image, bytes | bytearray):
            url = data_url(bytes(image), sniff_image(bytes(image)))
        else:
            raise TypeError("input_image needs 'image' as bytes, a path or a data URL")
        result = {"type": "input_image", "image_url": url}
        if "detail" in part:
            result["detail"] = part["detail"]
        return result
    raise ValueError(f"unsupported user content type {kind!r}")


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# The image types the Realtime API takes (and sniff_image recognises).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The standard library's own table: a fresh MimeTypes reads neither the machine's mime.types
# files nor the Windows registry, so a suffix means the same type on every host.
_STDLIB_MIME_TYPES = mimetypes.MimeTypes()


def mime_for(suffix: str) -> str:
    """The image type a file name's suffix names (any case). A suffix naming no image type the
    API takes is sent as PNG and left to the server to judge, as it always was."""
    # strict=False: Python 3.11 and 3.12 list .webp only among the common, non-IANA types.
    mime, _encoding = _STDLIB_MIME_TYPES.guess_type(f"image{suffix}", strict=False)
    return mime if mime in IMAGE_TYPES else "image/png"


def sniff_image(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("input_image bytes are not a PNG, JPEG, GIF or WebP image")
