"""A voice bot in the browser that speaks with a self-hosted S2 voice.

Speech-to-text and the LLM come from their providers, with keys from the environment, as in
Pipecat's own examples; the voice comes from the local sidecar. The persona is registered on
the sidecar when the pipeline starts (once: a second run finds it there).

    python3 -m venv .venv && . .venv/bin/activate     # from the repository root
    pip install -e '.[pipecat,server,preview]' 'pipecat-ai[runner,webrtc,deepgram,silero]'
    s2-sidecar serve
    DEEPGRAM_API_KEY=... OPENAI_API_KEY=... python examples/pipecat/local_bot.py

Then open http://localhost:7860/client and talk. S2_SIDECAR_URL and S2_SIDECAR_API_KEY choose the
sidecar; S2_PERSONAS names a personas TOML file (default: the example persona `joe`).
"""

from __future__ import annotations

import os
from pathlib import Path

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
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.workers.runner import WorkerRunner
from pipecat_s2 import S2TTSService

from s2_plugin.personas import load_personas
from s2_plugin.prompt import tag_guide
from s2_plugin.protocol import DEFAULT_URL

PERSONAS = Path(__file__).resolve().parents[1] / "personas" / "personas.toml"
SYSTEM_PROMPT = (
    "You are a helpful assistant in a voice call. Keep answers short and conversational.\n\n"
    + tag_guide()
)

transport_params = {
    "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
}


async def run_bot(transport: BaseTransport, runner_args: RunnerArguments) -> None:
    stt = DeepgramSTTService(api_key=os.environ["DEEPGRAM_API_KEY"])
    llm = OpenAILLMService(api_key=os.environ["OPENAI_API_KEY"])
    persona = load_personas(Path(os.environ.get("S2_PERSONAS", PERSONAS)))[0]
    tts = S2TTSService(
        base_url=os.environ.get("S2_SIDECAR_URL", DEFAULT_URL),
        api_key=os.environ.get("S2_SIDECAR_API_KEY"),
        persona=persona,
        settings=S2TTSService.Settings(temperature=0.7),
    )

    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            aggregators.user(),
            llm,
            tts,
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        idle_timeout_secs=runner_args.pipeline_idle_timeout_secs,
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport: BaseTransport, client: object) -> None:
        logger.info("Client connected")
        context.add_message({"role": "system", "content": "Say hello and introduce yourself."})
        await worker.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: BaseTransport, client: object) -> None:
        logger.info("Client disconnected")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


async def bot(runner_args: RunnerArguments) -> None:
    """Entry point of Pipecat's development runner."""
    transport = await create_transport(runner_args, transport_params)
    await run_bot(transport, runner_args)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
