import asyncio
import itertools

import numpy as np
import pytest
from support.pcm_server import expected_samples, level, pcm_server
from support.proxy import Fault, FaultProxy
from support.waiting import LIMIT_S, until

from s2_plugin.client import S2Client, S2StatusError, S2TimeoutError
from s2_plugin.lexicon import Lexicon
from s2_plugin.personas import PersonaError
from s2_plugin.protocol import SAMPLING_FIELDS, SpeechRequest
from s2_plugin.segment import Segment
from s2_plugin.stream import (
    SPEECH_SETTINGS,
    AudioChunk,
    SegmentEnd,
    SegmentStart,
    SpeechOptions,
    SpeechStream,
    StreamEvent,
)

REPLY = (
    "Well, that is a very good question indeed. [whisper] Let me think about it for a moment. "
    "The answer is forty two! [laugh]"
)


def tokens(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def speak(stream: SpeechStream, text: str) -> list[StreamEvent]:
    async def feed() -> None:
        for token in tokens(text):
            stream.push_text(token)
            await asyncio.sleep(0)
        stream.end_input()

    feeder = asyncio.create_task(feed())
    events = [event async for event in stream]
    await feeder
    return events


async def test_audio_comes_in_segment_order_with_exact_counts() -> None:
    async with pcm_server(chunk_delay_s=0.002) as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"), ahead=3)
        events = await speak(stream, REPLY)
    ends = [e for e in events if isinstance(e, SegmentEnd)]
    sent = [r["input"] for r in server.requests]
    assert len(ends) >= 3
    assert [e.text for e in ends] == sent
    assert " ".join(sent).split() == REPLY.split()
    for end in ends:
        audio = b"".join(
            e.pcm for e in events if isinstance(e, AudioChunk) and e.index == end.index
        )
        pcm = np.frombuffer(audio, "<i2")
        assert end.samples == len(pcm) == expected_samples(end.text)
        assert set(pcm.tolist()) == {level(end.text)}
        assert "[" not in end.transcript
    order = [e.index for e in events]
    assert order == sorted(order), "no chunk of a later segment before an earlier one ends"
    for end in ends:  # each segment: its start, its audio, its end
        kinds = [type(e) for e in events if e.index == end.index]
        assert kinds[0] is SegmentStart and kinds[-1] is SegmentEnd
        assert set(kinds[1:-1]) == {AudioChunk}
    starts = [e for e in events if isinstance(e, SegmentStart)]
    assert [(s.text, s.transcript) for s in starts] == [(e.text, e.transcript) for e in ends]


async def test_next_requests_are_open_while_the_current_one_plays() -> None:
    async with pcm_server(chunk_delay_s=0.01) as server, S2Client(server.url) as client:
        await speak(SpeechStream(client, SpeechOptions(voice="ok"), ahead=2), REPLY)
        assert server.max_open_streams == 2
        server.max_open_streams = 0
        await speak(SpeechStream(client, SpeechOptions(voice="ok"), ahead=1), REPLY)
        assert server.max_open_streams == 1


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_each_segment_is_resampled_to_its_exact_length(rate: int) -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"), sample_rate=rate)
        events = await speak(stream, REPLY)
    for end in (e for e in events if isinstance(e, SegmentEnd)):
        n = sum(
            len(e.pcm) // 2 for e in events if isinstance(e, AudioChunk) and e.index == end.index
        )
        assert n == end.samples == round(expected_samples(end.text) * rate / 44100)


async def test_options_are_read_per_segment() -> None:
    seeds = itertools.count()
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, lambda: SpeechOptions(voice="ok", seed=next(seeds)))
        await speak(stream, REPLY)
    assert [r["seed"] for r in server.requests] == list(range(len(server.requests)))


async def test_an_options_change_applies_exactly_from_the_next_segment() -> None:
    options = SpeechOptions(voice="ok", seed=1)
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, lambda: options)
        stream.push_text("Hello there my dear friend, how")  # cuts the first clause
        assert stream.segments == 1
        options = SpeechOptions(voice="ok", seed=2)  # no await in between
        stream.push_text(" are you doing today?")
        stream.end_input()
        _ = [event async for event in stream]
    assert [r["seed"] for r in server.requests] == [1, 2]


