"""A timing model of S2-Pro served by SGLang-Omni 0.1.9 on one GPU: continuous batching.

What the model holds, and where 0.1.9 (paths inside `sglang_omni/`) or SGLang has it:
- Requests wait in arrival order and run up to `max_running_requests` at once
  (`models/fishaudio_s2_pro/engine_builder.py` `generation_defaults`: 64 on CUDA; SGLang's
  scheduler admits its waiting queue first come, first served; S2's `CreateSpeechRequest` has
  no priority field).
- A waiting prefill batch runs before the next decode step (SGLang's `get_next_batch_to_run`),
  takes `prefill_s` and gives each new stream its first frame; every running stream waits.
- A decode step makes one codec frame for each running stream and takes
  t(b) = step_s * (1 + step_growth * (b - 1)) with b streams running.
- A stream's first chunk goes out once it has `stream_stride` frames, then one every
  `stream_followup_stride`, and the rest at its end (`scheduling/audio_stream.py`); the vocoder's
  own time is folded into the step time.
- An abort (the client hung up) frees its slot at once (`coordinator.py` aborts every stage).

The model is pure: `BatchEngine.begin()` says what the next step does and how long it takes,
`end()` applies it. The stand-in drives it with the real clock; tests and benchmarks with a
virtual one (`closed_loop`).
"""

from __future__ import annotations

import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_RATE = 44100
FRAME = 2048
FRAME_S = FRAME / SAMPLE_RATE
"""Audio in one codec frame: 46.4 ms."""
PROFILES = Path(__file__).resolve().parent / "profiles"
H200 = PROFILES / "h200.toml"


@dataclass(frozen=True)
class Profile:
    """One GPU's timing; see `profiles/h200.toml` for what each value is and its source."""

    step_s: float
    step_growth: float
    prefill_s: float
    max_running_requests: int
    published: dict[str, Any] = field(default_factory=dict)

    def step_time(self, running: int) -> float:
        """Seconds of one decode step with `running` streams in the batch."""
        return self.step_s * (1 + self.step_growth * (max(running, 1) - 1))


def load_profile(path: Path = H200) -> Profile:
    data = tomllib.loads(path.read_text())
    s = data["serving"]
    return Profile(
        step_s=float(s["step_s"]),
        step_growth=float(s["step_growth"]),
        prefill_s=float(s["prefill_s"]),
        max_running_requests=int(s["max_running_requests"]),
        published=data.get("published", {}),
    )


@dataclass
class Job:
    rid: str
    frames: int
    """Frames the request will make in all (its text's length, or `max_new_tokens`)."""
    made: int = 0
    sent: int = 0
    """Frames already sent in chunks."""
    chunks: int = 0


@dataclass(frozen=True)
class Chunk:
    rid: str
    frames: int
    last: bool


@dataclass(frozen=True)
class Step:
    kind: str
    """`prefill` or `decode`."""
    duration: float
    jobs: tuple[Job, ...]


class BatchEngine:
    """Continuous batching of S2 streams in arrival order; see the module docstring."""

    def __init__(self, profile: Profile, stride: int, followup: int) -> None:
        self.profile = profile
        self.stride = stride
        self.followup = followup
        self.waiting: deque[Job] = deque()
        self.running: dict[str, Job] = {}
        self.frames_made = 0
        self.busy_s = 0.0

    def submit(self, rid: str, frames: int) -> None:
        self.waiting.append(Job(rid, max(1, frames)))

    def abort(self, rid: str) -> None:
        """The client hung up: the request leaves the queue or the batch at once."""
        self.running.pop(rid, None)
        self.waiting = deque(j for j in self.waiting if j.rid != rid)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def begin(self) -> Step | None:
        """The next step: a prefill of newly admitted requests if any wait and fit, else a
        decode step of every running stream; None when there is nothing to do."""
        room = self.profile.max_running_requests - len(self.running)
        if self.waiting and room > 0:
            new = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
            for job in new:
                self.running[job.rid] = job
            step = Step("prefill", self.profile.prefill_s, tuple(new))
        elif self.running:
            jobs = tuple(self.running.values())
            step = Step("decode", self.profile.step_time(len(jobs)), jobs)
        else:
            return None
        self.busy_s += step.duration
        return step

    def end(self, step: Step) -> list[Chunk]:
        """Apply a step that has taken its time: one frame more for each stream still running;
        the chunks that are ready, in batch order."""
        out = []
        for job in step.jobs:
            if self.running.get(job.rid) is not job:
                continue  # aborted during the step
            job.made += 1
            self.frames_made += 1
            due = self.stride if job.chunks == 0 else self.followup
            last = job.made >= job.frames
            if last or job.made - job.sent >= due:
                out.append(Chunk(job.rid, job.made - job.sent, last))
                job.sent, job.chunks = job.made, job.chunks + 1
            if last:
                del self.running[job.rid]
        return out


@dataclass(frozen=True)
class LoopResult:
    requests_per_s: float
    first_chunk_s: float
    """Mean seconds from a request's arrival to its first chunk."""


def closed_loop(
    profile: Profile,
    clients: int,
    frames: int,
    stride: int,
    followup: int,
    requests: int = 400,
) -> LoopResult:
    """`clients` each send a request of `frames` frames and the next when it ends (the
    published concurrency benchmarks), on a virtual clock; throughput over `requests`."""
    engine = BatchEngine(profile, stride, followup)
    now, done, issued = 0.0, 0, 0
    sent_at: dict[str, float] = {}
    firsts: list[float] = []

    def send() -> None:
        nonlocal issued
        rid = f"r{issued}"
        issued += 1
        sent_at[rid] = now
        engine.submit(rid, frames)

    for _ in range(clients):
        send()
    while done < requests:
        step = engine.begin()
        assert step is not None, "a closed loop always has work"
        now += step.duration
        for chunk in engine.end(step):
            if chunk.rid in sent_at:  # its first chunk
                firsts.append(now - sent_at.pop(chunk.rid))
            if chunk.last:
                done += 1
                send()
    return LoopResult(done / now, sum(firsts) / len(firsts))


def benchmark_frames(profile: Profile) -> int:
    """The length of the published benchmark's request, from its one-client figure: one
    request alone takes 1 / (req/s) = prefill + (frames - 1) steps."""
    per_request = 1 / float(profile.published["throughput"]["1"])
    return round((per_request - profile.prefill_s) / profile.step_s) + 1
