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
import contextlib
import io
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np
import soundfile as sf

from s2_plugin.client import S2Client, S2Error, read_pcm
from s2_plugin.personas import Persona
from s2_plugin.protocol import DEFAULT_URL, HEALTH_PATH, SAMPLE_RATE, SPEECH_PATH
from s2_sidecar import calls, voices

HELP = "measure first audio, RTF and a concurrency sweep"

TEXT = "Thanks for calling. Your order shipped this morning and should arrive on Friday."
PUBLISHED = (
    "published, for comparison: Fish Audio ~100 ms TTFA and RTF 0.195 on one H200; "
    "SGLang-Omni ~140 ms TTFA at batch 1; reported H100 runs at 16 streams: TTFA p50 "
    "0.76-1.48 s, 6-90% of streams gap-free depending on the stride"
)
PREVIEW_WARNING = (
    "PREVIEW ENGINE: this sidecar speaks with the CPU preview voice (Piper), not S2-Pro. These "
    "numbers say nothing about S2 on a GPU; run the bench against a sidecar on the "
    "sglang_omni engine to measure S2."
)


@dataclass
class StreamTiming:
    """One measured stream: when its audio started, how long it lasted, whether it ran dry."""

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
    engine: str | None = None
    """The sidecar's engine (`preview` or `sglang_omni`); None for a bare SGLang-Omni."""
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
        self.client = S2Client(self.url, api_key=api_key, session=session, read_timeout=120)
        self.voice: dict[str, object] = {}

    async def target(self) -> tuple[str, str | None]:
        """`sidecar` or `sglang-omni`, and the engine a sidecar's /health names."""
        async with self.session.get(self.url + HEALTH_PATH) as r:
            body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"{self.url} is not ready: {body}")
        if "engine" in body:
            return "sidecar", str(body["engine"])
        return "sglang-omni", None

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
        persona = Persona(f"bench-{uuid.uuid4().hex[:8]}", clip, voices.TRANSCRIPT)
        try:
            await self.client.register(persona)
        except S2Error as e:
            raise RuntimeError(f"could not register the bench persona: {e}") from e
        self.voice = {"voice": persona.name}

    async def cleanup(self) -> None:
        if name := self.voice.get("voice"):
            with contextlib.suppress(S2Error):
                await self.client.delete_voice(str(name))

    async def stream(self, text: str = TEXT) -> StreamTiming:
        body = {"input": text, "stream": True, "response_format": "pcm", **self.voice}
        out = StreamTiming()
        start = time.perf_counter()
        samples = 0
        try:
            async with self.session.post(
                self.url + SPEECH_PATH, json=body, headers=self.headers
            ) as r:
                if r.status != 200:
                    out.error = f"{r.status}: {(await r.text())[:200]}"
                    return out
                async for pcm in read_pcm(r):
                    now = time.perf_counter() - start
                    if out.ttfa_s is None:
                        out.ttfa_s = now
                    elif now - out.ttfa_s > samples / SAMPLE_RATE:
                        out.underrun = True  # the player ran dry before this chunk came
                    samples += len(pcm) // 2
        except (aiohttp.ClientError, TimeoutError, S2Error) as e:
            out.error = f"{type(e).__name__}: {e}"
        out.total_s = time.perf_counter() - start
        out.audio_s = samples / SAMPLE_RATE
        return out

    async def level(self, streams: int, rounds: int) -> Level:
        async def worker() -> list[StreamTiming]:
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
        target, engine = await bench.target()
        report = Report(url=url, target=target, engine=engine)
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
            for n in call_levels:
                load = calls.CallLoad(n, call_seconds, voice=str(bench.voice["voice"]))
                report.calls.append(await calls.run_calls(bench.client, load))
        finally:
            await bench.cleanup()
    return report


def render(report: Report) -> str:
    def f(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    preview = report.engine == "preview"
    engine = f", {report.engine} engine" if report.engine else ""
    lines = [PREVIEW_WARNING, ""] if preview else []
    lines += [
        f"s2-sidecar bench: {report.url} ({report.target}{engine})",
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
    # Never beside the preview's: a CPU voice's numbers next to an H200's invite the comparison.
    lines += ["", PREVIEW_WARNING if preview else "  " + PUBLISHED]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser, api_key: str | None) -> None:
    """The `bench` command's flags, on the parser `s2-sidecar` made for it."""
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
