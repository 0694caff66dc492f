"""Cast benchmark: first audio of a reply that switches speaker, the prompt each choice costs
S2, and narration speed on the preview.

1. First audio (preview sidecar, `SpeechStream`, the reply pushed whole): a single-persona
   reply; a reply whose first sentence switches to speaker 1, each segment sent as a request
   for its speaker's persona (the adapters' choice); the same reply as cast requests.
2. S2 prompt size per segment for the test cast (no GPU here, so counted, not timed): the
   reference frames and text tokens of one persona against the cast's combined reference.
3. Narration: a three-speaker script of several minutes (the tests narrate a short one)
   through `s2_plugin.script.narrate`: seconds of audio per second of wall time, then per
   part the voice of each turn by pitch and the words (pocketsphinx, pitch shift undone).

Run: .venv/bin/python bench/bench_cast.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "server")]

from s2_sidecar import cast  # noqa: E402
from s2_sidecar.clips import pitch_hz  # noqa: E402
from s2_sidecar.store import PersonaStore  # noqa: E402
from support.cast import CAST, plain, turns_heard, write_personas  # noqa: E402
from support.sidecar import SidecarProcess  # noqa: E402
from support.speech import transcribe, wer  # noqa: E402

from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.personas import load_personas  # noqa: E402
from s2_plugin.protocol import SAMPLE_RATE  # noqa: E402
from s2_plugin.script import narrate, parse, parts  # noqa: E402
from s2_plugin.stream import AudioChunk, SpeechOptions, SpeechStream  # noqa: E402

SINGLE = "Good evening, and welcome back. Tonight we talk about the weather."
SWITCH = "Good evening, <|speaker:1|> and welcome back. Tonight we talk about the weather."
RUNS = 8
_LINES = [
    "Good evening, and welcome to our little story about the sea and the people on it.",
    "Thank you. I have waited all week to tell it. The boat left the harbour at dawn.",
    "The water was calm, and the sky was grey and quiet above the old grey town.",
    "And then, without any warning at all, the wind began to rise from the west.",
    "We pulled the sails down as fast as we could, and we held on to the ropes.",
    "By noon the storm had passed, and the sun came out again over the green water.",
]


def story(rounds: int) -> str:
    names = [n.upper() for n in CAST]
    return "\n".join(
        f"{names[i % 3]}: {_LINES[(i + r) % len(_LINES)]}"
        for r in range(rounds)
        for i in range(len(_LINES))
    )


async def first_audio(client: S2Client, text: str, options: SpeechOptions) -> float:
    stream = SpeechStream(client, options)
    start = time.perf_counter()
    stream.push_text(text)
    stream.end_input()
    first = 0.0
    async for event in stream:
        if isinstance(event, AudioChunk) and not first:
            first = time.perf_counter() - start
    return first * 1000


async def bench_first_audio(client: S2Client) -> None:
    cases = [
        ("single persona, no switch", SINGLE, SpeechOptions(voice="ava")),
        ("switch in sentence 1, per-persona requests", SWITCH, SpeechOptions(cast=tuple(CAST))),
        (
            "switch in sentence 1, cast requests",
            SWITCH,
            SpeechOptions(cast=tuple(CAST), cast_requests=True),
        ),
    ]
    await first_audio(client, SINGLE, cases[0][2])  # warm up
    print(f"first audio on the preview, {RUNS} replies each (median, min-max ms):")
    for label, text, options in cases:
        times = [await first_audio(client, text, options) for _ in range(RUNS)]
        print(f"  {label:45s} {statistics.median(times):6.0f}  ({min(times):.0f}-{max(times):.0f})")


def bench_prompt(tmp: Path, toml: Path) -> None:
    store = PersonaStore(tmp / "prompt-store")
    store.load()
    for p in load_personas(toml):
        store.register(p.name, p.clip_bytes(), p.transcript)
    print("S2 prompt per segment (reference frames + text tokens, estimated as the sidecar does):")
    for names in (["ava"], ["ben"], CAST[:2], CAST):
        members = cast.members(store, names)
        frames = cast.reference_frames(members)
        text = cast.PROMPT_TEMPLATE_TOKENS + cast.text_tokens(cast.transcript(members))
        print(f"  {'+'.join(names):12s} {frames:5d} frames + {text:4d} tokens = {frames + text}")


async def bench_narration(client: S2Client) -> None:
    line = "The water was calm, and the sky was grey and quiet."
    hz = {name: pitch_hz(await client.synthesize(line, voice=name)) or 0.0 for name in CAST}
    script = story(rounds=8)
    planned = parts(parse(script, CAST))
    start = time.perf_counter()
    audio: dict[int, bytearray] = {}
    async for part, pcm in narrate(client, planned, CAST):
        audio.setdefault(part.index, bytearray()).extend(pcm)
    wall = time.perf_counter() - start
    seconds = sum(len(a) for a in audio.values()) / 2 / SAMPLE_RATE
    print(
        f"narration on the preview: {len(script.splitlines())} turns, {len(planned)} parts, "
        f"{seconds:.1f} s of audio in {wall:.1f} s: {seconds / wall:.2f} s of audio per second"
    )
    # The long story's checks, part by part: who speaks each turn (by pitch), and the words.
    right, said, meant = 0, [], []
    for part in planned:
        order = [CAST[t.speaker] for t in part.turns]
        heard = turns_heard(bytes(audio[part.index]), SAMPLE_RATE, hz, order)
        right += sum(name == want for (name, _), want in zip(heard, order, strict=True))
        for (name, pcm), turn in zip(heard, part.turns, strict=True):
            said.append(transcribe(plain(pcm, SAMPLE_RATE, name), SAMPLE_RATE))
            meant.append(turn.text)
    turns = sum(len(p.turns) for p in planned)
    print(
        f"  turns heard in their speaker's voice: {right}/{turns}; "
        f"word error rate {wer(' '.join(meant), ' '.join(said)):.2f}"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        toml = write_personas(tmp / "clips")
        bench_prompt(tmp, toml)
        with SidecarProcess(tmp / "store", personas=toml) as sidecar:
            async with S2Client(sidecar.url) as client:
                await bench_first_audio(client)
                await bench_narration(client)


if __name__ == "__main__":
    asyncio.run(main())