async def test_a_failed_segment_raises_in_its_turn_after_the_audio_before_it() -> None:
    voices = iter(["ok", "error400", "ok", "ok", "ok"])
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, lambda: SpeechOptions(voice=next(voices)), ahead=3)
        for token in tokens(REPLY):
            stream.push_text(token)
        stream.end_input()
        seen: list[StreamEvent] = []
        with pytest.raises(S2StatusError, match="unknown persona"):
            async for event in stream:
                seen.append(event)
        await until(lambda: server.open_streams == 0, "the requests after it were closed")
    assert [e.index for e in seen if isinstance(e, SegmentEnd)] == [0]
    assert {e.index for e in seen if isinstance(e, AudioChunk)} == {0}
    assert any(isinstance(e, AudioChunk) for e in seen)


async def test_cancelling_mid_reply_closes_every_open_request() -> None:
    async with pcm_server(chunk_delay_s=0.02) as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"), ahead=2)
        before = asyncio.all_tasks()
        for token in tokens(REPLY):
            stream.push_text(token)
        stream.end_input()
        async for event in stream:
            if isinstance(event, AudioChunk):
                break  # leaving the loop mid-audio closes the stream
        await until(lambda: server.open_streams == 0, "the server saw every hang-up")
        # One request or two reached the server by the break, as the machine's pace has it:
        # each one that did was hung up on.
        assert server.disconnects == len(server.requests) > 0
        assert asyncio.all_tasks() <= before | {asyncio.current_task()}


async def test_tag_only_text_sends_nothing() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"))
        events = await speak(stream, "[laugh] [sigh]")
    assert events == []
    assert server.requests == []


async def test_stray_brackets_from_the_llm_are_dropped_not_fatal() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"))
        events = await speak(stream, "Here is a list [ of things to buy. [laugh] Done now.")
    assert [r["input"] for r in server.requests] == [
        "Here is a list  of things to buy.",
        "[laugh] Done now.",
    ]
    assert any(isinstance(e, AudioChunk) for e in events)


async def test_text_after_end_input_is_refused() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"))
        stream.end_input()
        with pytest.raises(RuntimeError, match="new SpeechStream"):
            stream.push_text("more")
        assert [e async for e in stream] == []
    assert server.requests == []


def test_ahead_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SpeechStream(S2Client(), SpeechOptions(), ahead=0)


# --- casts


def test_with_a_cast_each_segment_goes_to_its_speakers_persona() -> None:
    options = SpeechOptions(voice="ava", cast=("ava", "ben"), seed=3)
    assert options.request(Segment("Hello there.", 0)) == (
        "Hello there.",
        {"voice": "ava", "seed": 3},
    )
    assert options.request(Segment("<|speaker:1|> [laugh] Hi!", 1)) == (
        "[laugh] Hi!",
        {"voice": "ben", "seed": 3},
    )
    # Cut in the middle of a turn: no tag in the text, the speaker still counts.
    assert options.request(Segment("how are you?", 1))[1]["voice"] == "ben"


def test_cast_requests_carry_the_cast_and_the_speaker_tag() -> None:
    options = SpeechOptions(cast=("ava", "ben"), cast_requests=True)
    assert options.request(Segment("how are you?", 1)) == (
        "<|speaker:1|> how are you?",
        {"cast": ["ava", "ben"]},
    )
    # SGLang-Omni opens every input with <|speaker:0|> itself.
    assert options.request(Segment("<|speaker:0|> Fine.", 0)) == ("Fine.", {"cast": ["ava", "ben"]})


def test_a_speaker_beyond_the_cast_is_an_error_that_names_the_cast() -> None:
    with pytest.raises(
        PersonaError, match=r"<\|speaker:2\|> names no one.*ava, <\|speaker:1\|> ben"
    ):
        SpeechOptions(cast=("ava", "ben")).request(Segment("Hi.", 2))


