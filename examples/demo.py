"""`make demo`: a tagged LLM reply spoken by an S2 persona through a real Pipecat pipeline.

It starts a local `s2-sidecar` (S2-Pro on a GPU, the CPU preview voice elsewhere), registers
the example persona, streams a scripted LLM reply token by token into `S2TTSService`, and
writes what a WebRTC call (24 kHz) and a phone call (8 kHz mu-law) would carry. It prints
when each sentence's first audio left the service, and stops the sidecar at the end.

    python examples/demo.py [--out out] [--engine auto|preview|sglang_omni]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner
from pipecat_s2 import S2TTSService

from s2_plugin.audio import ulaw_encode, wav_bytes
from s2_plugin.client import S2Client, S2Error
from s2_plugin.protocol import Health

HERE = Path(__file__).resolve().parent
PERSONAS = HERE / "personas" / "personas.toml"
PERSONA = "joe"
REPLY = (
    "Hi there, I'm Joe, and this reply is being spoken while it is still being written. "
    "[excited] Every sentence goes to the sidecar as soon as it is complete, "
    "and the next one is generated while this one plays. "
    "[whisper] Nothing here left your machine. Thanks for listening!"
)
TOKENS_PER_S = 50  # a typical LLM streaming rate
STARTUP_TIMEOUT_S = 900  # S2 on a cold GPU loads and compiles for minutes; the preview, seconds


class Recorder(FrameProcessor):
    """Keeps the audio and notes when each sentence's first audio frame arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.audio = bytearray()
        self.sentences: list[tuple[str, float, int]] = []
        self._first_audio: float | None = None
        self._start = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio += frame.audio
            if self._first_audio is None:
                self._first_audio = time.perf_counter()
        elif isinstance(frame, TTSTextFrame):
            # The service sends a sentence's words right after its last audio frame.
            if self._first_audio is not None:
                size = len(self.audio) - self._start
                self.sentences.append((frame.text, self._first_audio, size))
                self._first_audio = None
                self._start = len(self.audio)
            elif self.sentences:
                text, ready, size = self.sentences[-1]
                self.sentences[-1] = (f"{text} {frame.text}", ready, size)
        await self.push_frame(frame, direction)


async def speak(url: str, sample_rate: int) -> tuple[bytes, list[tuple[str, float, int]]]:
    """Run the reply through a pipeline at `sample_rate`: its audio, and per sentence the text,
    when its first audio arrived (from the LLM's first token) and its length in bytes."""
    recorder = Recorder()
    worker = PipelineWorker(
        Pipeline([S2TTSService(base_url=url, persona=PERSONA), recorder]),
        params=PipelineParams(audio_out_sample_rate=sample_rate),
    )

    async def llm() -> float:
        await worker.queue_frame(LLMFullResponseStartFrame())
        started = time.perf_counter()
        for i in range(0, len(REPLY), 4):  # ~4 characters a token
            await worker.queue_frame(LLMTextFrame(REPLY[i : i + 4]))
            await asyncio.sleep(1 / TOKENS_PER_S)
        await worker.queue_frames([LLMFullResponseEndFrame(), EndFrame()])
        return started

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    _, started = await asyncio.gather(runner.run(), llm())
    return bytes(recorder.audio), [(text, t - started, n) for text, t, n in recorder.sentences]


@contextlib.asynccontextmanager
async def sidecar(engine: str) -> AsyncIterator[str]:
    """A sidecar of our own on a free loopback port, stopped on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        argv = [sys.executable, "-m", "s2_sidecar", "--log-level", "warning", "serve"]
        argv += ["--port", str(port)]
        argv += ["--engine", engine, "--store", store, "--personas", str(PERSONAS)]
        proc = subprocess.Popen(argv)
        try:
            async with S2Client(url) as client:
                health = await wait_ready(client, proc)
            kind = "the CPU preview voice, not S2" if health.preview else "S2-Pro"
            print(f"sidecar ready at {url}: {health.engine} ({kind})")
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


async def wait_ready(client: S2Client, proc: subprocess.Popen[bytes]) -> Health:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the sidecar exited with code {proc.returncode}; see its log above")
        with contextlib.suppress(S2Error):
            health = await client.health()
            if health.status == "ready" and health.personas:
                return health
        await asyncio.sleep(0.2)
    raise SystemExit(f"the sidecar was not ready after {STARTUP_TIMEOUT_S} s")


def write_ulaw_wav(path: Path, ulaw: bytes) -> None:
    """8 kHz G.711 mu-law in a WAV container (format 7), as telephony tools read it."""
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)
    fact = struct.pack("<I", len(ulaw))
    pad = b"\0" * (len(ulaw) % 2)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<I", len(fact)) + fact
    body += b"data" + struct.pack("<I", len(ulaw)) + ulaw + pad
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


async def main(out: Path, engine: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    async with sidecar(engine) as url:
        for rate, name in ((24000, "reply-24k.wav"), (8000, "reply-8k-mulaw.wav")):
            pcm, sentences = await speak(url, rate)
            path = out / name
            if rate == 8000:
                write_ulaw_wav(path, ulaw_encode(pcm))
            else:
                path.write_bytes(wav_bytes(pcm, rate))
            print(f"\n{path}: {len(pcm) / 2 / rate:.2f} s at {rate} Hz")
            print("  from the LLM's first token: audio ready | plays from | silence before it")
            plays_until = sentences[0][1] if sentences else 0.0
            for text, ready, size in sentences:
                starts = max(ready, plays_until)
                gap = starts - plays_until
                times = f"{ready * 1e3:6.0f} ms | {starts * 1e3:6.0f} ms | {gap * 1e3:4.0f} ms"
                print(f"  {times}  {text}")
                plays_until = starts + size / 2 / rate


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--engine", default="auto", choices=["auto", "preview", "sglang_omni"])
    args = parser.parse_args()
    asyncio.run(main(args.out, args.engine))
