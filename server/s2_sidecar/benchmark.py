"""`s2-sidecar bench`: time to first audio, real-time factor and a concurrency sweep.

Works against a running sidecar (the persona is registered through its API) or a bare
SGLang-Omni 0.1.9 server or router (the reference travels inline, as `references[].data`).
`--calls` adds the call load of `s2_sidecar.calls` (simulated conversations through the
plugin's `SpeechStream`; against a sidecar only): calls per GPU at a first-audio target.
Each run uses a fresh persona (the bundled clip with a little dither, so no cache knows it):
its first request is the cold one, the next ones are warm. A stream "plays without an
underrun" when every chunk arrives before a player that started at the first byte would need
it. Prints a table, then the same numbers as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np
import soundfile as sf

from s2_plugin.audio import SampleAligner
from s2_plugin.client import S2Client
from s2_plugin.protocol import DEFAULT_URL, HEALTH_PATH, SAMPLE_RATE, SPEECH_PATH, VOICES_PATH
from s2_sidecar import calls, voices

TEXT = "Thanks for calling. Your order shipped this morning and should arrive on Friday."
PUBLISHED = (
    "published, for comparison: Fish Audio ~100 ms TTFA and RTF 0.195 on one H200; "
    "SGLang-Omni ~140 ms TTFA at batch 1; reported H100 runs at 16 streams: TTFA p50 "
    "0.76-1.48 s, 6-90% of streams gap-free depending on the stride"
)


@dataclass
class Stream:
    ttfa_s: float | None = None
    total_s: float = 0.0
    audio_s: float = 0.0
    underrun: bool = False
    error: str | None = None


@dataclass
class Level:
    streams: int
    requests: int
    errors: int
    ttfa_p50_ms: float | None
    ttfa_p95_ms: float | None
    gap_free: float | None
    """Share of completed streams that played without an underrun."""


@dataclass
class Report:
    url: str
    target: str
    cold_ttfa_ms: float | None = None
    warm_ttfa_ms: float | None = None
    rtf: float | None = None
    sweep: list[Level] = field(default_factory=list)
    calls: list[calls.LoadReport] = field(default_factory=list)


class Bench:
    def __init__(self, session: aiohttp.ClientSession, url: str, api_key: str | None) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.voice: dict[str, object] = {}

    async def target(self) -> str:
        """`sidecar` or `sglang-omni`: a sidecar's /health names its engine."""
        async with self.session.get(self.url + HEALTH_PATH) as r:
            body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"{self.url} is not ready: {body}")
        return "sidecar" if "engine" in body else "sglang-omni"

    async def fresh_persona(self, target: str) -> None:
        clip = _unique_clip()
        if target == "sglang-omni":
            reference = {
                "data": base64.b64encode(clip).decode(),
                "media_type": "audio/flac",  # small enough to spread behind a router
                "text": voices.TRANSCRIPT,
            }
            self.voice = {"references": [reference]}
            return
        name = f"bench-{uuid.uuid4().hex[:8]}"
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("transcript", voices.TRANSCRIPT)
        form.add_field("audio", clip, filename="bench.flac", content_type="audio/flac")
        async with self.session.post(self.url + VOICES_PATH, data=form, headers=self.headers) as r:
            if r.status >= 300:
                raise RuntimeError(f"could not register the bench persona: {await r.text()}")
        self.voice = {"voice": name}

    async def cleanup(self) -> None:
        if name := self.voice.get("voice"):
            url = f"{self.url}{VOICES_PATH}/{name}"
            async with self.session.delete(url, headers=self.headers):
                pass

    async def stream(self, text: str = TEXT) -> Stream:
        body = {"input": text, "stream": True, "response_format": "pcm", **self.voice}
        out = Stream()
        start = time.perf_counter()
        samples = 0
        aligner = SampleAligner()
        try:
            async with self.session.post(
                self.url + SPEECH_PATH, json=body, headers=self.headers
            ) as r:
                if r.status != 200:
                    out.error = f"{r.status}: {(await r.text())[:200]}"
                    return out
                async for data in r.content.iter_any():
                    now = time.perf_counter() - start
                    pcm = aligner.push(data)
                    if not pcm:
                        continue
                    if out.ttfa_s is None:
                        out.ttfa_s = now
                    elif now - out.ttfa_s > samples / SAMPLE_RATE:
                        out.underrun = True  # the player ran dry before this chunk came
                    samples += len(pcm) // 2
        except (aiohttp.ClientError, TimeoutError) as e:
            out.error = f"{type(e).__name__}: {e}"
        out.total_s = time.perf_counter() - start
        out.audio_s = samples / SAMPLE_RATE
        return out

    async def level(self, streams: int, rounds: int) -> Level:
        async def worker() -> list[Stream]:
            return [await self.stream() for _ in range(rounds)]

        results = [
            s for batch in await asyncio.gather(*(worker() for _ in range(streams))) for s in batch
        ]
        done = [s for s in results if s.error is None and s.ttfa_s is not None]
        ttfa = [s.ttfa_s * 1000 for s in done if s.ttfa_s is not None]
        return Level(
            streams=streams,
            requests=len(results),
            errors=len(results) - len(done),
            ttfa_p50_ms=_pct(ttfa, 50),
            ttfa_p95_ms=_pct(ttfa, 95),
            gap_free=(sum(not s.underrun for s in done) / len(done)) if done else None,
        )


