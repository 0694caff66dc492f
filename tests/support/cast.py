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

RATIOS = {"ava": 1.0, "ben": 1.45, "cy": 0.7}
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


def turns_heard(
    pcm: bytes, rate: int, voices: dict[str, float], order: list[str]
) -> list[tuple[str, bytes]]:
    """Align `pcm` with the voices of its turns, `order`, by pitch: (the voice heard in each
    turn's stretch, that stretch's audio). A turn in the wrong voice is heard as another."""
    hop = rate // 4
    track = [
        (i, pitch_hz(pcm[2 * i : 2 * (i + 2 * hop)], rate)) for i in range(0, len(pcm) // 2, hop)
    ]
    frames = [(i, math.log2(hz)) for i, hz in track if hz is not None]
    refs = {name: math.log2(hz) for name, hz in voices.items()}
    n, k_turns = len(frames), len(order)
    # cum[k][j]: how far frames 0..j-1 are from turn k's voice (octaves).
    cum = [[0.0] for _ in order]
    for k, name in enumerate(order):
        for _, x in frames:
            cum[k].append(cum[k][-1] + min(abs(x - refs[name]), 1.0))
    best = [[math.inf] * (n + 1) for _ in range(k_turns + 1)]
    cut = [[0] * (n + 1) for _ in range(k_turns + 1)]
    best[0][0] = 0.0
    for k in range(1, k_turns + 1):
        row = cum[k - 1]
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                c = best[k - 1][i] + row[j] - row[i]
                if c < best[k][j]:
                    best[k][j], cut[k][j] = c, i
    bounds, j = [], n
    for k in range(k_turns, 0, -1):
        bounds.append((cut[k][j], j))
        j = cut[k][j]
    heard = []
    for i, j in reversed(bounds):
        median = sorted(x for _, x in frames[i:j])[(j - i) // 2]
        start = frames[i][0] if i else 0
        end = frames[j][0] if j < n else len(pcm) // 2
        name = min(refs, key=lambda v: abs(median - refs[v]))
        heard.append((name, pcm[2 * start : 2 * end]))
    return heard


def plain(pcm: bytes, rate: int, name: str) -> bytes:
    """`pcm` spoken by `name` with the preview's pitch shift undone, for the recogniser."""
    return resample(pcm, round(rate / RATIOS[name]), rate)