@pytest.mark.parametrize("mid_audio", [False, True])
async def test_aclose_from_another_task_ends_the_readers_loop(mid_audio: bool) -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        # "stall": one chunk, then nothing; without text the reader waits for a segment.
        stream = SpeechStream(client, SpeechOptions(voice="stall"))
        first_audio = asyncio.Event()
        events: list[StreamEvent] = []

        async def read() -> None:
            async for event in stream:
                events.append(event)
                if isinstance(event, AudioChunk):
                    first_audio.set()

        reader = asyncio.create_task(read())
        if mid_audio:
            stream.push_text("Hello there, this is a stalled reply.")
            stream.end_input()
            await asyncio.wait_for(first_audio.wait(), LIMIT_S)
        else:
            await asyncio.sleep(0)  # the reader is waiting for text
        await stream.aclose()
        await asyncio.wait_for(reader, LIMIT_S)  # hung forever before
        # Read while the server runs: stopping it closes every stream anyway.
        await until(lambda: server.open_streams == 0, "the stalled request was closed")
    assert any(isinstance(e, AudioChunk) for e in events) == mid_audio
    assert not any(isinstance(e, SegmentEnd) for e in events)
    with pytest.raises(RuntimeError, match=r"closed|end_input"):
        stream.push_text("More.")


def test_speech_settings_are_the_wire_sampling_fields_and_style() -> None:
    assert set(SPEECH_SETTINGS) == {"style", *SAMPLING_FIELDS}
    assert set(SPEECH_SETTINGS) <= set(SpeechRequest.model_fields)


async def test_look_ahead_requests_say_when_their_audio_is_due() -> None:
    text = "First one is here. Then the second sentence. And a third one at the end."
    async with pcm_server(first_delay_s=0.2) as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"), ahead=3)
        # All three go out before any audio (it takes 0.2 s) has played.
        starts = [e for e in await speak(stream, text) if isinstance(e, SegmentStart)]
    assert len(starts) == 3 and server.due[0] is None  # the first is due now
    # Not yet playing: each is due when the text before it has been spoken, reckoned fast.
    chars = [len(s.transcript) for s in starts]
    assert [float(d or 0) for d in server.due[1:]] == pytest.approx(
        [chars[0] / 25, (chars[0] + chars[1]) / 25], abs=0.002
    )


async def test_the_transform_sees_whole_words_and_the_events_keep_the_text_as_written() -> None:
    lexicon = Lexicon({"Metformin": "M EH0 T F AO1 R M IH0 N"})

    async def pronounce(text: str) -> str:
        return lexicon.apply(text)

    reply = "Take your Metformin with food. Metformin works best that way, they say."
    async with pcm_server() as server, S2Client(server.url) as client:
        stream = SpeechStream(client, SpeechOptions(voice="ok"), transform=pronounce)
        events = await speak(stream, reply)  # in 4-character tokens: "Metf" + "ormi" + "n"
    sent = [r["input"] for r in server.requests]
    assert " ".join(sent).count("<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N") == 2
    ends = [e for e in events if isinstance(e, SegmentEnd)]
    assert " ".join(e.transcript for e in ends) == reply


async def test_a_chunk_marked_last_ends_its_segment() -> None:
    # Slow chunks, one request at a time: the reader waits, so each chunk goes out alone, and
    # the one that brings the end of the segment says so (unless the end came on its own).
    async with pcm_server(chunk_delay_s=0.01) as server, S2Client(server.url) as client:
        events = await speak(SpeechStream(client, SpeechOptions(voice="ok"), ahead=1), REPLY)
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    ends = [e.index for e in events if isinstance(e, SegmentEnd)]
    assert all(sum(c.index == i for c in chunks) > 1 for i in ends)
    last = [c for c in chunks if c.last]
    assert len({c.index for c in last}) == len(last)  # at most one per segment
    after_last = [b for a, b in itertools.pairwise(events) if isinstance(a, AudioChunk) and a.last]
    assert len(after_last) == len(last) and all(isinstance(e, SegmentEnd) for e in after_last)


async def test_each_request_times_out_after_the_streams_timeout() -> None:
    async with (
        pcm_server() as server,
        FaultProxy(server.url).running(Fault.BLACKHOLE) as proxy,
        S2Client(proxy.url, read_timeout=60) as client,
    ):
        stream = SpeechStream(client, SpeechOptions(voice="ok"), timeout=0.3)
        with pytest.raises(S2TimeoutError):
            await speak(stream, "Hello there.")
        await proxy.wait_until(lambda: proxy.connections == 0)
