"""Persona references small enough to travel inline through SGLang-Omni's router.

`sgl-omni-router-py` parses a speech request for routing only when its JSON is at most
`ROUTE_METADATA_JSON_LIMIT_BYTES` (1 MiB, `sglang_omni_router/python/route_metadata.py`);
a larger one goes to the single voice-owner worker, so a persona sent as base64 WAV longer than
~8.9 s would never spread. 0.1.9 decodes reference bytes that are not WAV with PyAV
(`models/fishaudio_s2_pro/stages.py` `FishReferenceEncodeHook.encode_one`), so the canonical
clip travels compressed instead:

- FLAC, lossless, when the request still fits: the worker decodes the very samples a local
  path would give, so the codes (and the radix cache key) are the same. Speech compresses to
  about 30-60 % of WAV: a clean 30 s clip fits, a noisy one does not.
- else MP3 at LAME's best VBR quality (~120-140 kbps at 44.1 kHz, no resampling), about
  38-43 dB SNR against the canonical clip (`bench_reference_cost` in `bench/bench_sidecar.py`
  prints it for the example clip: 43 dB): far finer than what S2
  keeps, since its codec turns the clip into 10 codebooks at 21.5 frames/s before the model
  sees it. A 30 s clip is about 0.7 MB in base64.
"""

from __future__ import annotations

import io

import soundfile as sf

from s2_plugin.protocol import MAX_INPUT_CHARS, SAMPLE_RATE

ROUTER_JSON_LIMIT = 1024 * 1024
"""`ROUTE_METADATA_JSON_LIMIT_BYTES` in 0.1.9's router."""
REFERENCE_BUDGET = ROUTER_JSON_LIMIT - 6 * MAX_INPUT_CHARS - 1024
"""Room for the reference: the rest of a body is at most 4096 characters of input (6 bytes each
when JSON-escaped) and a few short fields."""


def encode(wav: bytes, fits: int = REFERENCE_BUDGET) -> tuple[bytes, str]:
    """The canonical WAV as FLAC if its base64 takes at most `fits` bytes, else as MP3.

    Returns the encoded bytes and their media type.
    """
    pcm, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == SAMPLE_RATE, rate
    flac = _write(pcm, "FLAC", "PCM_16")
    if _base64_size(flac) <= fits:
        return flac, "audio/flac"
    return _write(pcm, "MP3", "MPEG_LAYER_III", compression_level=0.0), "audio/mpeg"


def _write(pcm: object, fmt: str, subtype: str, **options: float) -> bytes:
    out = io.BytesIO()
    sf.write(out, pcm, SAMPLE_RATE, format=fmt, subtype=subtype, **options)
    return out.getvalue()


def _base64_size(data: bytes) -> int:
    return (len(data) + 2) // 3 * 4
