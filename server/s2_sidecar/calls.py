"""A call load: N simulated voice-agent conversations at once, through the plugin's own stream.

Each call alternates a user turn (silence, 1-6 s) and an agent reply: an LLM writing 1-6
sentences at 50 tokens/s into a `SpeechStream` (the one both adapters use), whose audio a
simulated player plays in real time from its first chunk. On a share of replies the user barges
in and the reply is cut, as an agent does on an interruption. Per reply it records:

- first audio: from the reply's first request to its first audio (and from the LLM's first
  token, which adds the segmenter's wait for a clause);
- underruns: time the player had nothing to play between the first audio and the end;
- waste: audio that arrived but was never played because the user barged in;
- refusals (a 503) and other errors.

Used by `s2-sidecar bench --calls` against a real GPU and by `bench/bench_capacity.py` against
a timing model of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import numpy as np

from s2_plugin.audio import SAMPLE_RATE
from s2_plugin.client import S2Client, S2StatusError
from s2_plugin.protocol import DEFAULT_VOICE
from s2_plugin.stream import AudioChunk, SpeechOptions, SpeechStream

_TEXT = (
    "your order shipped this morning and should arrive on friday I can check the tracking "
    "number for you if the parcel is late we will send a replacement at no cost the refund "
    "goes back to the card you used it usually takes three to five business days please keep "
    "the receipt until then is there anything else I can help you with today"
)
_WORDS = _TEXT.split(" ")
TOKENS_PER_WORD = 1.3
"""English averages about 1.3 LLM tokens per word."""


@dataclass(frozen=True)
class CallLoad:
    calls: int
    seconds: float = 60.0
    """Each call starts replies until this long after its start (at least one; the last one
    finishes)."""
    tokens_per_s: float = 50.0
    sentences: tuple[int, int] = (1, 6)
    user_turn_s: tuple[float, float] = (1.0, 6.0)
    barge_in: float = 0.25
    """Share of replies the user interrupts, at a random point of the reply's audio."""
    voice: str = DEFAULT_VOICE
    seed: int = 0


@dataclass
class Reply:
    first_audio_s: float | None = None
    """From the first request to the first audio."""
    first_token_audio_s: float | None = None
    """From the LLM's first token to the first audio."""
    played_s: float = 0.0
    gap_s: float = 0.0
    wasted_s: float = 0.0
    barged: bool = False
    refused: bool = False
    error: str | None = None


@dataclass
class LoadReport:
    calls: int
    replies: int
    refused: int
    errors: int
    first_audio_p50_ms: float | None
    first_audio_p95_ms: float | None
    first_token_audio_p50_ms: float | None
    first_token_audio_p95_ms: float | None
    underrun_share: float
    """Underrun time over played audio time: the share of played audio lost to gaps."""
    played_s: float
    wasted_s_per_call: float
    """Seconds of audio generated, sent and never played (barge-ins), per call."""
    error_samples: list[str] = field(default_factory=list)

    def meets(self, first_audio_p95_ms: float = 300.0, without_underrun: float = 0.999) -> bool:
        """Whether every call was served at this target: no refusals or errors, first audio
        p95 within `first_audio_p95_ms`, and the played audio without underruns."""
        return (
            not self.refused
            and not self.errors
            and self.first_audio_p95_ms is not None
            and self.first_audio_p95_ms <= first_audio_p95_ms
            and 1 - self.underrun_share >= without_underrun
        )


