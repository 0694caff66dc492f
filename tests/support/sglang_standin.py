"""A stand-in for `sgl-omni serve` (SGLang-Omni 0.1.9) serving S2-Pro, for tests without a GPU.

Run as the engine's command: `python sglang_standin.py serve --model-path M --host H --port P
--vocoder.factory.stream_stride N --vocoder.factory.stream_followup_stride K
[--allowed-local-media-path DIR] ...`. Each rule below names where 0.1.9 has it (paths inside
`sglang_omni/`):

Start-up
- Needs `SGLANG_OMNI_STRICT_PORT=1` (the sidecar must never let it wander) and fails on a taken
  port, as strict mode does (`serve/launcher.py` `find_available_port`).
- Stages take `STANDIN_STARTING_S` seconds to start (0.3); if that exceeds
  `SGLANG_OMNI_STARTUP_TIMEOUT` (600 by default) it exits 1, as `run_server` gives up.
- A dotted flag given twice with two values refuses the launch (`config/patch.py`
  `ConfigPatchSet.require_no_conflicts`); `--allowed-local-media-path` must be a directory
  (`preprocessing/resource_connector.py` `resolve_allowed_local_media_path`).
- `STANDIN_STAGE=1` starts a child process standing for a GPU stage, stopped on SIGTERM as
  `launch_server` stops its stages; its pid is in `/standin/state`.

`POST /v1/audio/speech` (`serve/openai_api.py` `create_speech`, `serve/speech_service.py`)
- Field types before pydantic (`validate_raw_payload`), the real `CreateSpeechRequest`
  (`serve/protocol.py`), non-empty `input` of at most `MAX_SPEECH_INPUT_CHARS`
  (`validate_input_text`), `stream` needs `pcm`, `max_new_tokens` > 0 and `seed` >= 0
  (`prepare_generation_updates`): each a 400 `{"error": {message, type, param, code}}`.
- References: `data` must be base64 of at most `MAX_REFERENCE_AUDIO_BYTES` with an audio/ media
  type (`validate_base64_media_data`); `audio_path` must lie in the allowed directory
  (`resolve_local_file`, the real function), exist, be a file and not too big
  (`SpeechReferenceMediaIO.load_file`). Bytes that are not WAV must decode as audio
  (`models/fishaudio_s2_pro/stages.py` `encode_one`, PyAV there, libsndfile here), else 500.
- `top_k` outside -1 or 1..30 is a 500, as the `ValueError` of `validate_s2pro_top_k`
  (`models/fishaudio_s2_pro/request_builders.py`) is.
- Audio: 6 codec frames (2048 samples) per word of `input`, every sample `len(input)`; at most
  `max_new_tokens` frames, then the finish reason is `length`. Chunks follow the strides with
  the 512-sample crossfade tail held back from each chunk but the last
  (`scheduling/audio_stream.py`); headers only once the first chunk exists.
- The outcome is at `GET /v1/audio/speech/{X-Request-Id}` (`serve/speech_stream_outcomes.py`).

Control (not in 0.1.9): `POST /standin/control` with any of `{"mode": "ok|reject|error|crash|
stall|wedge|fail_after|stall_after", "after_chunks": 1, "frame_s": 0.0, "slots": 0, "stamp":
false, "rate": 44100}`. `reject` is a 400, `error` a 500, `crash` exits, before any audio;
`fail_after` drops the connection after N chunks (as uvicorn does on an error mid-stream),
`stall_after` goes silent after N chunks, `stall` before any, `wedge` hangs `/health` too.
`frame_s` is simulated GPU time per frame, `slots` how many requests generate at once (0: no
limit), `stamp` puts the send time (`perf_counter_ns`, int64) in the first 8 bytes of audio.
`{"profile": "path/to/gpu.toml"}` serves every request by the timing model of one GPU
(`s2_timing.py`: continuous batching in arrival order, step time growing with the batch), in
real time; `""` turns it off.
`GET /standin/state`: argv, env, pid, counters (with a profile, the model's `frames_made`,
`busy_s`, `running`, `waiting`); `GET /standin/requests`: raw bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import soundfile as sf
from aiohttp import web
from pydantic import ValidationError
from sglang_omni.config.schema import MAX_SPEECH_INPUT_CHARS
from sglang_omni.preprocessing.resource_connector import MediaPolicyError, resolve_local_file
from sglang_omni.serve.protocol import CreateSpeechRequest
from sglang_omni.serve.speech_limits import MAX_REFERENCE_AUDIO_BYTES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: find support
from support.s2_timing import BatchEngine, Chunk, load_profile

SAMPLE_RATE = 44100
FRAME = 2048
FRAMES_PER_WORD = 6
CROSSFADE = 512
"""`stream_crossfade_samples`: each chunk but the last keeps this tail for the next."""

_STRINGS = ("model", "input", "voice", "speaker", "response_format", "ref_audio", "ref_text")
_INTS = ("max_new_tokens", "seed", "top_k")
_NUMBERS = ("speed", "temperature", "top_p", "repetition_penalty")


class Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class StandIn:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.argv = argv
        self.stride, self.followup = args.stride, args.followup
        self.media_dir = Path(args.media).resolve() if args.media else None
        self.ready_at = time.monotonic() + float(os.environ.get("STANDIN_STARTING_S", "0.3"))
        self.mode = "ok"
        self.after_chunks = 1
        self.frame_s = 0.0
        self.stamp = False
        self.rate = SAMPLE_RATE
        self.slots: asyncio.Semaphore | None = None
        self.requests: list[str] = []
        self.outcomes: dict[str, dict[str, object]] = {}
        self.active = 0
        self.cancelled = 0
        self.completed = 0
        self.outcomes_answered = 0
        self.stage: subprocess.Popen[bytes] | None = None
        self.model: BatchEngine | None = None
        self.model_task: asyncio.Task[None] | None = None
        self.model_wake = asyncio.Event()
        self.model_chunks: dict[str, asyncio.Queue[Chunk]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/health", self.health),
                web.post("/v1/audio/speech", self.speech),
                web.get("/v1/audio/speech/{request_id}", self.outcome),
                web.post("/standin/control", self.control),
                web.get("/standin/state", self.state),
                web.get("/standin/requests", self.raw_requests),
            ]
        )
        if os.environ.get("STANDIN_STAGE") == "1":
            app.on_startup.append(self._start_stage)
            app.on_cleanup.append(self._stop_stage)
        return app

    async def _start_stage(self, app: web.Application) -> None:
        code = "import time; time.sleep(3600)"
        self.stage = subprocess.Popen([sys.executable, "-c", code])

    async def _stop_stage(self, app: web.Application) -> None:
        if self.stage:
            self.stage.terminate()
            self.stage.wait()

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "wedge":
            await asyncio.sleep(3600)
        if time.monotonic() < self.ready_at:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "healthy", "running": True})

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.mode = body.get("mode", self.mode)
        self.after_chunks = int(body.get("after_chunks", self.after_chunks))
        self.frame_s = float(body.get("frame_s", self.frame_s))
        self.stamp = bool(body.get("stamp", self.stamp))
        self.rate = int(body.get("rate", self.rate))
        if "slots" in body:
            self.slots = asyncio.Semaphore(body["slots"]) if body["slots"] else None
        if "profile" in body:
            self.set_profile(body["profile"])
        return web.json_response({"mode": self.mode})

    def set_profile(self, path: str) -> None:
        if self.model_task:
            self.model_task.cancel()
        self.model, self.model_task = None, None
        if path:
            self.model = BatchEngine(load_profile(Path(path)), self.stride, self.followup)
            self.model_task = asyncio.get_running_loop().create_task(self.run_model(self.model))

    async def run_model(self, model: BatchEngine) -> None:
        """The GPU: the model's steps in real time, on a clock that absorbs the event loop's
        lateness (a late step makes the next one shorter) but never bursts to catch up."""
        loop = asyncio.get_running_loop()
        clock = loop.time()
        while True:
            step = model.begin()
            if step is None:
                self.model_wake.clear()
                await self.model_wake.wait()
                clock = loop.time()
                continue
            clock = max(clock + step.duration, loop.time() - step.duration)
            await asyncio.sleep(clock - loop.time())
            for chunk in model.end(step):
                self.model_chunks[chunk.rid].put_nowait(chunk)

    def model_state(self) -> dict[str, object]:
        if self.model is None:
            return {}
        return {
            "frames_made": self.model.frames_made,
            "busy_s": self.model.busy_s,
            "running": len(self.model.running),
            "waiting": len(self.model.waiting),
        }

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.model_state(),
                "argv": self.argv,
                "startup_timeout": os.environ.get("SGLANG_OMNI_STARTUP_TIMEOUT"),
                "pid": os.getpid(),
                "stage_pid": self.stage.pid if self.stage else None,
                "active": self.active,
                "cancelled": self.cancelled,
                "completed": self.completed,
                "outcomes_answered": self.outcomes_answered,
                "speech_requests": len(self.requests),
            }
        )

    async def raw_requests(self, request: web.Request) -> web.Response:
        # Apart from `state`: bodies may carry megabyte-sized references, too much to poll.
        return web.json_response(self.requests)

    async def outcome(self, request: web.Request) -> web.StreamResponse:
        try:
            if self.mode == "huge_outcome":
                return await _huge_json(request, 200)
            found = self.outcomes.get(request.match_info["request_id"])
            if found is None:
                return web.json_response({"detail": "No finished speech stream"}, status=404)
            return web.json_response(found)
        finally:  # sent whole, or cut off by the client
            self.outcomes_answered += 1

    async def speech(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        self.requests.append(raw)
        try:
            req = self.validate(raw)
        except Refused as e:
            return _error(e.status, e.message, e.param)
        if self.mode == "reject":
            return _error(400, "rejected by the stand-in on command")
        if self.mode == "error":
            return _error(500, "failed by the stand-in on command")
        if self.mode == "huge_error":  # a hostile upstream: a 400 whose detail never ends
            return await _huge_json(request, 400)
        if self.mode == "crash":
            os._exit(3)
        frames = max(1, FRAMES_PER_WORD * len(req.input.split()))
        finish = "stop"
        if req.max_new_tokens is not None and frames > req.max_new_tokens:
            frames, finish = req.max_new_tokens, "length"
        self.active += 1
        try:
            if self.mode in ("stall", "wedge"):
                await asyncio.sleep(3600)
            if self.slots is None:
                return await self.stream(request, frames, finish, len(req.input))
            async with self.slots:
                return await self.stream(request, frames, finish, len(req.input))
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def paced(self, frames: int) -> AsyncIterator[int]:
        """Frames per chunk, by the strides, `frame_s` apart per frame."""
        sent, step = 0, self.stride
        while sent < frames:
            n = min(step, frames - sent)
            if self.frame_s:
                await asyncio.sleep(self.frame_s * n)
            sent, step = sent + n, self.followup
            yield n

    async def modelled(self, model: BatchEngine, frames: int) -> AsyncIterator[int]:
        """Frames per chunk as the timing model makes them; leaving aborts the request."""
        rid = uuid.uuid4().hex
        chunks: asyncio.Queue[Chunk] = asyncio.Queue()
        self.model_chunks[rid] = chunks
        model.submit(rid, frames)
        self.model_wake.set()
        try:
            while True:
                chunk = await chunks.get()
                yield chunk.frames
                if chunk.last:
                    return
        finally:
            model.abort(rid)
            del self.model_chunks[rid]

    async def stream(
        self, request: web.Request, frames: int, finish: str, value: int
    ) -> web.StreamResponse:
        request_id = f"speech-{uuid.uuid4()}"
        response = web.StreamResponse(
            headers={
                "X-Request-Id": request_id,
                "X-Sample-Rate": str(self.rate),
                "X-Channels": "1",
                "X-Bit-Depth": "16",
                "X-SGLang-Omni-Speech-Id": request_id,
            }
        )
        response.content_type = "audio/pcm"
        value %= 32768
        sent, chunks, tail = 0, 0, 0
        source = self.modelled(self.model, frames) if self.model else self.paced(frames)
        async with contextlib.aclosing(source):
            async for n in source:
                sent += n
                last = sent == frames
                samples = n * FRAME + tail - (0 if last else CROSSFADE)
                tail = 0 if last else CROSSFADE
                chunk = np.full(samples, value, dtype="<i2").tobytes()
                if not response.prepared:  # headers only once the first audio exists
                    await response.prepare(request)
                    if self.stamp:
                        chunk = struct.pack("<q", time.perf_counter_ns()) + chunk[8:]
                await response.write(chunk)
                chunks += 1
                if chunks == self.after_chunks and not last:
                    if self.mode == "fail_after":
                        assert request.transport is not None
                        request.transport.abort()  # no final chunk: the client sees a broken body
                        raise ConnectionResetError("failed mid-stream on command")
                    if self.mode == "stall_after":
                        await asyncio.sleep(3600)
        await response.write_eof()
        self.outcomes[request_id] = {"request_id": request_id, "finish_reason": finish}
        self.completed += 1
        return response

    def validate(self, raw: str) -> CreateSpeechRequest:
        try:
            payload = json.loads(raw)
        except ValueError as e:
            raise Refused(400, "speech request body must be valid JSON") from e
        if not isinstance(payload, dict):
            raise Refused(400, "speech request body must be a JSON object")
        _check_types(payload)
        try:
            req = CreateSpeechRequest.model_validate(payload)
        except ValidationError as e:
            raise Refused(400, f"invalid CreateSpeechRequest: {e}") from e
        if not req.input.strip():
            raise Refused(400, "input must be a non-empty string", "input")
        if len(req.input) > MAX_SPEECH_INPUT_CHARS:
            limit = MAX_SPEECH_INPUT_CHARS
            raise Refused(400, f"input must be at most {limit} characters", "input")
        if req.stream and req.response_format != "pcm":
            raise Refused(400, "stream=true requires response_format='pcm'", "response_format")
        if req.max_new_tokens is not None and req.max_new_tokens <= 0:
            raise Refused(400, "max_new_tokens must be greater than 0", "max_new_tokens")
        if req.seed is not None and req.seed < 0:
            raise Refused(400, "seed must be greater than or equal to 0", "seed")
        for reference in req.references or []:
            self.check_reference(reference.data, reference.media_type, reference.audio_path)
        if req.top_k is not None and req.top_k != -1 and not 1 <= req.top_k <= 30:
            raise Refused(500, f"S2-Pro top_k must be -1 or between 1 and 30; got {req.top_k}")
        return req

    def check_reference(self, data: str | None, media_type: str | None, path: str | None) -> None:
        if data is not None:
            media_type = media_type or "audio/wav"
            param = "references.data"
            if not media_type.startswith("audio/"):
                raise Refused(400, f"{param} data URL must use an audio media type", param)
            if len(data.rstrip("=")) * 3 // 4 > MAX_REFERENCE_AUDIO_BYTES:
                raise Refused(400, f"{param} must be at most {MAX_REFERENCE_AUDIO_BYTES} bytes")
            try:
                audio = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as e:
                raise Refused(400, f"{param} data URL must include valid base64 media data") from e
            try:
                sf.info(io.BytesIO(audio))
            except (sf.LibsndfileError, RuntimeError) as e:
                raise Refused(500, f"could not decode the reference audio: {e}") from e
        elif path is not None:
            param = "references.audio_path"
            try:
                file = resolve_local_file(path, allowed_local_media_path=self.media_dir)
            except MediaPolicyError as e:
                raise Refused(400, str(e), param) from e
            if not file.is_file():
                raise Refused(400, f"{param} file does not exist: {file}", param)
            if file.stat().st_size > MAX_REFERENCE_AUDIO_BYTES:
                raise Refused(400, f"{param} must be at most {MAX_REFERENCE_AUDIO_BYTES} bytes")


def _check_types(payload: dict[str, object]) -> None:
    """`SpeechRequestValidator.validate_raw_payload`: JSON types before pydantic coerces them."""

    def bad(name: str, kind: str) -> Refused:
        return Refused(400, f"{name} must be {kind}", name)

    for name, value in payload.items():
        if value is None:
            continue
        if name in _STRINGS and not isinstance(value, str):
            raise bad(name, "a string")
        if name in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad(name, "an integer")
        if name in _NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad(name, "a number")
        if name == "stream" and not isinstance(value, bool):
            raise bad(name, "a boolean")


HUGE_BYTES = 200 * 1024 * 1024


async def _huge_json(request: web.Request, status: int) -> web.StreamResponse:
    """`{"detail": "xxx...` 200 MB long, streamed (the stand-in never holds it)."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"detail": "')
    block = b"x" * (1024 * 1024)
    for _ in range(HUGE_BYTES // len(block)):
        await response.write(block)
    await response.write(b'"}')
    await response.write_eof()
    return response


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


def _refuse_conflicts(extra: list[str]) -> None:
    """`ConfigPatchSet.require_no_conflicts`: one dotted flag, two values, no launch."""
    seen: dict[str, str] = {}
    for key, value in zip(extra[::2], extra[1::2], strict=False):
        if key.startswith("--") and "." in key and seen.setdefault(key, value) != value:
            sys.exit(f"{key[2:]} is set twice at the same precedence: {seen[key]!r}, {value!r}")


def main() -> None:
    if os.environ.get("SGLANG_OMNI_STRICT_PORT") != "1":
        sys.exit("stand-in: SGLANG_OMNI_STRICT_PORT=1 is required")
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["serve"])
    p.add_argument("--model-path", required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allowed-local-media-path", dest="media")
    args, extra = p.parse_known_args()
    _refuse_conflicts(extra)
    flags = dict(zip(extra[::2], extra[1::2], strict=False))
    args.stride = int(flags.get("--vocoder.factory.stream_stride", 40))
    args.followup = int(flags.get("--vocoder.factory.stream_followup_stride", 45))
    if args.media and not Path(args.media).is_dir():
        sys.exit(f"allowed local media path must be a directory: {args.media}")
    starting = float(os.environ.get("STANDIN_STARTING_S", "0.3"))
    if starting > float(os.environ.get("SGLANG_OMNI_STARTUP_TIMEOUT", "600")):
        time.sleep(float(os.environ.get("SGLANG_OMNI_STARTUP_TIMEOUT", "600")))
        sys.exit("stand-in: stages did not start within SGLANG_OMNI_STARTUP_TIMEOUT")
    standin = StandIn(args, sys.argv[1:])
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
