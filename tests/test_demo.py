"""`make demo` from a clean copy of the repository: it runs, writes audio, and the words survive."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from support.checkout import clean_copy
from support.speech import transcribe, wer

from s2_plugin.audio import ulaw_decode
from s2_plugin.tags import strip_tags

# PocketSphinx on the preview voice, 6 runs: 0.09-0.26 at 24 kHz and 0.28-0.50 over 8 kHz
# mu-law (its model is wideband); the same audio reversed scores 0.98.
MAX_WER = 0.4
MAX_WER_PHONE = 0.7


def read_wav(path: Path) -> tuple[tuple[int, int, int, int], bytes]:
    with wave.open(str(path), "rb") as w:
        shape = (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes())
        return shape, w.readframes(w.getnframes())


def ulaw_wav_payload(path: Path) -> tuple[int, int, bytes]:
    """Format tag, sample rate and data of a mu-law WAV (the stdlib reads PCM WAVs only)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    tag, _, rate = struct.unpack_from("<HHI", data, data.index(b"fmt ") + 8)
    start = data.index(b"data") + 8
    (size,) = struct.unpack_from("<I", data, start - 4)
    return tag, rate, data[start : start + size]


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float64) ** 2)))


def test_the_demo_speaks_the_reply_at_24k_and_over_mulaw(tmp_path: Path) -> None:
    repo = clean_copy(tmp_path / "repo")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(repo / p) for p in (".", "adapters", "server")),
    }
    run = subprocess.run(
        [sys.executable, "examples/demo.py", "--out", str(out), "--engine", "preview"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "first token" in run.stdout and "Thanks for listening!" in run.stdout

    sys.path.insert(0, str(repo / "examples"))
    try:
        from demo import REPLY  # the reply as shipped in the copy
    finally:
        sys.path.remove(str(repo / "examples"))
    spoken = strip_tags(REPLY)

    (channels, width, rate, frames), pcm = read_wav(out / "reply-24k.wav")
    assert (channels, width, rate) == (1, 2, 24000)
    assert frames > 24000 * 5  # several seconds of speech
    assert rms(pcm) > 300
    assert wer(spoken, transcribe(pcm, 24000)) <= MAX_WER

    tag, rate, ulaw = ulaw_wav_payload(out / "reply-8k-mulaw.wav")
    assert (tag, rate) == (7, 8000)  # WAVE_FORMAT_MULAW
    phone = ulaw_decode(ulaw)
    assert len(ulaw) > 8000 * 5
    assert rms(phone) > 300
    assert wer(spoken, transcribe(phone, 8000)) <= MAX_WER_PHONE
