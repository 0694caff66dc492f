"""The Twilio phone bot example, called the way Twilio calls it.

The bot runs under uvicorn with a scripted LLM (no keys) and the real sidecar; the test is
Twilio: it opens the media-stream websocket, sends the `connected` and `start` events and
20 ms of mu-law silence every 20 ms, and decodes the mu-law media the bot sends back. The call
lasts until all the audio the sidecar sent for the greeting has come down the line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import uvicorn
from fastapi import FastAPI
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from support.proxy import RecordingProxy
from support.sidecar import SidecarProcess
from support.speech import transcribe, wer
from support.waiting import until
from websockets.asyncio.client import ClientConnection, connect

from s2_plugin.audio import ulaw_decode
from s2_plugin.protocol import SAMPLE_RATE
from s2_plugin.segment import Segmenter
from s2_plugin.tags import strip_tags

ROOT = Path(__file__).resolve().parents[2]
GREETING = (
    "I will tell you a little secret about the weather today. [laugh] "
    "The sun will shine all morning and it will rain at night."
)
STREAM_SID = "MZ00000000000000000000000000000001"
CALL_SID = "CA00000000000000000000000000000001"
SILENCE = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence at 8 kHz


def load_phone_bot() -> ModuleType:
    path = ROOT / "examples" / "pipecat" / "phone_bot.py"
    spec = importlib.util.spec_from_file_location("phone_bot_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ScriptedLLM(FrameProcessor):
    """Answers every context with the same reply, streamed in small tokens like an LLM."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self._reply = reply

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        for i in range(0, len(self._reply), 5):
            await self.push_frame(LLMTextFrame(self._reply[i : i + 5]))
        await self.push_frame(LLMFullResponseEndFrame())


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    # The socket is bound here and handed over, so no other process can take its port first.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await until(lambda: server.started or task.done(), "uvicorn started")
        assert not task.done(), "uvicorn did not start"
        try:
            yield f"ws://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def call(ws: ClientConnection, done: Callable[[int], bool], limit_s: float = 60.0) -> bytes:
    """Be Twilio: start the stream, send silence, return the mu-law the bot sends.

    Ends once `done(samples received)` holds (or after `limit_s`, and the test fails).
    """
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    start = {
        "streamSid": STREAM_SID,
        "callSid": CALL_SID,
        "accountSid": "AC00000000000000000000000000000001",
        "tracks": ["inbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    await ws.send(json.dumps({"event": "start", "start": start, "streamSid": STREAM_SID}))
    received = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    chunk = 0
    while loop.time() < deadline and not done(len(received)):
        chunk += 1
        media = {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20)}
        media["payload"] = SILENCE
        await ws.send(json.dumps({"event": "media", "media": media, "streamSid": STREAM_SID}))
        with contextlib.suppress(TimeoutError):
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.02))
                if message["event"] == "media":
                    assert message["streamSid"] == STREAM_SID
                    received += base64.b64decode(message["media"]["payload"])
    await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
    return bytes(received)


async def test_a_caller_hears_the_greeting(sidecar: SidecarProcess) -> None:
    phone_bot = load_phone_bot()
    segments = Segmenter()
    expected_requests = len(segments.push(GREETING) + segments.flush())

    def greeting_played(received: int) -> bool:
        """All of the greeting's audio, at 8 kHz, has come down the line (within 20 ms)."""
        sent = proxy.speech()
        if len(sent) < expected_requests or not proxy.finished():
            return False
        samples = sum((r.samples * 8000 + SAMPLE_RATE // 2) // SAMPLE_RATE for r in sent)
        return received >= samples - 160

    async with RecordingProxy(sidecar.url).running() as proxy:
        app = phone_bot.create_app(
            lambda: (None, ScriptedLLM(GREETING)), s2_url=proxy.url, persona=sidecar.persona
        )
        async with serving(app) as url, connect(url + "/ws") as ws:
            ulaw = await call(ws, greeting_played)
        assert greeting_played(len(ulaw)), "the call ended before the greeting was played"

    seconds = len(ulaw) / 8000  # one mu-law byte per sample at 8 kHz
    assert 2.0 < seconds < 15.0, seconds
    heard = transcribe(ulaw_decode(ulaw), 8000)
    # 8 kHz mu-law, a crude test: the deterministic preview voice measures 0.30 here every run.
    assert wer(strip_tags(GREETING), heard) <= 0.5, heard
