"""One spoken reply: LLM text fragments in, ordered PCM out, requests pipelined ahead.

Both adapters drive a `SpeechStream` per reply: `push_text()` as the LLM streams, `end_input()`
when it is done, and iterate the events. Each segment the segmenter cuts becomes one request;
up to `ahead` requests are open at once, so the next sentence is generated while the current
one plays, and audio still comes out strictly in segment order, resampled once to the
framework's rate with the resampler flushed at every segment end.

A `transform` (the frameworks' text transforms, a pronunciation lexicon) is applied to each
segment just before it is requested: there every word is whole, which a token stream is not
("Met" + "formin"), and the events keep the text as it came, so transcripts and word timings
show what the LLM wrote.

Each look-ahead request says when its audio is due (`X-Audio-Due-In`): when the audio before it
runs out, counting from a player that plays what the stream yields from its first chunk, and
reckoning the audio still to come of the segments before it from their text, at a speaking rate
faster than S2's so that the due time is never late. The sidecar generates the most urgent
audio first and holds a look-ahead until it is nearly due.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from s2_plugin import tags
from s2_plugin.audio import SAMPLE_RATE, StreamResampler
from s2_plugin.client import ConnectionTiming, S2Client
from s2_plugin.personas import check_speakers
from s2_plugin.protocol import DEFAULT_VOICE
from s2_plugin.segment import Segment, Segmenter

__all__ = [
    "SPEECH_SETTINGS",
    "AudioChunk",
    "SegmentEnd",
    "SegmentStart",
    "SpeechOptions",
    "SpeechStream",
    "StreamEvent",
]


@dataclass(frozen=True)
class SpeechOptions:
    """What every request of a reply carries; read when each segment is sent."""

    voice: str = DEFAULT_VOICE
    cast: tuple[str, ...] = ()
    """Persona names, speaker 0 first: a segment of speaker N is spoken by the Nth."""
    cast_requests: bool = False
    """Send each segment as a cast request (the whole cast in S2's context) rather than as a
    request for its speaker's persona alone; see `request`."""
    style: str | None = None
    """Overrides the persona's default style tag; '' turns it off, None keeps it."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    max_new_tokens: int | None = None

    def request(self, segment: Segment) -> tuple[str, dict[str, Any]]:
        """The input and the request fields for one segment.

        With a cast, a segment goes by default to its speaker's persona alone: each persona's
        prefix is then the one S2 keeps warm for it anyway, and the prompt holds one clip
        instead of the whole cast's (half the reference frames for two speakers). A cast
        request puts every clip in the context, for a handover where the voices must match
        S2's multi-speaker training; `bench/bench_cast.py` measures both.
        """
        fields = {k: v for k, v in asdict(self).items() if v is not None and k not in _CASTING}
        if not self.cast:
            return segment.text, fields
        check_speakers(tags.speaker_tag(segment.speaker), self.cast)
        words = tags.strip_speakers(segment.text)
        if not self.cast_requests:
            return words, {**fields, "voice": self.cast[segment.speaker]}
        del fields["voice"]
        tag = f"{tags.speaker_tag(segment.speaker)} " if segment.speaker else ""
        return tag + words, {**fields, "cast": list(self.cast)}


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """PCM16 mono at the stream's sample rate, belonging to segment `index`: all of its audio
    that had arrived when the reader asked."""

    index: int
    pcm: bytes
    last: bool = False
    """The segment's audio ends with this chunk (its whole audio is known now)."""


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """Segment `index` is next: its audio follows (captions can show its words now)."""

    index: int
    text: str
    """The segment as written (before the stream's transform), tags included."""
    transcript: str
    """The same text without tags: what will be said."""
    speaker: int = 0
    """Who says it: an index into the options' cast."""


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """All audio of segment `index` has been yielded."""

    index: int
    text: str
    """The segment as written (before the stream's transform), tags included."""
    transcript: str
    """The same text without tags: what was said."""
    samples: int
    """Samples yielded for this segment, at the stream's sample rate."""
    first_byte_s: float
    """From sending the request to its first PCM byte (not to first audio played)."""
    speaker: int = 0
    """Who said it: an index into the options' cast."""
    connection: ConnectionTiming = field(default_factory=ConnectionTiming)
    """How its request got a connection to the sidecar (for connection metrics)."""


StreamEvent = AudioChunk | SegmentStart | SegmentEnd

_CASTING = frozenset({"cast", "cast_requests"})

SPEECH_SETTINGS = tuple(
    f.name for f in dataclasses.fields(SpeechOptions) if f.name not in ("voice", *_CASTING)
)
"""The per-request settings (style and sampling), defined once by `SpeechOptions`: the
adapters' settings and options take exactly these names."""

_DONE = object()
_CLOSED = object()
_FAST_CHARS_PER_S = 25.0
"""Faster than S2 speaks (about 15 characters a second): audio of text not yet heard is
reckoned short, so a look-ahead's due time errs early."""


@dataclass(eq=False)
class _Request:
    """One segment's request in flight: its audio queued for the reader as it arrives."""

    index: int
    text: str
    speaker: int
    sent_at: float = 0.0
    first_at: float | None = None
    yielded_s: float = 0.0
    connection: ConnectionTiming = field(default_factory=ConnectionTiming)
    chunks: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class SpeechStream:
    """Text fragments in, ordered audio events out; see the module docstring."""

    def __init__(
        self,
        client: S2Client,
        options: SpeechOptions | Callable[[], SpeechOptions],
        *,
        sample_rate: int = SAMPLE_RATE,
        ahead: int = 2,
        segmenter: Segmenter | None = None,
        transform: Callable[[str], Awaitable[str]] | None = None,
        timeout: float | None = None,
    ) -> None:
        """`timeout`: each request's connect and read timeout (the client's default if None)."""
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1 (requests open at once), got {ahead}")
        self._client = client
        self._options = options if callable(options) else (lambda: options)
        self._ahead = ahead
        self._timeout = timeout
        self._segmenter = segmenter or Segmenter()
        self._transform = transform
        self._resampler = StreamResampler(SAMPLE_RATE, sample_rate)
        self.sample_rate = sample_rate
        self._waiting: deque[_Request] = deque()
        self._sent: deque[_Request] = deque()
        self._open = 0
        self._count = 0
        self._ended = False
        self._closed = False
        self._changed = asyncio.Event()
        self._play_end: float | None = None
        """When the audio yielded so far has played, for a player that started at the first."""

    def push_text(self, fragment: str) -> None:
        """Add LLM text; each segment it completes is sent as soon as a slot is free."""
        self._check_open()
        for segment in self._segmenter.push(fragment):
            self._add(segment)

    def end_input(self) -> None:
        """No more text for this reply: send what the segmenter still holds."""
        self._check_open()
        for segment in self._segmenter.flush():
            self._add(segment)
        self._ended = True
        self._changed.set()

    @property
    def segments(self) -> int:
        """Segments cut from the text so far."""
        return self._count

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SpeechStream is closed; start a new one for the next reply")
        if self._ended:
            raise RuntimeError("end_input() was called; start a new SpeechStream for more text")

    def _add(self, segment: Segment) -> None:
        text = tags.repair(segment.text)
        if not tags.has_speech(text):
            return
        self._waiting.append(_Request(self._count, text, segment.speaker))
        self._count += 1
        self._send_waiting()
        self._changed.set()

    def _send_waiting(self) -> None:
        while self._waiting and self._open < self._ahead and not self._closed:
            request = self._waiting.popleft()
            self._open += 1
            # Options are read now, not when the task first runs, so a settings change made
            # right after this call applies from the next request, exactly.
            options = self._options()
            fetch = self._fetch(request, options, self._due_in())
            request.task = asyncio.get_running_loop().create_task(fetch)
            self._sent.append(request)

    def _due_in(self) -> float | None:
        """Seconds until the audio of a request sent now must play: what is yielded and not yet
        played, plus the audio still to come of every request before it. None for the first."""
        if not self._sent:
            return None if self._play_end is None else self._unplayed()
        rest = sum(
            max(0.0, len(tags.strip_tags(r.text)) / _FAST_CHARS_PER_S - r.yielded_s)
            for r in self._sent
        )
        return self._unplayed() + rest

    def _unplayed(self) -> float:
        return max(0.0, (self._play_end or 0.0) - time.perf_counter())

    def _yielded(self, request: _Request, samples: int) -> None:
        now = time.perf_counter()
        seconds = samples / self.sample_rate
        self._play_end = max(self._play_end or now, now) + seconds
        request.yielded_s += seconds

    async def _fetch(self, request: _Request, options: SpeechOptions, due: float | None) -> None:
        request.sent_at = time.perf_counter()
        try:
            said = await self._transform(request.text) if self._transform else request.text
            text, fields = options.request(Segment(said, request.speaker))
            speech = self._client.speech(
                text, connection=request.connection, timeout=self._timeout, due_in=due, **fields
            )
            async for pcm in speech:
                if request.first_at is None:
                    request.first_at = time.perf_counter()
                request.chunks.put_nowait(pcm)
            request.chunks.put_nowait(_DONE)
        except Exception as e:  # handed to the reader, in order, with the request's audio
            request.chunks.put_nowait(e)
        finally:
            self._open -= 1
            self._send_waiting()

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        """Per segment, in order: `SegmentStart`, its `AudioChunk`s, `SegmentEnd`.

        A failed request raises its error when its turn comes; leaving the loop early (or
        being cancelled) closes the stream and every request still open.
        """
        finished = False
        try:
            while True:
                if self._closed:  # by aclose(), perhaps from another task
                    finished = True
                    return
                if not self._sent:
                    if self._ended and not self._waiting:
                        finished = True
                        return
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                request = self._sent[0]
                transcript = tags.strip_tags(request.text)
                yield SegmentStart(request.index, request.text, transcript, request.speaker)
                samples = 0
                item: Any = None
                while item is not _DONE:
                    item = await request.chunks.get()
                    # Everything that has arrived goes out as one chunk, so a segment whose
                    # audio is all in (the one generated ahead) is one chunk marked `last`.
                    arrived = bytearray()
                    while isinstance(item, bytes):
                        arrived += item
                        item = request.chunks.get_nowait() if request.chunks.qsize() else None
                    pcm = self._resampler.process(bytes(arrived)) if arrived else b""
                    if item is _DONE:
                        pcm += self._resampler.flush()
                    if pcm:
                        samples += len(pcm) // 2
                        self._yielded(request, len(pcm) // 2)
                        yield AudioChunk(request.index, pcm, last=item is _DONE)
                    if item is _CLOSED:
                        finished = True
                        return
                    if isinstance(item, BaseException):
                        raise item
                self._sent.popleft()
                yield SegmentEnd(
                    index=request.index,
                    text=request.text,
                    transcript=transcript,
                    samples=samples,
                    first_byte_s=(request.first_at or request.sent_at) - request.sent_at,
                    speaker=request.speaker,
                    connection=request.connection,
                )
        finally:
            if not finished:
                await self.aclose()

    async def aclose(self) -> None:
        """Cancel every open request and drop all text and audio not yet yielded.

        A reader iterating the stream in another task ends its loop (its audio stops).
        """
        self._closed = True
        tasks = [s.task for s in self._sent if s.task is not None]
        for request in self._sent:
            request.chunks.put_nowait(_CLOSED)  # wakes a reader waiting for this audio
        self._sent.clear()
        self._waiting.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._resampler.reset()
        self._segmenter.reset()
        self._changed.set()
