"""Calls to the sidecar's HTTP API made by hand (aiohttp), and what tests send through them."""

from __future__ import annotations

import aiohttp
import numpy as np

from s2_plugin.audio import float_to_pcm16, wav_bytes

SENTENCE = (
    "Your order has shipped and should arrive on Friday. "
    "Please call me back tomorrow morning at nine."
)


def tone(seconds: float, rate: int = 22050, level: float = 0.3) -> bytes:
    """A WAV of a warbling tone (speech-like on/off envelope), `seconds` long."""
    t = np.arange(int(seconds * rate)) / rate
    x = level * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return wav_bytes(float_to_pcm16(x), rate)


async def post_speech(url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/audio/speech", **kwargs) as r,  # type: ignore[arg-type]
    ):
        return r.status, await r.json()


async def upload(url: str, fields: dict[str, object], headers: dict[str, str] | None = None):
    form = aiohttp.FormData(default_to_multipart=True)
    for key, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(key, value, filename="clip.wav", content_type="audio/wav")
        else:
            form.add_field(key, str(value))
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/audio/voices", data=form, headers=headers) as r,
    ):
        return r.status, await r.json()
