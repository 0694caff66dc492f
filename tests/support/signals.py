"""Synthetic audio for tests that need a voice-like signal but not words."""

from __future__ import annotations

import numpy as np


def speechlike(seconds: float, rate: int, level: float = 0.3) -> np.ndarray:
    """A 180 Hz tone with a 4 Hz syllable-like envelope, as float samples at `level` peak."""
    t = np.arange(int(seconds * rate)) / rate
    return level * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
