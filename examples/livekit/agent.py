"""A LiveKit voice agent that speaks with a self-hosted S2-Pro persona.

    s2-sidecar serve --personas examples/personas/personas.toml    # another terminal
    export LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...              # STT and LLM: LiveKit Inference
    python agent.py console      # talk in this terminal, no LiveKit server
    python agent.py dev          # serve rooms of your project (set LIVEKIT_URL too)

Settings (environment): S2_SIDECAR_URL, S2_SIDECAR_API_KEY, S2_PERSONA (default "joe", the
persona the command above registers), S2_STT_MODEL, S2_LLM_MODEL.
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, inference
from livekit.plugins import s2

from s2_plugin.protocol import DEFAULT_URL

INSTRUCTIONS = "You are a friendly voice assistant. Answer in one to three short spoken sentences."

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    voice = s2.TTS(
        persona=os.environ.get("S2_PERSONA", "joe"),
        base_url=os.environ.get("S2_SIDECAR_URL", DEFAULT_URL),
        api_key=os.environ.get("S2_SIDECAR_API_KEY"),
    )
    session = AgentSession(
        stt=inference.STT(os.environ.get("S2_STT_MODEL", "deepgram/nova-3")),
        llm=inference.LLM(os.environ.get("S2_LLM_MODEL", "openai/gpt-4.1-mini")),
        tts=voice,
        vad=inference.VAD(),
        # Transcripts and chat history from what was spoken: the words, not the [cues].
        use_tts_aligned_transcript=True,
    )
    # The TTS's markup hook teaches the LLM its tags (LiveKit 1.8.9 injects it by itself only
    # for inference.TTS, not for a plugin that streams natively).
    instructions = f"{INSTRUCTIONS}\n\n{voice.markup.llm_instructions()}"
    await session.start(agent=Agent(instructions=instructions), room=ctx.room)
    await session.generate_reply(instructions="Greet the user in one sentence.")


if __name__ == "__main__":
    cli.run_app(server)
