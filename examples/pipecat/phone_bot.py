"""A Twilio phone bot that answers with an S2 voice: FastAPI websocket, 8 kHz mu-law.

Twilio calls the webhook `POST /`, which answers with TwiML that streams the call to the
websocket `/ws`; `TwilioFrameSerializer` turns its mu-law media into 8 kHz PCM and back. The
pipeline runs at 8 kHz in and out, so `S2TTSService` resamples S2's 44.1 kHz audio once,
straight to the phone's rate.

    python3 -m venv .venv && . .venv/bin/activate     # from the repository root
    pip install -e '.[pipecat,server,preview]' uvicorn 'pipecat-ai[deepgram,silero]'
    s2-sidecar serve --personas examples/personas/personas.toml
    DEEPGRAM_API_KEY=... OPENAI_API_KEY=... python examples/pipecat/phone_bot.py

Expose port 8765 over HTTPS (e.g. `ngrok http 8765`) and set it as the voice webhook of a
Twilio number. TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN let the bot hang up at the end.
S2_SIDECAR_URL, S2_SIDECAR_API_KEY and S2_PERSONA (default `joe`) choose the sidecar and the voice.

`create_app()` takes the speech-to-text and LLM services from a factory, so a test can run
the bot with a scripted LLM and no keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.utils.text.transforms.voice_formatter import VoiceFormatter
from pipecat.workers.runner import WorkerRunner
from pipecat_s2 import S2TTSService

from s2_plugin.prompt import tag_guide
from s2_plugin.protocol import DEFAULT_URL

PHONE_RATE = 8000
SYSTEM_PROMPT = (
    "You are a friendly receptionist on a phone call. Answer in one or two short sentences. "
    "Start by greeting the caller.\n\n" + tag_guide()
)

Services = tuple[FrameProcessor | None, FrameProcessor]
"""Speech-to-text (None for none) and the LLM."""


def keyed_services() -> Services:
    """Deepgram speech-to-text and an OpenAI LLM, with keys from the environment."""
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService

    stt = DeepgramSTTService(api_key=os.environ["DEEPGRAM_API_KEY"])
    llm = OpenAILLMService(api_key=os.environ["OPENAI_API_KEY"])
    return stt, llm


def create_app(
    services: Callable[[], Services] = keyed_services,
    *,
    s2_url: str | None = None,
    persona: str | None = None,
) -> FastAPI:
    """The bot's web app: the Twilio webhook and the media-stream websocket.

    Args:
        services: Makes the speech-to-text service and the LLM for each call.
        s2_url: The sidecar; S2_SIDECAR_URL or the local default when None.
        persona: The voice; S2_PERSONA or `joe` when None.
    """
    app = FastAPI()

    @app.post("/")
    async def twiml(request: Request) -> Response:
        stream_url = f"wss://{request.url.hostname}/ws"
        xml = f'<Response><Connect><Stream url="{stream_url}"/></Connect></Response>'
        return Response(content=xml, media_type="application/xml")

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        stt, llm = services()
        tts = S2TTSService(
            base_url=s2_url or os.environ.get("S2_SIDECAR_URL", DEFAULT_URL),
            persona=persona or os.environ.get("S2_PERSONA", "joe"),
            api_key=os.environ.get("S2_SIDECAR_API_KEY"),
            # Prices, phone numbers, e-mail and numbers in words, per segment and tag-safe
            # (docs/pronunciation.md); add S2TTSService.pronunciation_transform_ipa last.
            text_transforms=[("*", VoiceFormatter(expand_numbers=True, number_digit_cutoff=9999))],
        )
        await run_call(websocket, stt, llm, tts)

    return app


async def run_call(
    websocket: WebSocket, stt: FrameProcessor | None, llm: FrameProcessor, tts: S2TTSService
) -> None:
    """Run one call until the caller hangs up."""
    _, call = await parse_telephony_websocket(websocket)
    account_sid = os.environ.get("TWILIO_ACCOUNT_SID")
    auth_token = os.environ.get("TWILIO_AUTH_TOKEN")
    serializer = TwilioFrameSerializer(
        stream_sid=call["stream_id"],
        call_sid=call["call_id"],
        account_sid=account_sid,
        auth_token=auth_token,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=bool(account_sid and auth_token)),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    processors = [
        transport.input(),
        stt,
        aggregators.user(),
        llm,
        tts,
        transport.output(),
        aggregators.assistant(),
    ]
    worker = PipelineWorker(
        Pipeline([p for p in processors if p is not None]),
        params=PipelineParams(
            audio_in_sample_rate=PHONE_RATE,
            audio_out_sample_rate=PHONE_RATE,
            enable_metrics=True,
            enable_usage_metrics=True,
        ),
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport: FastAPIWebsocketTransport, client: object) -> None:
        logger.info(f"Call {call['call_id']} connected")
        await worker.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: FastAPIWebsocketTransport, client: object) -> None:
        logger.info(f"Call {call['call_id']} ended")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="0.0.0.0", port=8765)
