"""REALTALK_SIMD steers every kernel, and each kernel's portable path matches its vector ones.

The Rust tests compare each kernel's portable code with its vector code on one machine
(`simd::with_cap`). These tests check the same through the wheel's Python face, as a user or a
non-x86 build sees it: a child interpreter started with `REALTALK_SIMD=scalar` runs the code an
ARM wheel runs, and its outputs must equal (bit for bit where the kernel promises it) those of
children capped at every other level this CPU has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from realtalk import _audio

LEVELS = ["scalar", "sse2", "avx2", "avx512"]


def run_child(code: str, simd: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("REALTALK_SIMD", None)
    if simd is not None:
        env["REALTALK_SIMD"] = simd
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def level_in_child(cap: str | None) -> str:
    child = run_child("from realtalk import _audio; print(_audio.simd)", cap)
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


BEST = level_in_child(None)  # this CPU's best, whatever this process was started with
AVAILABLE = LEVELS[: LEVELS.index(BEST) + 1]


def test_the_module_reports_the_level_in_effect() -> None:
    assert _audio.simd in AVAILABLE
    for cap in LEVELS:
        # A cap above what the CPU has leaves the CPU's best.
        assert level_in_child(cap) == LEVELS[min(LEVELS.index(cap), LEVELS.index(BEST))]
    assert level_in_child(" AVX2 ") == LEVELS[min(2, LEVELS.index(BEST))]
    assert level_in_child("neon") == BEST  # an unknown value caps nothing


KERNELS = """
import numpy as np
from realtalk import _audio
from realtalk.audio import *

rng = np.random.default_rng(7)
floats = (rng.standard_normal(48_013) * 0.6).astype(np.float32)
floats[::97] = np.nan
floats[1::101] = 1.5
pcm = np.arange(-32768, 32768, dtype=np.int16)
raw = rng.integers(0, 256, 100_003, dtype=np.uint8).tobytes()
text = b64encode(raw)
codes = np.arange(256 * 40, dtype=np.int64).astype(np.uint8)
speech = np.zeros(48_000, np.float32)
speech[12_000:30_000] = 0.3 * np.sin(np.arange(18_000) * 0.07)
speech += (rng.standard_normal(48_000) * 0.003).astype(np.float32)

vad = Vad(24000)
events = vad.process(speech)
vad.reset()
uplink = Uplink(24000)
event = uplink.encode(floats[:4800])
delta = ('{{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,'
         '"content_index":0,"delta":"' + pcm16_to_base64(pcm[:9600]) + '"}}')
np.savez(
    {path!r},
    simd=np.array(_audio.simd),
    f32_to_pcm16=float_to_pcm16(floats),
    f64_to_pcm16=float_to_pcm16(floats.astype(np.float64) * 1.0001),
    pcm16_to_float=pcm16_to_float(pcm),
    b64encode=np.frombuffer(b64encode(raw).encode(), np.uint8),
    b64decode=np.frombuffer(b64decode(text), np.uint8),
    ulaw_encode=ulaw_encode(pcm),
    alaw_encode=alaw_encode(pcm),
    ulaw_decode=ulaw_decode(codes),
    alaw_decode=alaw_decode(codes),
    vad_decisions=vad.classify(speech),
    vad_events=np.array([(e.type == "speech_started", e.audio_start_ms or e.audio_end_ms) for e in events]),
    uplink_event=np.frombuffer(event, np.uint8),
    downlink=Downlink(24000).decode(delta).samples,
    resample=resample(np.nan_to_num(floats[:24000]) * 0.5, 44100, 24000),
    resample_i16=resample(pcm[:24000], 24000, 16000),
)
"""

# The resampler's vector kernels fuse multiply-adds: close to the portable one, not equal.
CLOSE = {"resample": 1e-6, "resample_i16": 1}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for level in AVAILABLE:
        path = Path(tmp_path_factory.mktemp("simd")) / f"{level}.npz"
        child = run_child(KERNELS.format(path=str(path)), level)
        assert child.returncode == 0, child.stderr
        with np.load(path) as data:
            found[level] = {name: data[name] for name in data.files}
        assert str(found[level]["simd"]) == level
    return found


@pytest.mark.parametrize("level", AVAILABLE[1:] or ["scalar"])
def test_every_kernel_at_every_level_matches_the_scalar_path(outputs: dict[str, dict[str, np.ndarray]], level: str) -> None:
    scalar, vector = outputs["scalar"], outputs[level]
    for name, want in scalar.items():
        if name == "simd":
            continue
        got = vector[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if name in CLOSE:
            difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
            assert difference.max(initial=0) <= CLOSE[name], f"{name} at {level}"
        else:
            assert got.tobytes() == want.tobytes(), f"{name} at {level} differs from the scalar path"


def test_the_scalar_path_is_right_by_itself(outputs: dict[str, dict[str, np.ndarray]]) -> None:
    """The portable code against numpy and the standard library, not only against the SIMD code."""
    import base64

    scalar = outputs["scalar"]
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(scalar["pcm16_to_float"], pcm.astype(np.float32) / 32768)
    raw = scalar["b64decode"].tobytes()
    assert scalar["b64encode"].tobytes() == base64.b64encode(raw)
    assert len(scalar["vad_events"]) >= 2 and scalar["vad_decisions"].any()
