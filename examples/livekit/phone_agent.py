"""An inbound phone agent for LiveKit SIP that speaks with a self-hosted S2-Pro persona.

Callers reach it through a SIP inbound trunk and a dispatch rule that sends each call to its
own room and dispatches this agent by name (set-up: README.md next to this file).

    s2-sidecar serve --personas examples/personas/personas.toml    # another terminal
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python phone_agent.py dev

Settings (environment): as for agent.py.
"""

from __future__ import annotations

import os

from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, inference
from livekit.plugins import s2

from s2_plugin.protocol import DEFAULT_URL

AGENT_NAME = "s2-phone-agent"
"""The dispatch rule's `roomConfig.agents[].agentName` must say the same."""

INSTRUCTIONS = (
    "You answer the phone for a small dental clinic. Speak in short sentences, one question "
    "at a time; spell nothing out, the caller only hears you."
)

server = AgentServer()


@server.rtc_session(agent_name=AGENT_NAME)
async def entrypoint(ctx: JobContext) -> None:
    # 24 kHz like any room track: LiveKit SIP turns it into the call's codec (see README).
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
        use_tts_aligned_transcript=True,
    )
    # The TTS's markup hook teaches the LLM its tags (LiveKit 1.8.9 injects it by itself only
    # for inference.TTS, not for a plugin that streams natively).
    instructions = f"{INSTRUCTIONS}\n\n{voice.markup.llm_instructions()}"
    await session.start(agent=Agent(instructions=instructions), room=ctx.room)
    caller = await ctx.wait_for_participant(kind=rtc.ParticipantKind.PARTICIPANT_KIND_SIP)
    number = caller.attributes.get("sip.phoneNumber", "an unknown number")
    await session.generate_reply(
        instructions=f"The caller is calling from {number}. Greet them and ask how you can help."
    )


if __name__ == "__main__":
    cli.run_app(server)
