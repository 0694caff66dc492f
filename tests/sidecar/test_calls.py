"""The call load (s2_sidecar.calls) through a real sidecar on the SGLang-Omni stand-in, which
sends audio far faster than real time: what it counts, not how fast it is."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from s2_sidecar.calls import CallLoad, reply_text, run_calls
from support.sidecar import SidecarProcess
from support.upstream import standin_sidecar

from s2_plugin.client import S2Client


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    process, _ = standin_sidecar(tmp_path_factory.mktemp("calls"))
    with process:
        process.wait_ready()
        yield process


def test_a_reply_has_the_sentences_asked_for() -> None:
    text = reply_text(random.Random(1), 4)
    assert text.count(".") == 4 and text[0].isupper()


async def test_every_call_replies_and_plays_without_waste(sidecar: SidecarProcess) -> None:
    load = CallLoad(calls=3, seconds=1, barge_in=0.0, user_turn_s=(0.1, 0.2), voice="joe")
    async with S2Client(sidecar.url) as client:
        report = await run_calls(client, load)
    assert (report.calls, report.errors, report.refused) == (3, 0, 0)
    assert report.replies >= 3 and report.played_s > 0
    assert report.first_audio_p50_ms is not None and report.wasted_s_per_call == 0
    assert report.underrun_share == 0  # all audio came before it was needed


async def test_a_barge_in_leaves_audio_unplayed(sidecar: SidecarProcess) -> None:
    load = CallLoad(2, 0.02, barge_in=1.0, sentences=(6, 6), user_turn_s=(0, 0.01), voice="joe")
    async with S2Client(sidecar.url) as client:
        report = await run_calls(client, load)
    assert report.replies == 2 and report.errors == 0
    assert report.wasted_s_per_call > 0  # the stand-in sent it all at once; most was cut
