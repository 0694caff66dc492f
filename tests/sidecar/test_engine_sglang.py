"""The sglang_omni engine, for real, against the SGLang-Omni stand-in launched as `sgl-omni`."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from s2_sidecar import voices, warmup
from s2_sidecar.engines.sglang_omni import SGLangOmniEngine
from s2_sidecar.engines.sglang_process import Launch
from s2_sidecar.metrics import Metrics
from support.cast import write_personas
from support.sidecar import SidecarProcess
from support.upstream import Upstream, standin_args, standin_sidecar
from support.waiting import until, wait_for

from s2_plugin.client import S2Client, S2StatusError
from s2_plugin.personas import load_personas

TEXT = "Your order has shipped and should arrive on Friday."


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, Upstream]]:
    sidecar, upstream = standin_sidecar(tmp_path_factory.mktemp("sglang"))
    with sidecar:
        yield sidecar, upstream


@pytest.fixture
async def upstream(s2: tuple[SidecarProcess, Upstream]) -> Upstream:
    sidecar, up = s2
    sidecar.wait_ready()
    await up.control(mode="ok", frame_s=0.0, stamp=False, rate=44100)
    return up


def expected_pcm(text: str) -> np.ndarray:
    """What the stand-in sends: 6 frames a word, every sample `len(text)`."""
    frames = 6 * len(text.split())
    return np.full(frames * 2048, len(text), dtype="<i2")


async def test_launches_on_loopback_with_strict_port_and_low_latency_strides(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    status, health = sidecar.health()
    assert status == 200
    assert (health["engine"], health["preview"], health["model"]) == (
        "sglang_omni",
        False,
        "fishaudio/s2-pro",
    )
    state = await upstream.state()
    argv = state["argv"]
    assert argv[0] == "serve"  # type: ignore[index]
    flags = dict(zip(argv[1::2], argv[2::2], strict=False))  # type: ignore[index]
    assert flags["--host"] == "127.0.0.1"
    assert flags["--vocoder.factory.stream_stride"] == "4"
    assert flags["--vocoder.factory.stream_followup_stride"] == "16"
    # The weights are fetched (here: found in the cache) before launch, not inside stage start.
    assert flags["--model-path"].endswith("models--fishaudio--s2-pro/snapshots/0123abcd")
    assert flags["--allowed-local-media-path"] == str(sidecar.store.resolve())
    # 0.1.9's own stage start-up limit is 600 s: it is raised to the sidecar's 900 s.
    assert state["startup_timeout"] == "900.0"


async def test_sends_the_stored_clip_by_path_and_streams_pcm_back(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with S2Client(sidecar.url) as client:
        pcm = await client.synthesize(
            TEXT, voice="joe", style="calm", temperature=0.7, top_k=20, seed=5
        )
    # Picked by its text: a warm-up can reach the stand-in after it.
    (body,) = [b for b in await upstream.bodies() if b["input"] == "[calm] " + TEXT]
    assert (body["stream"], body["response_format"]) == (True, "pcm")
    assert (body["temperature"], body["top_k"], body["seed"]) == (0.7, 20, 5)
    assert "voice" not in body and "top_p" not in body
    (reference,) = body["references"]  # type: ignore[misc]
    clip = next(sidecar.store.resolve().glob("joe.*.wav"))
    assert reference == {"audio_path": str(clip), "text": reference["text"]}
    assert reference["text"].startswith("Hi, I'm Joe")
    assert np.array_equal(np.frombuffer(pcm, "<i2"), expected_pcm("[calm] " + TEXT))


async def test_every_request_carries_the_same_reference_bytes(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    texts = ["One.", "Two words.", TEXT]
    async with S2Client(sidecar.url) as client:
        for text in texts:
            await client.synthesize(text, voice="joe")

    async def joe() -> list[str]:
        return [raw for raw in await upstream.raw_bodies() if "/joe." in raw]

    async def warmed() -> bool:
        return any(json.loads(raw)["input"] == warmup.REQUEST.input for raw in await joe())

    await until(warmed, "joe's start-up warm-up sent")  # it goes out in the background
    raws = await joe()
    assert set(texts) <= {json.loads(raw)["input"] for raw in raws}
    refs = {raw[raw.index('"references"') :] for raw in raws}
    assert len(refs) == 1


async def test_the_default_voice_is_the_bundled_persona_every_time(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with S2Client(sidecar.url) as client:
        await client.synthesize("Hello there.")
        await client.synthesize("And again.")
        names = [v.name for v in await client.list_voices()]
    assert "default" in names
    bodies = await upstream.bodies()  # picked by text: a warm-up may land among them
    first, second = (
        [b for b in bodies if b["input"] == t][-1] for t in ("Hello there.", "And again.")
    )
    assert first["references"] == second["references"]  # one fixed voice, not a random one
    (reference,) = first["references"]  # type: ignore[misc]
    assert reference["audio_path"] == str(next(sidecar.store.resolve().glob("default.*.wav")))
    assert reference["text"] == voices.TRANSCRIPT


async def test_disconnect_cancels_the_upstream_request(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    # 1,200 frames, 0.16 s apart: a 12 s stream that it cannot finish before the hang-up, with
    # gaps far inside the 1 s read timeout.
    await upstream.control(frame_s=0.01)
    before = (await upstream.state())["cancelled"]
    cancelled = sidecar.metrics()["s2_streams_cancelled_total"]
    async with aiohttp.ClientSession() as s:
        body = {"input": "word " * 200, "voice": "joe"}
        r = await s.post(sidecar.url + "/v1/audio/speech", json=body)
        await r.content.readany()
        r.close()

    # How fast is for bench/; here: the request is cancelled, not left generating.
    async def stopped() -> bool:
        state = await upstream.state()
        return state["cancelled"] > before and not state["active"]

    await until(stopped, "the upstream request cancelled")
    assert (await upstream.state())["cancelled"] == before + 1
    await until(
        lambda: sidecar.metrics()["s2_streams_cancelled_total"] == cancelled + 1,
        "the sidecar counted the stream cancelled",
    )


async def test_upstream_rejection_is_a_400_that_says_why(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(mode="reject")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (400, "engine_rejected")
    assert "rejected by the stand-in" in e.value.message


async def test_stall_before_audio_is_a_503(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(mode="stall")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (503, "engine_stalled")


async def test_crash_reports_unhealthy_then_restarts(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    restarts = sidecar.metrics()["s2_engine_restarts_total"]
    await upstream.control(mode="crash")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
        assert e.value.status == 503 and e.value.retryable
        # The supervisor learns of the exit on its own clock, and /health says so only until the
        # relaunch (~0.5 s here): the restart counter and the log keep what it reported.
        await until(
            lambda: sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1,
            "the supervisor relaunched SGLang-Omni",
        )
        assert "SGLang-Omni exited with code 3; restarting" in sidecar.log()
        sidecar.wait_ready()
        pcm = await client.synthesize(TEXT, voice="joe")
    assert len(pcm) == 2 * len(expected_pcm(TEXT))
    assert sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1

    async def warmed() -> bool:  # the new process gets the persona warmed again
        return any(
            b["input"] == warmup.REQUEST.input and "references" in b
            for b in await upstream.bodies()
        )

    await until(warmed, "a warm-up after the restart")


async def test_a_wedged_process_is_killed_and_relaunched(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    restarts = sidecar.metrics()["s2_engine_restarts_total"]
    await upstream.control(mode="wedge")  # alive, but /health and speech hang
    # What /health says of it lasts only until the relaunch: the counter and the log keep it.
    await until(
        lambda: sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1,
        "the wedged SGLang-Omni killed and relaunched",
    )
    assert "SGLang-Omni stopped answering /health" in sidecar.log()
    sidecar.wait_ready()
    async with S2Client(sidecar.url) as client:
        pcm = await client.synthesize(TEXT, voice="joe")
    assert len(pcm) == 2 * len(expected_pcm(TEXT))
    assert sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1


async def test_a_long_styled_input_is_cut_before_sglang_omni(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    """Past what one generation holds, the sidecar cuts the text (between words here: there is
    no sentence end) and sends the parts in order, each with the style tag; nothing is lost."""
    sidecar, _ = s2
    before = len(await upstream.raw_bodies())
    text = "word " * 818 + "end."  # 4094 characters, 819 words
    async with S2Client(sidecar.url) as client:
        assert await client.synthesize(text, voice="joe", style="calm")
    # Warm-ups of a relaunched process can land among them: they are not this text's parts.
    bodies = [json.loads(raw) for raw in (await upstream.raw_bodies())[before:]]
    inputs = [b["input"] for b in bodies if b["input"] != warmup.REQUEST.input]
    limit = SGLangOmniEngine.max_text_chars
    assert len(inputs) >= len(text) // limit
    assert all(i.startswith("[calm] ") and len(i) <= limit + len("[calm] ") for i in inputs)
    words = " ".join(i.removeprefix("[calm] ") for i in inputs).split()
    assert words == text.split()


async def test_a_negative_seed_is_refused_as_0_1_9_refuses_it(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with aiohttp.ClientSession() as s:
        r = await s.post(sidecar.url + "/v1/audio/speech", json={"input": TEXT, "seed": -1})
        assert r.status == 400
        assert "seed" in (await r.json())["error"]["message"]


async def test_an_upstream_500_is_a_502_not_a_retry(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(mode="error")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (502, "engine_error")
    assert not e.value.retryable
    assert "failed by the stand-in" in e.value.message


async def test_a_stream_at_another_rate_is_refused(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(rate=24000)
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (502, "engine_format")
    assert "24000" in e.value.message


async def test_a_generation_cut_by_max_new_tokens_is_counted(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    before = sidecar.metrics()["s2_truncated_total"]
    async with S2Client(sidecar.url) as client:
        pcm = await client.synthesize(TEXT, voice="joe", max_new_tokens=10)
    assert len(pcm) == 10 * 2048 * 2  # the stand-in stopped at 10 frames of 54
    await until(  # the outcome is fetched after the stream, off its path
        lambda: sidecar.metrics()["s2_truncated_total"] == before + 1, "the cut counted"
    )
    await until(lambda: "stopped at max_new_tokens" in sidecar.log(), "the cut logged")


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"seed": -1}, 400, "seed must be greater than or equal to 0"),
        ({"seed": 1.5}, 400, "seed must be an integer"),
        ({"max_new_tokens": 0}, 400, "max_new_tokens must be greater than 0"),
        ({"input": "x" * 4097}, 400, "at most 4096 characters"),
        ({"response_format": "wav"}, 400, "stream=true requires response_format='pcm'"),
        ({"top_k": 31}, 500, "top_k must be -1 or between 1 and 30"),
        ({"references": [{"data": "not base64!", "text": "t"}]}, 400, "valid base64"),
        ({"references": [{"data": "AAAA", "media_type": "text/plain"}]}, 400, "audio media"),
        ({"references": [{"data": "AAAAAAAA", "text": "t"}]}, 500, "could not decode"),
        ({"references": [{"audio_path": "/etc/hostname"}]}, 400, "not within allowed"),
        ({"references": [{"audio_path": "{store}/nope.wav"}]}, 400, "does not exist"),
    ],
)
async def test_the_standin_refuses_what_0_1_9_refuses(
    s2: tuple[SidecarProcess, Upstream],
    upstream: Upstream,
    change: dict[str, object],
    status: int,
    says: str,
) -> None:
    sidecar, _ = s2
    body = {"input": TEXT, "stream": True, "response_format": "pcm", **change}
    raw = json.dumps(body).replace("{store}", str(sidecar.store.resolve()))
    async with (
        aiohttp.ClientSession() as s,
        s.post(upstream.url + "/v1/audio/speech", data=raw) as r,
    ):
        assert r.status == status
        assert says in (await r.json())["error"]["message"]


async def test_the_standin_streams_with_0_1_9s_crossfade_tail(upstream: Upstream) -> None:
    body = {"input": TEXT, "stream": True, "response_format": "pcm"}
    sizes = []
    async with (
        aiohttp.ClientSession() as s,
        s.post(upstream.url + "/v1/audio/speech", json=body) as r,
    ):
        async for chunk, _ in r.content.iter_chunks():
            sizes.append(len(chunk))
    assert sum(sizes) == 2 * 54 * 2048  # 9 words, 6 frames each
    assert sizes[0] == 2 * (4 * 2048 - 512)  # stride 4, the 512-sample tail held back


def test_a_stride_in_sglang_args_is_refused_up_front(tmp_path: Path) -> None:
    from s2_sidecar import cli

    args = ["serve", "--engine", "sglang_omni", "--store", str(tmp_path)]
    args += ["--sglang-args", "--vocoder.factory.stream_stride 40 --log-level debug"]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2


async def test_missing_weights_say_how_to_fetch_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    launch = Launch(command=["false"], model_path="fishaudio/not-downloaded", backoff=(30, 30))
    engine = SGLangOmniEngine(Metrics(), launch)
    await engine.start()
    try:
        await until(lambda: engine.health()[0] == "unhealthy", "the engine reported unhealthy")
        detail = engine.health()[1]
    finally:
        await engine.stop()
    assert "could not fetch the fishaudio/not-downloaded weights" in str(detail)
    assert "s2-sidecar download --model fishaudio/not-downloaded" in str(detail)


def test_a_sigkilled_sidecar_leaves_no_sglang_process(tmp_path: Path) -> None:
    sidecar = SidecarProcess(
        tmp_path / "store",
        engine="sglang_omni",
        args=[*standin_args(), "--model-path", str(tmp_path)],
        env={"STANDIN_STAGE": "1"},
    )
    sidecar.start()
    try:
        with urllib.request.urlopen(Upstream(sidecar).url + "/standin/state") as r:
            state = json.load(r)
        pids = [state["pid"], state["stage_pid"]]
        assert all(_alive(pid) for pid in pids)
        os.kill(sidecar.pid or 0, signal.SIGKILL)
        # SIGTERM from the kernel; SGLang-Omni stops its stages.
        wait_for(lambda: not any(_alive(pid) for pid in pids), "SGLang-Omni gone with the sidecar")
    finally:
        sidecar.stop()


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_cast_goes_as_one_combined_reference_the_same_bytes_each_time(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream, tmp_path: Path
) -> None:
    sidecar, _ = s2
    clips = write_personas(tmp_path)
    ben = next(p for p in load_personas(clips) if p.name == "ben")
    script = "<|speaker:0|> Hi there.\n<|speaker:1|> Hello, Joe."
    async with S2Client(sidecar.url) as client:
        await client.ensure_persona(ben)
        joe = await client.get_voice("joe")
        for _ in range(2):
            await client.synthesize(script, cast=["joe", "ben"])
    said = "Hi there.\n<|speaker:1|> Hello, Joe."  # 0.1.9 adds <|speaker:0|>
    # Picked by their text: ben's warm-up, set off by his registration, can land after them.
    raws = [raw for raw in await upstream.raw_bodies() if json.loads(raw)["input"] == said]
    assert len(raws) == 2 and raws[0] == raws[1]  # byte for byte: both of SGLang-Omni's caches hit
    body = json.loads(raws[0])
    (reference,) = body["references"]
    assert joe is not None
    assert reference["text"] == f"{joe.transcript}\n<|speaker:1|>{ben.transcript}"
    path = Path(reference["audio_path"])
    assert path.parent == (sidecar.store / "casts").resolve()  # where SGLang-Omni may read
    with wave.open(str(path)) as w:
        combined = w.readframes(w.getnframes())
    joe_pcm = next(sidecar.store.glob("joe.*.wav")).read_bytes()[44:]
    assert combined.startswith(joe_pcm) and len(combined) % (2 * 2048) == 0
    assert len(combined) > len(joe_pcm) + 5 * 44100 * 2  # ben's clip follows
