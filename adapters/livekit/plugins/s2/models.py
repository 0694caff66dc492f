from typing import Literal

TTSSampleRate = Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000]
"""Rates the plugin can deliver: S2 speaks at 44.1 kHz, resampled once to any of these."""
