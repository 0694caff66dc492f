"""Segmenter benchmark: a simulated LLM token stream through ours, Pipecat's and LiveKit's.

Tokens of 1-6 characters, the space attached to the next word as LLM tokenizers do, arriving at
50 tokens/s. Simulated time comes from token indexes (token k arrives at k * 20 ms), so the run
is fast and repeatable; only our CPU time is measured for real.

Prints, per reply: the token that completes the first segment's text, the token at which each
segmenter releases its first segment (simulated ms), our CPU time for that push, characters
received but not yet released at that moment, and our per-fragment cost (mean, p99).

Run: python bench/bench_segment.py
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import time

from livekit.agents.tokenize import blingfire
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from s2_plugin.segment import Segmenter

TOKENS_PER_S = 50
REPEATS = 300  # passes over every reply for the CPU statistics

REPLIES = {
    "long first sentence": (
        "Well, honestly, there are a few ways we could approach this, and the best one really "
        "depends on your budget, your timeline, and how much risk you are willing to take on. "
        "[thoughtful] Let me walk you through them one by one. First, Dr. Smith suggested a "
        "phased rollout, e.g. one region at a time, starting at 9 a.m. on Monday. That keeps "
        "the cost near 3.5 million. [laugh] Not cheap, I know!"
    ),
    "short sentences": (
        "Sure! I can help with that. [cheerful] Your order shipped on Tuesday and should arrive "
        "by Friday. Is there anything else you need? [whisper] I won't tell anyone."
    ),
    "speakers and tags": (
        "<|speaker:0|> Welcome back to the show, everyone. Today we talk about sleep. "
        "<|speaker:1|> [excited] Thanks for having me! Sleep is, in my view, the most "
        "underrated habit in the U.S. and Europe. <|speaker:0|> Why is that? [sigh] "
        "<|speaker:1|> People trade it for screen time, mostly. [laugh]"
    ),
}


def tokenize(text: str, rng: random.Random) -> list[str]:
    """LLM-like tokens: each word with its leading space, cut into pieces of 1-6 characters."""
    tokens = []
    for piece in re.findall(r"\s*[\w']+|\s*[^\w\s]+|\s+", text):
        while piece:
            n = rng.randint(1, 6)
            tokens.append(piece[:n])
            piece = piece[n:]
    return tokens


def completing_token(tokens: list[str], text: str, segment: str) -> int:
    """Index of the token that delivers the last character of `segment` (the first one)."""
    end = text.index(segment) + len(segment)
    received = 0
    for k, tok in enumerate(tokens):
        received += len(tok)
        if received >= end:
            return k
    raise AssertionError("segment not in text")


def ours(tokens: list[str]) -> tuple[int, str, float, list[float]]:
    """First-release token, its segment, the CPU µs of that push, and µs per push."""
    seg = Segmenter()
    first: tuple[int, str, float] | None = None
    costs = []
    for k, tok in enumerate(tokens):
        t0 = time.perf_counter_ns()
        out = seg.push(tok)
        cost = (time.perf_counter_ns() - t0) / 1000
        costs.append(cost)
        if out and first is None:
            first = (k, out[0].text, cost)
    t0 = time.perf_counter_ns()
    seg.flush()
    costs.append((time.perf_counter_ns() - t0) / 1000)
    assert first is not None
    return (*first, costs)


async def pipecat_first(tokens: list[str]) -> tuple[int, str]:
    agg = SimpleTextAggregator()
    for k, tok in enumerate(tokens):
        async for aggregation in agg.aggregate(tok):
            return k, aggregation.text
    final = await agg.flush()
    return len(tokens), final.text if final else ""


async def livekit_first(tokens: list[str]) -> tuple[int, str]:
    # LiveKit's stream needs a running event loop.
    stream = blingfire.SentenceTokenizer().stream()
    for k, tok in enumerate(tokens):
        stream.push_text(tok)
        if not stream._event_ch.empty():  # what the TTS stream would read next
            return k, stream._event_ch.recv_nowait().token
    stream.end_input()
    return len(tokens), stream._event_ch.recv_nowait().token


def ms(k: int) -> float:
    return k * 1000 / TOKENS_PER_S


async def main() -> None:
    rng = random.Random(7)
    all_costs: list[float] = []
    for name, text in REPLIES.items():
        tokens = tokenize(text, rng)
        k_ours, segment, cpu, _ = ours(tokens)
        for _ in range(REPEATS):
            all_costs += ours(tokens)[3]
        k_done = completing_token(tokens, text, segment)
        k_pc, pc_text = await pipecat_first(tokens)
        k_lk, lk_text = await livekit_first(tokens)
        held = len("".join(tokens[: k_ours + 1])) - (text.index(segment) + len(segment))
        print(f"== {name}: {len(text)} chars, {len(tokens)} tokens")
        print(f"  ours     first segment at token {k_ours} ({ms(k_ours):.0f} ms): {segment!r}")
        print(
            f"           completed by token {k_done} ({ms(k_done):.0f} ms); released "
            f"{ms(k_ours - k_done):.0f} ms later by the stream, {cpu:.1f} µs of CPU in that push;"
            f" {held} characters held back"
        )
        print(f"  pipecat  first segment at token {k_pc} ({ms(k_pc):.0f} ms): {pc_text!r}")
        print(f"  livekit  first segment at token {k_lk} ({ms(k_lk):.0f} ms): {lk_text!r}")
        print(
            f"  first-release time vs ours: pipecat {ms(k_pc) / ms(k_ours):.1f}x, "
            f"livekit {ms(k_lk) / ms(k_ours):.1f}x"
        )
    all_costs.sort()
    p99 = all_costs[int(len(all_costs) * 0.99)]
    print(
        f"== ours per fragment over {len(all_costs)} pushes: mean "
        f"{statistics.fmean(all_costs):.2f} µs, p99 {p99:.2f} µs, max {all_costs[-1]:.1f} µs"
    )


if __name__ == "__main__":
    asyncio.run(main())