async def run_bench(
    url: str,
    api_key: str | None,
    streams: list[int],
    rounds: int,
    warm_runs: int,
    call_levels: tuple[int, ...] = (),
    call_seconds: float = 60.0,
) -> Report:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        bench = Bench(session, url, api_key)
        report = Report(url=url, target=await bench.target())
        await bench.fresh_persona(report.target)
        try:
            cold = await bench.stream()
            if cold.error:
                raise RuntimeError(f"the first request failed: {cold.error}")
            report.cold_ttfa_ms = _ms(cold.ttfa_s)
            warm = [await bench.stream() for _ in range(warm_runs)]
            ok = [s for s in warm if s.error is None and s.ttfa_s is not None and s.audio_s]
            if ok:
                report.warm_ttfa_ms = statistics.median(_ms(s.ttfa_s) or 0.0 for s in ok)
                report.rtf = statistics.median(s.total_s / s.audio_s for s in ok)
            for n in streams:
                report.sweep.append(await bench.level(n, rounds))
            if call_levels and report.target != "sidecar":
                raise RuntimeError("--calls needs a sidecar: its personas carry the voice")
            async with S2Client(url, api_key=api_key, session=session) as client:
                for n in call_levels:
                    load = calls.CallLoad(n, call_seconds, voice=str(bench.voice["voice"]))
                    report.calls.append(await calls.run_calls(client, load))
        finally:
            await bench.cleanup()
    return report


def render(report: Report) -> str:
    def f(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        f"s2-sidecar bench: {report.url} ({report.target})",
        f"  time to first audio, cold persona   {f(report.cold_ttfa_ms, '8.1f')} ms",
        f"  time to first audio, warm persona   {f(report.warm_ttfa_ms, '8.1f')} ms (median)",
        f"  real-time factor, warm              {f(report.rtf, '8.3f')}",
        "",
        "  streams  requests  errors  TTFA p50 ms  TTFA p95 ms  gap-free",
    ]
    for lv in report.sweep:
        gap = "-" if lv.gap_free is None else f"{lv.gap_free:7.0%}"
        lines.append(
            f"  {lv.streams:7d}  {lv.requests:8d}  {lv.errors:6d}  {f(lv.ttfa_p50_ms, '11.1f')}  "
            f"{f(lv.ttfa_p95_ms, '11.1f')}  {gap:>8s}"
        )
    if report.calls:
        lines += ["", "  call load (target: first audio p95 <= 300 ms, >= 99.9% without underrun)"]
        lines += ["  " + calls.render(load) for load in report.calls]
    lines += ["", "  " + PUBLISHED]
    return "\n".join(lines)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], api_key: str | None
) -> None:
    p = sub.add_parser("bench", help="measure first audio, RTF and a concurrency sweep")
    p.add_argument("--url", default=DEFAULT_URL, help="a sidecar, or a bare SGLang-Omni / router")
    p.add_argument("--api-key", default=api_key)
    p.add_argument("--streams", default="1,4,16,32", help="concurrency levels, comma-separated")
    p.add_argument("--rounds", type=int, default=2, help="requests per stream at each level")
    p.add_argument("--warm-runs", type=int, default=5)
    p.add_argument("--calls", default="", help="call loads, comma-separated: conversations at once")
    p.add_argument("--call-seconds", type=float, default=60.0, help="length of each call load")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    levels = [int(n) for n in args.streams.split(",") if n.strip()]
    call_levels = tuple(int(n) for n in args.calls.split(",") if n.strip())
    report = asyncio.run(
        run_bench(
            args.url,
            args.api_key,
            levels,
            args.rounds,
            args.warm_runs,
            call_levels,
            args.call_seconds,
        )
    )
    print(render(report))
    print(json.dumps(asdict(report)))
    return 0


def _unique_clip() -> bytes:
    """The bundled clip with inaudible dither (one LSB), as a FLAC no cache has seen."""
    pcm, rate = sf.read(voices.CLIP, dtype="int16")
    noise = np.random.default_rng().integers(-1, 2, size=pcm.shape, dtype=np.int16)
    out = io.BytesIO()
    sf.write(out, pcm + noise, rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
