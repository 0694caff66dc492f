"""A stand-in for `sgl-omni serve` (SGLang-Omni 0.1.9) serving S2-Pro, for tests without a GPU.

Run as the engine's command: `python sglang_standin.py serve --model-path M --host H --port P
--vocoder.factory.stream_stride N --vocoder.factory.stream_followup_stride K ...`.

- Refuses to start unless `SGLANG_OMNI_STRICT_PORT=1` (the sidecar must never let SGLang-Omni
  wander to another port), and fails if the port is taken, as strict mode does.
- `GET /health`: 503 `{"status": "starting"}` for `STANDIN_STARTING_S` seconds, then 200.
- `POST /v1/audio/speech`: validates the body with the real
  `sglang_omni.serve.protocol.CreateSpeechRequest`; answers raw int16 44.1 kHz PCM, chunked by
  the strides (2048 samples a frame), headers sent with the first chunk, as 0.1.9 does. Audio
  is 6 frames per word of `input`, every sample equal to `len(input)` (easy to check).
- `POST /standin/control` `{"mode": "ok|reject|crash|stall|wedge", "frame_s": 0.0, "stamp":
  false}`: how the next requests go; `wedge` hangs `/health` and speech with the process alive.
  `frame_s` paces generation per frame; `stamp` puts the send time (`time.perf_counter_ns()`,
  int64, in the first 8 bytes of the first chunk) for benchmarks.
- `GET /standin/state`: `{"argv", "active", "cancelled"}`; `GET /standin/requests`: raw bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time

import numpy as np
from aiohttp import web
from pydantic import ValidationError
from sglang_omni.serve.protocol import CreateSpeechRequest

SAMPLE_RATE = 44100
FRAME = 2048
FRAMES_PER_WORD = 6


class StandIn:
    def __init__(self, argv: list[str], stride: int, followup: int, starting_s: float) -> None:
        self.argv = argv
        self.stride = stride
        self.followup = followup
        self.ready_at = time.monotonic() + starting_s
        self.mode = "ok"
        self.frame_s = 0.0
        self.stamp = False
        self.requests: list[str] = []
        self.active = 0
        self.cancelled = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/health", self.health),
                web.post("/v1/audio/speech", self.speech),
                web.post("/standin/control", self.control),
                web.get("/standin/state", self.state),
                web.get("/standin/requests", self.raw_requests),
            ]
        )
        return app

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "wedge":
            await asyncio.sleep(3600)
        if time.monotonic() < self.ready_at:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "healthy", "running": True})

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.mode = body.get("mode", self.mode)
        self.frame_s = float(body.get("frame_s", self.frame_s))
        self.stamp = bool(body.get("stamp", self.stamp))
        return web.json_response({"mode": self.mode})

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "argv": self.argv,
                "active": self.active,
                "cancelled": self.cancelled,
            }
        )

    async def raw_requests(self, request: web.Request) -> web.Response:
        # Apart from `state`: each body carries a megabyte-sized reference, too much to poll.
        return web.json_response(self.requests)

    async def speech(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        self.requests.append(raw)
        try:
            req = CreateSpeechRequest.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as e:
            return _error(400, f"invalid CreateSpeechRequest: {e}")
        if req.stream and req.response_format != "pcm":
            return _error(400, "stream=true requires response_format='pcm'")
        if self.mode == "reject":
            return _error(400, "rejected by the stand-in on command")
        if self.mode == "crash":
            os._exit(3)
        frames = max(1, FRAMES_PER_WORD * len(req.input.split()))
        value = len(req.input) % 32768
        self.active += 1
        try:
            if self.mode in ("stall", "wedge"):
                await asyncio.sleep(3600)
            response = web.StreamResponse(
                headers={
                    "X-Sample-Rate": str(SAMPLE_RATE),
                    "X-Channels": "1",
                    "X-Bit-Depth": "16",
                    "X-Request-Id": f"speech-{len(self.requests)}",
                }
            )
            response.content_type = "audio/pcm"
            sent, step = 0, self.stride
            while sent < frames:
                n = min(step, frames - sent)
                if self.frame_s:
                    await asyncio.sleep(self.frame_s * n)
                chunk = np.full(n * FRAME, value, dtype="<i2").tobytes()
                if not response.prepared:  # headers only once the first audio exists
                    await response.prepare(request)
                    if self.stamp:
                        chunk = struct.pack("<q", time.perf_counter_ns()) + chunk[8:]
                await response.write(chunk)
                sent += n
                step = self.followup
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "BadRequestError", "code": status}}
    return web.json_response(body, status=status)


def main() -> None:
    if os.environ.get("SGLANG_OMNI_STRICT_PORT") != "1":
        sys.exit("stand-in: SGLANG_OMNI_STRICT_PORT=1 is required")
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["serve"])
    p.add_argument("--model-path", required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--vocoder.factory.stream_stride", dest="stride", type=int, default=40)
    p.add_argument(
        "--vocoder.factory.stream_followup_stride", dest="followup", type=int, default=45
    )
    args, _ = p.parse_known_args()
    standin = StandIn(
        sys.argv[1:], args.stride, args.followup, float(os.environ.get("STANDIN_STARTING_S", "0.3"))
    )
    # handler_cancellation: like SGLang-Omni, notice a client hang-up at once.
    web.run_app(
        standin.app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
