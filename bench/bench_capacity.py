"""Calls per GPU: the call load (s2_sidecar.calls) on a timing model of one H200.

The SGLang-Omni stand-in serves by the model of tests/support/profiles/h200.toml (continuous
batching, step time growing with the batch, calibrated to the published figures, which this
prints first); a real sidecar process on the `sglang_omni` engine reaches it by
`--sglang-url`; N simulated calls (LLM at 50 tokens/s, replies of 1-6 sentences, user turns of
1-6 s, barge-ins on a quarter of replies) go through the plugin's `SpeechStream`.

For each scheduling (the sidecar's arrival order; the same with deadline mode's budget of
generations; deadline order) it prints first audio p50/p95, the underrun share and the audio
never played at 8/16/32/48 calls, then finds the most calls that meet the target (first audio
p95 <= 300 ms from a reply's first request, >= 99.9% of played audio without underrun, nothing
refused) by bisection over 1..16. Everything runs in real time, so each level lasts `--seconds`
(default 30 s of conversation per call, 2-3 replies each: few replies at small N, so a level's
p95 is noisy); the whole run takes about 20 minutes. On a 2-core machine shared with other work
the clients, sidecar and stand-in compete for the CPU, which shows as extra first-audio latency
and gaps: read the numbers as a lower bound of the capacity.

The last line: `capacity: N calls with deadline scheduling, M without`.

Run: .venv/bin/python bench/bench_capacity.py [--levels 8,16,32,48] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from s2_sidecar.calls import CallLoad, LoadReport, render, run_calls  # noqa: E402
from support.s2_timing import (  # noqa: E402
    FRAME_S,
    H200,
    benchmark_frames,
    closed_loop,
    load_profile,
)
from support.sidecar import PERSONAS_TOML, SidecarProcess, free_port  # noqa: E402

from s2_plugin.client import S2Client  # noqa: E402

STANDIN = ROOT / "tests" / "support" / "sglang_standin.py"
STRIDE, FOLLOWUP = 8, 16
"""The sidecar's launch strides (`engines/sglang_omni.py` `Launch`)."""
MODES = ("arrival", "arrival+budget", "deadline")
"""The sidecar as it was (arrival order, no budget of its own), the same with deadline mode's
budget (to tell the budget's share from the order's), and deadline scheduling."""
BUDGET = 5
"""Generations at once in deadline mode (`--max-concurrency`): see docs/capacity.md."""


def model_check(profile_path: Path) -> None:
    p = load_profile(profile_path)
    frames = benchmark_frames(p)
    one = closed_loop(p, 1, frames, STRIDE, FOLLOWUP, requests=5)
    print(f"model {profile_path.name}: published vs model (within 20% required)")
    print(f"  frames/s, one stream    {p.published['frames_per_s']:6.1f}  {1 / p.step_s:6.1f}")
    print(f"  RTF, one stream         {p.published['rtf']:6.2f}  {p.step_s / FRAME_S:6.2f}")
    ttfa = p.published["ttfa_s"]
    print(f"  first audio, stride {STRIDE}   {ttfa:6.3f}  {one.first_chunk_s:6.3f} s")
    for clients, published in p.published["throughput"].items():
        got = closed_loop(p, int(clients), frames, STRIDE, FOLLOWUP).requests_per_s
        print(f"  req/s at {clients:>2s} concurrent  {published:6.2f}  {got:6.2f}")


@contextmanager
def standin(profile: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "SGLANG_OMNI_STRICT_PORT": "1", "STANDIN_STARTING_S": "0"}
    cmd = [
        sys.executable, str(STANDIN), "serve", "--model-path", "fishaudio/s2-pro",
        "--host", "127.0.0.1", "--port", str(port),
        "--vocoder.factory.stream_stride", str(STRIDE),
        "--vocoder.factory.stream_followup_stride", str(FOLLOWUP),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_configure(url, profile))
        yield url
    finally:
        proc.terminate()
        proc.wait()


async def _configure(url: str, profile: Path) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        async with s.post(url + "/standin/control", json={"profile": str(profile)}) as r:
            r.raise_for_status()


async def _state(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/standin/state") as r:
        return dict(await r.json())


def level(sidecar: SidecarProcess, upstream: str, calls: int, seconds: float) -> LoadReport:
    async def go() -> tuple[LoadReport, float]:
        before = await _state(upstream)
        async with S2Client(sidecar.url, read_timeout=30) as client:
            report = await run_calls(client, CallLoad(calls=calls, seconds=seconds, voice="joe"))
        after = await _state(upstream)
        frames = after["frames_made"] - before["frames_made"]
        gpu_per_audio_s = (after["busy_s"] - before["busy_s"]) / (frames * FRAME_S or 1)
        return report, gpu_per_audio_s

    report, gpu = asyncio.run(go())
    print(f"  {render(report)}  GPU-s wasted {report.wasted_s_per_call * gpu:.2f}/call", flush=True)
    for error in report.error_samples:
        print(f"    error: {error}")
    return report


def capacity(sidecar: SidecarProcess, upstream: str, seconds: float, top: int) -> int:
    """The most calls that meet the target, by bisection over 1..top."""
    good, bad = 0, top + 1
    while bad - good > 1:
        n = (good + bad) // 2
        if level(sidecar, upstream, n, seconds).meets():
            good = n
        else:
            bad = n
    return good


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--profile", type=Path, default=H200)
    p.add_argument("--levels", default="8,16,32,48")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--top", type=int, default=16, help="largest call count the search tries")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--budget", type=int, default=BUDGET, help="deadline mode's generations")
    p.add_argument("--lead", type=float, default=None, help="deadline mode's --lead")
    args = p.parse_args()
    model_check(args.profile)
    found: dict[str, int] = {}
    with standin(args.profile) as upstream, tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            flags = ["--sglang-url", upstream, "--scheduling", mode.split("+")[0]]
            if mode != "arrival":
                flags += ["--max-concurrency", str(args.budget)]
            if mode == "deadline" and args.lead is not None:
                flags += ["--lead", str(args.lead)]
            with SidecarProcess(
                Path(tmp) / mode, engine="sglang_omni", personas=PERSONAS_TOML, args=flags
            ) as sidecar:
                sidecar.wait_ready()
                print(f"\n{mode}: {' '.join(flags[2:])}, {args.seconds:.0f} s of talk per call")
                for n in [int(x) for x in args.levels.split(",") if x]:
                    level(sidecar, upstream, n, args.seconds)
                print(f"{mode}: capacity search")
                start = time.monotonic()
                found[mode] = capacity(sidecar, upstream, args.seconds, args.top)
                print(f"  {found[mode]} calls ({time.monotonic() - start:.0f} s)")
    with_ = found.get("deadline", 0)
    without = found.get("arrival", 0)
    print(f"capacity: {with_} calls with deadline scheduling, {without} without")


if __name__ == "__main__":
    main()
