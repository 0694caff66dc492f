"""A three-person test cast for the preview engine, told apart by pitch.

The clips are the shipped synthetic `joe.wav` played faster or slower (pitch and length scale
together); the preview engine speaks each persona at its clip's pitch.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

from s2_sidecar.clips import pitch_hz

from s2_plugin.audio import resample, wav_bytes
from support.sidecar import PERSONAS_TOML

RATIOS = {"ava": 1.0, "ben": 1.35, "cy": 0.75}
CAST = list(RATIOS)
_JOE = PERSONAS_TOML.parent / "joe.wav"
_TRANSCRIPT = (
    "Hi, I'm Joe, the preview voice of this project. I read this short passage so that the "
    "sidecar has a clip to learn from. It runs on a plain laptop, with no graphics card, and it "
    "never leaves your machine. Thanks for listening, and enjoy the demo."
)


def write_personas(root: Path) -> Path:
    """Write the cast's clips and a personas TOML under `root`; return the TOML's path."""
    root.mkdir(parents=True, exist_ok=True)
    with wave.open(str(_JOE)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    toml = []
    for name, ratio in RATIOS.items():
        (root / f"{name}.wav").write_bytes(wav_bytes(resample(pcm, round(rate * ratio), rate)))
        toml.append(
            f'[[persona]]\nname = "{name}"\nclip = "{name}.wav"\ntranscript = "{_TRANSCRIPT}"\n'
        )
    path = root / "cast.toml"
    path.write_text("\n".join(toml))
    return path


def who(pcm: bytes, rate: int, voices: dict[str, float]) -> tuple[str, float]:
    """The voice whose pitch (Hz) is nearest that of `pcm`, and how far off it is (octaves)."""
    hz = pitch_hz(pcm, rate)
    assert hz is not None, "no voiced audio"
    name = min(voices, key=lambda v: abs(math.log2(hz / voices[v])))
    return name, abs(math.log2(hz / voices[name]))
