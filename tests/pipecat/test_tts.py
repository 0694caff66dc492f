"""S2TTSService in a real Pipecat pipeline (`run_test`) against the real sidecar process.

Exact sample counts are checked against what the sidecar sent for the very requests made: a
recording proxy in front of it (the sidecar is shared by the session, so its own counters
also hold other tests' requests). Scripts wait on what the pipeline did, never on sleeps.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor
from pipecat.tests.utils import run_test
from pipecat.utils.errors import ErrorCategory
from pipecat_s2 import S2TTSService, without_tags
from support.changes import Changes
from support.pcm_server import pcm_server
from support.pipeline import ScriptRun, Speaker, spoken_segments
from support.proxy import Fault, FaultProxy, RecordingProxy
from support.sidecar import PERSONAS_TOML, SidecarProcess, closed_port
from support.speech import transcribe, wer

from s2_plugin.personas import load_personas
from s2_plugin.protocol import SAMPLE_RATE
from s2_plugin.segment import Segmenter
from s2_plugin.stream import SPEECH_SETTINGS
from s2_plugin.tags import strip_tags
from s2_plugin.timing import speech_span

MAX_WER = 0.45
"""The preview voice is deterministic, so each test's word error is one number; measured (3
runs under load, identical each time): 0.07 (REPLY), 0.00 (TAGGED_REPLY), 0.30 (the ten
notices). The bound is the worst plus 0.15 (two or three words of slack for a change of
segmentation); silence or garbled audio scores near 1."""

SLOW_BYTES_PER_S = SAMPLE_RATE * 2 / 5
"""A fifth of real time: what an interruption test paces the sidecar's audio to (its first
chunk still comes within a second)."""

REPLY = (
    "Well, that is a very good question, and I have thought about it a lot. "
    "The answer is simple. We open the shop at nine in the morning."
)
TAGGED_REPLY = (
    "I will tell you [whisper] a little secret about the weather today. "
    "The sun will shine all morning and it will rain at night. [laugh]"
)


def llm_reply(text: str, size: int = 4) -> list[Frame]:
    """An LLM turn streaming `text` in tokens of `size` characters."""
    tokens = [LLMTextFrame(text[i : i + size]) for i in range(0, len(text), size)]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


def params(rate: int = 16000) -> PipelineParams:
    return PipelineParams(audio_out_sample_rate=rate, enable_metrics=True)


def audio(frames: Sequence[Frame], context_id: str | None = None) -> bytes:
    return b"".join(
        f.audio
        for f in frames
        if isinstance(f, TTSAudioRawFrame) and context_id in (None, f.context_id)
    )


def texts(frames: Sequence[Frame]) -> list[str]:
    return [f.text for f in frames if isinstance(f, TTSTextFrame)]


def errors(frames: Sequence[Frame]) -> list[str]:
    return [f.error for f in frames if isinstance(f, ErrorFrame)]


def _segments(text: str) -> list[str]:
    segmenter = Segmenter()
    return [s.text for s in segmenter.push(text) + segmenter.flush()]


def index(frames: Sequence[Frame], kind: type[Frame], last: bool = False) -> int:
    found = [i for i, f in enumerate(frames) if isinstance(f, kind)]
    assert found, f"no {kind.__name__} in {[type(f).__name__ for f in frames]}"
    return found[-1] if last else found[0]


async def test_frames_are_ordered_and_the_words_are_heard(sidecar: SidecarProcess) -> None:
    tts = S2TTSService(base_url=sidecar.url, persona=sidecar.persona)
    down, up = await run_test(tts, frames_to_send=llm_reply(REPLY), pipeline_params=params())

    assert errors(up) == []
    assert sum(isinstance(f, TTSStartedFrame) for f in down) == 1
    assert sum(isinstance(f, TTSStoppedFrame) for f in down) == 1
    started, stopped = index(down, TTSStartedFrame), index(down, TTSStoppedFrame)
    first_audio, last_audio = index(down, TTSAudioRawFrame), index(down, TTSAudioRawFrame, True)
    assert started < first_audio and last_audio < stopped < index(down, LLMFullResponseEndFrame)
    assert all(f.sample_rate == 16000 for f in down if isinstance(f, TTSAudioRawFrame))

    # One TTSTextFrame per word, the reply's words in order, timed (PTS) to when they are
    # heard: the last word is heard well into the reply, not at the start of its segment.
    assert texts(down) == REPLY.split()
    segments = spoken_segments(down, _segments(REPLY))
    assert len(segments) >= 3 and all(words and pcm for words, pcm in segments)
    pts = [f.pts for f in down if isinstance(f, TTSTextFrame)]
    assert all(p is not None for p in pts) and pts == sorted(pts)
    heard_s = (pts[-1] - pts[0]) / 1e9
    played_s = len(audio(down)) / 2 / 16000
    assert 0.7 * played_s < heard_s < played_s, (heard_s, played_s)

    # Each word leaves the TTS no later than the audio that speaks it: the audio out before a
    # word's frame ends before the word's time (counted from the first word, which comes
    # before any audio and is heard at the speech onset).
    onset_s = speech_span(audio(down), 16000)[0]
    out_s, late = 0.0, []
    for f in down:
        if isinstance(f, TTSAudioRawFrame):
            out_s += len(f.audio) / 2 / 16000
        elif isinstance(f, TTSTextFrame) and f.pts is not None:
            late += [(f.text, out_s)] if out_s > (f.pts - pts[0]) / 1e9 + onset_s + 0.011 else []
    assert late == [], late

    # One TTFB for the reply, as Pipecat's services report it (not one per segment request).
    # (Pipecat also reports a 0.0 for every processor when the pipeline starts.)
    ttfb = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
    assert sum(isinstance(d, TTFBMetricsData) and d.value > 0 for d in ttfb) == 1, ttfb

    heard = transcribe(audio(down), 16000)
    assert wer(REPLY, heard) <= MAX_WER, heard


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_every_sample_the_sidecar_sent_is_resampled_once(
    sidecar: SidecarProcess, rate: int
) -> None:
    async with RecordingProxy(sidecar.url).running() as proxy:
        tts = S2TTSService(base_url=proxy.url, persona=sidecar.persona)
        down, up = await run_test(
            tts, frames_to_send=llm_reply(REPLY), pipeline_params=params(rate)
        )
        await proxy.wait_until(proxy.finished)  # the proxy marks a response complete after it
    assert errors(up) == []
    sent = {r.transcript: r.samples for r in proxy.speech()}
    assert len(sent) == len(proxy.speech()) >= 3
    assert all(r.complete for r in proxy.speech())

    # Resampled once per segment, each flushed at its end: the reply has, to the sample, the
    # sum of each segment's samples at the new rate.
    assert all(f.sample_rate == rate for f in down if isinstance(f, TTSAudioRawFrame))
    expected = {text: (n * rate + SAMPLE_RATE // 2) // SAMPLE_RATE for text, n in sent.items()}
    assert len(audio(down)) // 2 == sum(expected.values())
    # Each segment's words are those of one request.
    words = spoken_segments(down, list(sent))
    assert [" ".join(f.text for f in w) for w, _ in words] == list(sent)


async def test_tags_reach_s2_and_the_context_as_written(sidecar: SidecarProcess) -> None:
    async with RecordingProxy(sidecar.url).running() as proxy:
        tts = S2TTSService(base_url=proxy.url, persona=sidecar.persona)
        down, up = await run_test(
            tts, frames_to_send=llm_reply(TAGGED_REPLY, 3), pipeline_params=params()
        )
    assert errors(up) == []
    sent = " ".join(str(r.body["input"]) for r in proxy.speech() if r.body)
    assert "[whisper]" in sent and "[laugh]" in sent
    # Each tag rides with a word, so the words matched against the LLM's text lose none.
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert [f.text for f in words] == [
        "I", "will", "tell", "you", "[whisper] a", "little", "secret", "about", "the",
        "weather", "today.", "The", "sun", "will", "shine", "all", "morning", "and", "it",
        "will", "rain", "at", "night.", "[laugh]",
    ]  # fmt: skip
    assert all(f.append_to_context and f.raw_text == f.text for f in words)
    assert len(audio(down)) > 16000  # more than a second of speech
    assert wer(strip_tags(TAGGED_REPLY), transcribe(audio(down), 16000)) <= MAX_WER


async def test_a_persona_is_registered_once_per_content(sidecar: SidecarProcess) -> None:
    joe = load_personas(PERSONAS_TOML)[0]
    persona = dataclasses.replace(joe, name="pipecat-persona-test")
    async with RecordingProxy(sidecar.url).running() as proxy:
        for _ in range(2):  # two services, as two calls of one bot would have
            tts = S2TTSService(base_url=proxy.url, persona=persona)
            down, up = await run_test(
                tts, frames_to_send=[TTSSpeakFrame("Good morning.")], pipeline_params=params()
            )
            assert errors(up) == []
            assert texts(down) == ["Good", "morning."] and audio(down)
        await proxy.wait_until(proxy.finished)
    assert [u.status for u in proxy.uploads()] == [201]


async def test_text_outside_a_reply_is_spoken_whole(sidecar: SidecarProcess) -> None:
    tts = S2TTSService(base_url=sidecar.url, persona=sidecar.persona)
    text = "Hello there, how are you"
    down, up = await run_test(tts, frames_to_send=[TextFrame(text)], pipeline_params=params())
    assert errors(up) == []
    # Pipecat's token mode gives a bare TextFrame no word frames (no turn ends its
    # sentence); its audio is the whole text, in one context.
    assert index(down, TTSStartedFrame) < index(down, TTSStoppedFrame)
    assert wer(text, transcribe(audio(down), 16000)) <= MAX_WER


async def test_interruption_stops_the_reply_and_its_requests(sidecar: SidecarProcess) -> None:
    long_reply = " ".join(
        f"Item number {n} on the list is a long sentence about the weather and the sea."
        for n in range(1, 31)
    )
    async with (
        FaultProxy(sidecar.url).running() as pacer,
        RecordingProxy(pacer.url).running() as proxy,
    ):
        # The reply's audio comes at a fifth of real time, so its requests are still streaming
        # when the interruption lands, however fast the sidecar is.
        pacer.bytes_per_s = SLOW_BYTES_PER_S
        tts = S2TTSService(base_url=proxy.url, persona=sidecar.persona)
        run = ScriptRun(tts, params())

        def hung_up() -> bool:
            return any(r.done and not r.complete for r in proxy.speech())

        async def unpaced() -> None:
            pacer.bytes_per_s = None

        down, up = await run.script(
            [
                *llm_reply(long_reply, 8)[:-1],  # the LLM is cut off: no end of response
                # The first segment has played: its audio and then its text reached the sink.
                lambda: run.until(lambda: bool(audio(run.down)) and bool(texts(run.down))),
                InterruptionFrame(),
                lambda: proxy.wait_until(hung_up),  # the interruption reached the sidecar
                unpaced,
                TTSSpeakFrame("Sorry, go ahead."),
            ]
        )
        await proxy.wait_until(proxy.finished)

    assert errors(up) == []
    cut = index(down, InterruptionFrame)
    reply_id = next(f.context_id for f in down if isinstance(f, TTSAudioRawFrame))
    assert audio(down[:cut], reply_id), (
        "the reply was playing when interrupted",
        [(type(f).__name__, getattr(f, "context_id", None)) for f in down],
    )
    assert not audio(down[cut:], reply_id), "audio of the interrupted reply after the interruption"
    # The reply was not played to its end, and the speak frame after it was.
    assert " ".join(texts(down[:cut])) in long_reply and texts(down[:cut]) != []
    assert len(texts(down[:cut])) < len(long_reply.split())
    after = down[cut:]
    assert texts(after) == ["Sorry,", "go", "ahead."]
    assert (
        index(after, TTSStartedFrame)
        < index(after, TTSAudioRawFrame)
        < index(after, TTSStoppedFrame)
    )
    # The reply's open requests were hung up on, and no more were made for it.
    reply = [r for r in proxy.speech() if r.transcript in long_reply]
    assert any(not r.complete for r in reply), [(r.transcript, r.complete) for r in reply]
    assert len(reply) < 30


async def test_after_an_interruption_the_context_holds_the_words_heard(
    sidecar: SidecarProcess,
) -> None:
    reply = " ".join(f"Item number {n} is a long sentence about the sea." for n in range(1, 31))
    context = LLMContext()
    changes = Changes()
    tts = S2TTSService(base_url=sidecar.url, persona=sidecar.persona)
    speaker = Speaker(changes)
    pipeline = Pipeline([tts, speaker, LLMContextAggregatorPair(context).assistant()])
    run = ScriptRun(pipeline, params(), changes)
    words_out: list[str] = []

    words_heard: list[str] = []

    @tts.event_handler("on_after_push_frame")
    async def _pushed(_: object, frame: Frame) -> None:
        if isinstance(frame, TTSTextFrame):
            words_out.append(frame.text)
            changes.changed()

    @speaker.event_handler("on_after_push_frame")
    async def _heard(_: object, frame: Frame) -> None:  # released as its audio plays
        if isinstance(frame, TTSTextFrame):
            words_heard.append(frame.text)
            changes.changed()

    # Interrupt a second into the reply, once a whole segment's words (ten) are out of the TTS
    # and not yet heard: playback cannot catch up with them before the interruption lands.
    ahead = lambda: speaker.played_s >= 1.0 and len(words_out) >= len(words_heard) + 10  # noqa: E731
    _, up = await run.script(
        [*llm_reply(reply, 8)[:-1], lambda: run.until(ahead), InterruptionFrame()]
    )
    assert errors(up) == []
    said = " ".join(str(m.get("content", "")) for m in context.get_messages())
    heard = said.split()
    assert heard and heard == reply.split()[: len(heard)], said
    # Fewer words than the TTS had sent downstream: those not yet played were dropped.
    assert len(heard) < len(words_out), (heard, words_out)


async def test_uninterruptible_speech_plays_through_an_interruption(
    sidecar: SidecarProcess,
) -> None:
    text = " ".join(
        f"Please hold the line, this is notice number {n} about the weather and the sea."
        for n in range(1, 11)
    )
    speak = TTSSpeakFrame(text)
    speak.interruptible = False
    async with FaultProxy(sidecar.url).running() as pacer:
        # Paced until the interruption is through, so the audio is still coming when it lands.
        pacer.bytes_per_s = SLOW_BYTES_PER_S
        tts = S2TTSService(base_url=pacer.url, persona=sidecar.persona)
        run = ScriptRun(tts, params())

        async def unpaced() -> None:
            pacer.bytes_per_s = None

        # The interruption lands once the first audio is out, with nine sentences still to come.
        down, up = await run.script(
            [
                speak,
                lambda: run.seen(TTSAudioRawFrame),
                InterruptionFrame(),
                lambda: run.seen(InterruptionFrame),
                unpaced,
            ]
        )
    assert errors(up) == []
    assert index(down, InterruptionFrame) < index(down, TTSAudioRawFrame, last=True)
    assert " ".join(texts(down)) == text
    assert wer(text, transcribe(audio(down), 16000)) <= MAX_WER


async def test_settings_apply_from_the_next_segment(sidecar: SidecarProcess) -> None:
    first = "Well, that is a very good question, and I have thought about it. "
    rest = "The answer is simple. We open the shop at nine in the morning."
    delta = S2TTSService.Settings(seed=7, temperature=0.5, style="calm")
    async with RecordingProxy(sidecar.url).running() as proxy:
        tts = S2TTSService(base_url=proxy.url, persona=sidecar.persona)
        run = ScriptRun(tts, params())

        def first_sent() -> bool:
            return " ".join(r.transcript for r in proxy.speech()).split() == first.split()

        down, up = await run.script(
            [
                *llm_reply(first + "The")[:-1],  # "The" confirms the end of the first sentence
                lambda: proxy.wait_until(first_sent),  # its requests are out, with the old options
                TTSUpdateSettingsFrame(delta=delta, service=tts),
                *llm_reply(rest[3:])[1:],
            ]
        )
    assert errors(up) == []
    before = [r.body or {} for r in proxy.speech() if r.transcript in first]
    after = [r.body or {} for r in proxy.speech() if r.transcript in rest]
    assert before and after and len(before) + len(after) == len(proxy.speech())
    assert all(body.keys().isdisjoint({"seed", "temperature", "style"}) for body in before)
    assert all((b["seed"], b["temperature"], b["style"]) == (7, 0.5, "calm") for b in after)
    assert " ".join(texts(down)).split() == (first + rest).split()


async def test_a_sidecar_that_is_down_is_written_off_at_once_and_back_when_it_answers(
    sidecar: SidecarProcess,
) -> None:
    async with FaultProxy(sidecar.url).running(Fault.REFUSE) as proxy:
        tts = S2TTSService(base_url=proxy.url, persona=sidecar.persona)
        run = ScriptRun(tts, params())

        @tts.event_handler("on_usable_changed")
        async def _usable(*_: object) -> None:
            run.changes.changed()

        down, up = await run.script(
            [
                *llm_reply(REPLY),
                lambda: run.until(lambda: not tts.is_usable),
                lambda: run.seen(TTSStoppedFrame),
                lambda: proxy.set(Fault.PASS),
                lambda: run.until(lambda: tts.is_usable),  # it watched the sidecar come back
                TTSSpeakFrame("Good morning."),
            ]
        )
    # One error, at the first reply, as a lost connection: no silent-reply errors after it.
    assert len(errors(up)) == 1, errors(up)
    (error,) = [f for f in up if isinstance(f, ErrorFrame)]
    assert "cannot reach the S2 sidecar" in error.error
    assert error.category == ErrorCategory.CONNECTIVITY and error.processor is tts
    assert texts(down)[-2:] == ["Good", "morning."]
    assert wer("Good morning.", transcribe(audio(down), 16000)) <= MAX_WER


async def test_a_switcher_fails_over_from_a_dead_sidecar_at_the_first_reply(
    sidecar: SidecarProcess,
) -> None:
    with closed_port() as port:
        dead = S2TTSService(base_url=f"http://127.0.0.1:{port}")
        alive = S2TTSService(base_url=sidecar.url, persona=sidecar.persona)
        switcher = ServiceSwitcher([dead, alive], strategy_type=ServiceSwitcherStrategyFailover)
        run = ScriptRun(switcher, params())
        down, up = await run.script(
            [
                *llm_reply("Is anyone there?"),
                lambda: run.until(lambda: switcher.strategy.active_service is alive),
                TTSSpeakFrame("Good morning."),
            ]
        )
    # The switcher answered for the error (it moved on), so nothing reached the pipeline.
    assert errors(up) == []
    assert dead.is_usable is False and alive.is_usable
    assert switcher.strategy.active_service is alive
    assert texts(down)[-2:] == ["Good", "morning."]
    assert wer("Good morning.", transcribe(audio(down), 16000)) <= MAX_WER


async def test_a_persona_that_cannot_be_registered_for_want_of_a_sidecar_is_one_error() -> None:
    persona = load_personas(PERSONAS_TOML)[0]
    with closed_port() as port:
        tts = S2TTSService(base_url=f"http://127.0.0.1:{port}", persona=persona)
        frames = [*llm_reply(REPLY), TTSSpeakFrame("Are you there?")]
        _, up = await run_test(tts, frames_to_send=frames, pipeline_params=params())
    assert len(errors(up)) == 1, errors(up)
    assert "cannot register persona 'joe'" in errors(up)[0]
    assert "cannot reach the S2 sidecar" in errors(up)[0]
    assert not tts.is_usable


async def test_a_sidecar_that_fails_one_request_stays_usable() -> None:
    async with pcm_server() as server:
        tts = S2TTSService(base_url=server.url, persona="drop")
        _, up = await run_test(
            tts, frames_to_send=[TTSSpeakFrame("Hello there.")], pipeline_params=params()
        )
    assert any("speech request failed" in e for e in errors(up)), errors(up)
    assert tts.is_usable


async def test_an_unknown_persona_is_an_error_and_the_next_reply_speaks(
    sidecar: SidecarProcess,
) -> None:
    tts = S2TTSService(base_url=sidecar.url, persona="nobody")
    fix = TTSUpdateSettingsFrame(delta=S2TTSService.Settings(voice=sidecar.persona), service=tts)
    run = ScriptRun(tts, params())
    # The reply's requests have failed before the update: its error is out.
    wait_error = lambda: run.seen(ErrorFrame, upstream=True)  # noqa: E731
    down, up = await run.script([*llm_reply(REPLY), wait_error, fix, TTSSpeakFrame("Hello again.")])
    assert any("404" in e and "nobody" in e for e in errors(up)), errors(up)
    # (Pipecat puts the text of a reply that played nothing in the context all the same.)
    assert texts(down)[-2:] == ["Hello", "again."]
    assert audio(down)


async def test_a_stalled_sidecar_times_out_with_an_error() -> None:
    async with pcm_server() as server:
        tts = S2TTSService(base_url=server.url, persona="stall", read_timeout=0.5)
        down, up = await run_test(
            tts, frames_to_send=[TTSSpeakFrame("Hello there.")], pipeline_params=params()
        )
    assert any("no audio" in e for e in errors(up)), errors(up)
    assert index(down, TTSStartedFrame) < index(down, TTSStoppedFrame)
    assert tts.is_usable  # a sidecar that answers and stalls once is worth the next reply


async def test_processing_time_is_not_reported_for_audio_made_elsewhere(
    sidecar: SidecarProcess,
) -> None:
    # run_tts hands text to the reply's stream and returns; the audio comes from its task.
    tts = S2TTSService(base_url=sidecar.url, persona=sidecar.persona)
    assert tts.supports_processing_metrics is False
    down, up = await run_test(
        tts, frames_to_send=[TTSSpeakFrame("Hello there.")], pipeline_params=params()
    )
    assert errors(up) == [] and audio(down)
    data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
    assert not [d for d in data if isinstance(d, ProcessingMetricsData) and d.value > 0], data
    assert [d for d in data if isinstance(d, TTFBMetricsData) and d.value > 0]


def test_settings_take_the_cores_speech_settings_and_style_works() -> None:
    fields = {f.name for f in dataclasses.fields(S2TTSService.Settings)}
    assert set(SPEECH_SETTINGS) <= fields
    tts = S2TTSService(style="warm", settings=S2TTSService.Settings(seed=3))
    assert (tts.settings.style, tts.settings.seed) == ("warm", 3)


def test_tts_service_arguments_pass_and_anything_else_is_refused() -> None:
    tts = S2TTSService(name="voice", max_consecutive_zero_audio_contexts=1)
    assert tts.name == "voice"
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) keep_tags, voice_id"):
        S2TTSService(voice_id="ava", keep_tags=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="sets push_text_frames itself"):
        S2TTSService(push_text_frames=True)


async def test_clients_see_the_words_without_tags() -> None:
    plain = await without_tags("[whisper] a little", "word", "[whisper] a", " little [laugh]")
    assert (plain.text, plain.accumulated_text, plain.remaining_text) == (
        "a little",
        "a",
        "little",
    )
    # RTVI takes it as a progress-aware transform: no deprecation warning at registration.
    rtvi = RTVIObserver(RTVIProcessor(), params=RTVIObserverParams())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rtvi.add_bot_output_transformer(without_tags)