class _Player:
    """Plays a reply's audio in real time from its first chunk, counting gaps."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.end = 0.0  # when the audio received so far finishes playing
        self.received_s = 0.0
        self.gap_s = 0.0

    def receive(self, seconds: float) -> None:
        now = time.perf_counter()
        if not self.started.is_set():
            self.started.set()
            self.end = now
        elif now > self.end:
            self.gap_s += now - self.end
            self.end = now
        self.end += seconds
        self.received_s += seconds

    def unplayed_s(self) -> float:
        return max(0.0, self.end - time.perf_counter()) if self.started.is_set() else 0.0


def reply_text(rng: random.Random, sentences: int) -> str:
    """An agent reply: sentences of 6-18 words, some with a comma after the first few."""
    out = []
    for _ in range(sentences):
        words = rng.choices(_WORDS, k=rng.randint(6, 18))
        if len(words) > 8 and rng.random() < 0.5:
            words[rng.randint(3, 6)] += ","
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


async def _reply(client: S2Client, load: CallLoad, rng: random.Random) -> Reply:
    text = reply_text(rng, rng.randint(*load.sentences))
    words = text.split(" ")
    barge = rng.uniform(0.5, 0.28 * len(words)) if rng.random() < load.barge_in else None
    stream = SpeechStream(client, SpeechOptions(voice=load.voice), sample_rate=SAMPLE_RATE)
    player, out = _Player(), Reply()
    first_token = time.perf_counter()
    first_request: list[float] = []

    async def llm() -> None:
        try:
            for n, word in enumerate(words):
                stream.push_text(word if n == 0 else " " + word)
                if stream.segments and not first_request:
                    first_request.append(time.perf_counter())
                await asyncio.sleep(TOKENS_PER_WORD / load.tokens_per_s)
            stream.end_input()
        except RuntimeError:  # the stream was closed: a barge-in, or a request failed
            return
        if not first_request:
            first_request.append(time.perf_counter())

    async def play() -> None:
        async for event in stream:
            if isinstance(event, AudioChunk):
                if not player.started.is_set():
                    now = time.perf_counter()
                    out.first_audio_s = now - (first_request[0] if first_request else now)
                    out.first_token_audio_s = now - first_token
                player.receive(len(event.pcm) / 2 / SAMPLE_RATE)

    async def interrupt(after: float) -> None:
        await player.started.wait()
        await asyncio.sleep(after)
        out.wasted_s, out.barged = player.unplayed_s(), True
        await stream.aclose()

    writer, reader = asyncio.create_task(llm()), asyncio.create_task(play())
    cutter = asyncio.create_task(interrupt(barge)) if barge is not None else None
    try:
        await reader
        if not out.barged:
            await asyncio.sleep(player.unplayed_s())  # it plays out before the user speaks
    except S2StatusError as e:
        out.refused = e.status == 503
        out.error = None if out.refused else f"{e.status}: {e.message}"
    except Exception as e:  # a failed reply is counted, the call goes on
        out.error = f"{type(e).__name__}: {e}"
    finally:
        for task in (writer, cutter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await stream.aclose()
    out.gap_s = player.gap_s
    out.played_s = player.received_s - out.wasted_s
    return out


async def _call(client: S2Client, load: CallLoad, index: int) -> list[Reply]:
    rng = random.Random(load.seed * 100_003 + index)
    start = time.perf_counter()
    await asyncio.sleep(rng.uniform(0, load.user_turn_s[1]))  # calls don't start in step
    replies = [await _reply(client, load, rng)]
    while time.perf_counter() - start < load.seconds:
        await asyncio.sleep(rng.uniform(*load.user_turn_s))
        replies.append(await _reply(client, load, rng))
    return replies


async def run_calls(client: S2Client, load: CallLoad) -> LoadReport:
    """Run `load.calls` conversations at once against the client's sidecar."""
    per_call = await asyncio.gather(*(_call(client, load, n) for n in range(load.calls)))
    return summarize(load.calls, [r for replies in per_call for r in replies])


def summarize(calls: int, replies: list[Reply]) -> LoadReport:
    firsts = [r.first_audio_s * 1000 for r in replies if r.first_audio_s is not None]
    tokens = [r.first_token_audio_s * 1000 for r in replies if r.first_token_audio_s is not None]
    played = sum(r.played_s for r in replies)
    errors = [r.error for r in replies if r.error]
    return LoadReport(
        calls=calls,
        replies=len(replies),
        refused=sum(r.refused for r in replies),
        errors=len(errors),
        first_audio_p50_ms=_pct(firsts, 50),
        first_audio_p95_ms=_pct(firsts, 95),
        first_token_audio_p50_ms=_pct(tokens, 50),
        first_token_audio_p95_ms=_pct(tokens, 95),
        underrun_share=sum(r.gap_s for r in replies) / played if played else 0.0,
        played_s=played,
        wasted_s_per_call=sum(r.wasted_s for r in replies) / calls if calls else 0.0,
        error_samples=errors[:3],
    )


def render(report: LoadReport) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    return (
        f"{report.calls:5d} calls  {report.replies:4d} replies  "
        f"first audio p50/p95 {ms(report.first_audio_p50_ms)}/{ms(report.first_audio_p95_ms)} ms "
        f"(from first token {ms(report.first_token_audio_p50_ms)}/"
        f"{ms(report.first_token_audio_p95_ms)})  underrun {report.underrun_share:.2%}  "
        f"refused {report.refused}  errors {report.errors}  "
        f"unplayed {report.wasted_s_per_call:.1f} s/call"
    )


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
