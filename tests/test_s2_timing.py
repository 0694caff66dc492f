"""The timing model of S2 on SGLang-Omni (support/s2_timing.py): it reproduces the published
figures of one H200 within 20%, and serves in arrival order, by the strides, freeing aborts.

All on the model's virtual clock: these are the model's own arithmetic, not timings.
"""

from __future__ import annotations

import pytest
from support.s2_timing import FRAME_S, BatchEngine, Profile, benchmark_frames, closed_loop
from support.s2_timing import load_profile as load

H200 = load()
STRIDE = int(H200.published["stream_stride"])


def close(value: float, published: float) -> bool:
    return abs(value - published) <= 0.2 * published


def test_one_stream_runs_at_the_published_speed() -> None:
    assert close(1 / H200.step_s, H200.published["frames_per_s"])
    assert close(H200.step_s / FRAME_S, H200.published["rtf"])
    first = closed_loop(H200, 1, benchmark_frames(H200), STRIDE, 16, requests=5).first_chunk_s
    assert close(first, H200.published["ttfa_s"])


@pytest.mark.parametrize("clients", ["1", "16", "32"])
def test_concurrent_throughput_matches_the_published_benchmark(clients: str) -> None:
    frames = benchmark_frames(H200)
    got = closed_loop(H200, int(clients), frames, STRIDE, 16).requests_per_s
    assert close(got, H200.published["throughput"][clients]), got


def tiny(max_running: int) -> Profile:
    return Profile(step_s=1.0, step_growth=0.5, prefill_s=2.0, max_running_requests=max_running)


def test_the_step_slows_with_every_running_stream() -> None:
    assert [tiny(8).step_time(b) for b in (1, 2, 5)] == [1.0, 1.5, 3.0]


def test_chunks_follow_the_strides_and_the_first_frame_comes_from_the_prefill() -> None:
    engine = BatchEngine(tiny(4), stride=3, followup=2)
    engine.submit("a", 8)
    kinds, chunks = [], []
    while step := engine.begin():
        kinds.append(step.kind)
        chunks += [(c.frames, c.last) for c in engine.end(step)]
    assert kinds == ["prefill"] + ["decode"] * 7
    assert chunks == [(3, False), (2, False), (2, False), (1, True)]
    assert engine.frames_made == 8


def test_requests_past_max_running_wait_in_arrival_order() -> None:
    engine = BatchEngine(tiny(2), stride=1, followup=1)
    for rid in "abc":
        engine.submit(rid, 3)
    firsts: list[str] = []
    while step := engine.begin():
        assert len(engine.running) <= 2
        for chunk in engine.end(step):
            if chunk.rid not in firsts:
                firsts.append(chunk.rid)
    assert firsts == ["a", "b", "c"]


def test_a_new_prefill_holds_up_every_running_stream() -> None:
    engine = BatchEngine(tiny(4), stride=1, followup=1)
    engine.submit("a", 5)
    first = engine.begin()
    assert first is not None
    engine.end(first)
    engine.submit("b", 5)
    step = engine.begin()
    assert step is not None
    assert (step.kind, step.duration, [j.rid for j in step.jobs]) == ("prefill", 2.0, ["b"])


def test_an_abort_frees_its_slot_at_once() -> None:
    engine = BatchEngine(tiny(1), stride=1, followup=1)
    engine.submit("a", 100)
    engine.submit("b", 2)
    step = engine.begin()
    assert step is not None and [j.rid for j in step.jobs] == ["a"]
    engine.abort("a")  # during its prefill: it makes no frame
    assert engine.end(step) == []
    step = engine.begin()
    assert step is not None and [j.rid for j in step.jobs] == ["b"]
