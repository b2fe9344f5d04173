"""WAV input as recorders, ffmpeg and sox write it. Oracle: sox writes the files from known
samples (every sample format it has, the plain and the extensible header); malformed files are
built by hand."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from realtalk.wav import WavError, read_wav

# Skipped only on a developer's machine without sox; in CI (which installs it) never.
needs_sox = pytest.mark.skipif(shutil.which("sox") is None and os.environ.get("CI") != "true",
                               reason="sox is not installed (.ci/run installs it)")

# sox's own names for a sample format, and the step of that format's quantiser.
FORMATS = {
    "float32": (["-e", "floating-point", "-b", "32"], 1e-7),
    "float64": (["-e", "floating-point", "-b", "64"], 1e-7),
    "int8": (["-e", "unsigned-integer", "-b", "8"], 1 / 128),
    "int16": (["-e", "signed-integer", "-b", "16"], 1 / 32768),
    "int24": (["-e", "signed-integer", "-b", "24"], 1 / (1 << 23)),
    "int32": (["-e", "signed-integer", "-b", "32"], 1 / (1 << 31)),
}


def sox_wav(tmp_path: Path, samples: np.ndarray, rate: int, fmt: str, header: str) -> Path:
    raw, out = tmp_path / "in.f32", tmp_path / f"{fmt}-{header}.wav"
    samples.astype("<f4").tofile(raw)
    encoding, _ = FORMATS[fmt]
    subprocess.run(["sox", "-t", "raw", "-r", str(rate), "-e", "floating-point", "-b", "32",
                    "-c", str(samples.shape[1]), str(raw), *encoding, "-t", header, str(out)],
                   check=True)
    return out


@needs_sox
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("header", ["wav", "wavpcm"])
def test_every_sample_format_sox_writes(tmp_path: Path, fmt: str, channels: int,
                                        header: str) -> None:
    rng = np.random.default_rng(channels)
    samples = rng.uniform(-0.9, 0.9, (1600, channels)).astype(np.float32)
    path = sox_wav(tmp_path, samples, 22050, fmt, header)
    wav = read_wav(path)
    assert wav.sample_rate == 22050 and wav.samples.shape == samples.shape
    _, step = FORMATS[fmt]
    # sox rounds to the nearest step (and may dither 8-bit): within one step either way.
    np.testing.assert_allclose(wav.samples, samples, atol=2 * step, rtol=0)


@needs_sox
def test_both_header_kinds_are_covered(tmp_path: Path) -> None:
    # The parametrised test means something only if sox wrote both headers among its files.
    stereo = np.zeros((16, 2), np.float32)
    tags = {int.from_bytes(sox_wav(tmp_path, stereo, 8000, fmt, header).read_bytes()[20:22],
                           "little")
            for fmt in FORMATS for header in ("wav", "wavpcm")}
    assert {1, 3, 0xFFFE} <= tags


def wav_bytes(data: bytes, *, tag: int = 1, channels: int = 1, rate: int = 16000,
              bits: int = 16, declared: int | None = None, extensible_sub: int | None = None
              ) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible_sub else tag, channels, rate,
                      rate * block, block, bits)
    if extensible_sub:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", extensible_sub) + guid_tail
    size = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_extensible_float_reads_as_float(tmp_path: Path) -> None:
    samples = np.array([0.25, -0.5, 1.5], dtype="<f4")  # beyond full scale stays as written
    path = tmp_path / "x.wav"
    path.write_bytes(wav_bytes(samples.tobytes(), bits=32, extensible_sub=3))
    np.testing.assert_array_equal(read_wav(path).samples[:, 0], samples)


def test_a_streamed_file_with_an_unknown_data_size_reads_to_the_end(tmp_path: Path) -> None:
    pcm = np.arange(-50, 50, dtype="<i2")
    path = tmp_path / "s.wav"
    path.write_bytes(wav_bytes(pcm.tobytes(), declared=0xFFFFFFFF))
    np.testing.assert_array_equal(read_wav(path).samples[:, 0], pcm / 32768.0)


@pytest.mark.parametrize(("content", "reason"), [
    (wav_bytes(b"\x00\x01" * 100, declared=4000), "truncated: the header promises 4000 bytes "
     "of audio, the file holds 200"),
    (wav_bytes(b"\x00\x01" * 100)[:30], "truncated: the format chunk is cut short"),
    (wav_bytes(b"\x00\x01" * 100)[:36], "truncated: no audio (data) chunk"),
    (b"RIFF\x00\x00\x00\x00WAVE", "truncated: no format chunk"),
    (b"ID3\x03" + bytes(60), "not a WAV file"),
    (b"", "not a WAV file"),
    (wav_bytes(b"\x00" * 64, tag=2), "not PCM or float audio (format tag 0x0002"),
    (wav_bytes(b"\x00" * 64, bits=12), "unsupported sample format (12-bit integer PCM)"),
    (wav_bytes(np.array([0.1, np.nan], "<f4").tobytes(), tag=3, bits=32), "NaN or infinite"),
])
def test_malformed_files_say_what_is_wrong(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(WavError) as caught:
        read_wav(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
