"""LiveKit TTS for Fish Audio S2-Pro personas served by a local `s2-sidecar`.

Text goes through the core's `SpeechStream`: the tag-aware segmenter cuts it (LiveKit's sentence
tokenizers split `[tags]`), the next segment's request is open while the current one plays, and
audio comes back in order, resampled once from 44.1 kHz to the declared rate. `TTS.markup`
teaches an LLM S2's tags, through LiveKit's markup hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    SpeechSteeringOptions,
    tts,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import is_given

from s2_plugin.audio import check_rate
from s2_plugin.client import S2Client, S2ConnectionError, S2Error, S2StatusError, S2TimeoutError
from s2_plugin.lexicon import Lexicon
from s2_plugin.personas import Persona, validate_cast
from s2_plugin.prompt import tag_guide
from s2_plugin.protocol import DEFAULT_URL, DEFAULT_VOICE
from s2_plugin.registrar import Registrar, voice_name
from s2_plugin.stream import AudioChunk, SegmentEnd, SegmentStart, SpeechOptions, SpeechStream
from s2_plugin.timing import Pace, WordClock

from .log import logger
from .models import TTSSampleRate

NUM_CHANNELS = 1


@dataclass
class _TTSOptions:
    persona: str | Persona
    cast: list[str | Persona]
    speech: SpeechOptions
    sample_rate: int
    lexicon: Lexicon = field(default_factory=Lexicon)


class TTS(tts.TTS[None]):
    class Markup(tts.TTS.Markup):
        """S2's inline tags as LiveKit's markup hook declares a provider's dialect.

        `llm_instructions()` is the core's `tag_guide()` for this TTS's style and cast, kept in
        step with `update_options`. Nothing is lowered: S2 reads its own tags, so `normalize`
        and `convert` stay the base's no-ops and `_provider_key()` stays "" (LiveKit's markup
        tables, `tts/_provider_format.py`, hold no S2 dialect). The tag-aware segmenter, not a
        LiveKit tokenizer, keeps every tag whole.

        LiveKit 1.8.9 injects these instructions itself only for `inference.TTS` and a
        `tts.StreamAdapter` (`AgentActivity._resolve_expressive_options`: a natively streaming
        plugin owns its input path), so with this TTS add them to the agent's instructions.
        """

        def llm_instructions(self, *, speech_steering: SpeechSteeringOptions | None = None) -> str:
            # S2's cues are free-form, with no per-sound vocabulary for steering to narrow.
            assert isinstance(self._tts, TTS)
            opts = self._tts._opts
            style = opts.speech.style
            if style is None and isinstance(opts.persona, Persona):
                style = opts.persona.style
            return tag_guide(style, cast=opts.speech.cast or None)

    def __init__(
        self,
        *,
        persona: str | Persona = DEFAULT_VOICE,
        cast: Sequence[str | Persona] | None = None,
        style: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
        sample_rate: TTSSampleRate = 24000,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        http_session: aiohttp.ClientSession | None = None,
        pronunciations: Mapping[str, str] | None = None,
    ) -> None:
        """S2-Pro speech from an `s2-sidecar` (`s2-sidecar serve`).

        Args:
            persona: A persona registered on the sidecar, by name, or a `Persona` (reference
                clip + transcript), registered on first use or by `prewarm()`.
            cast: Several voices, speaker 0 first (names or `Persona`s, registered like
                ``persona``): ``<|speaker:N|>`` in the LLM's text hands over to the Nth, and
                every segment is spoken by its turn's persona, also one cut mid-turn. Speaker
                0 is the voice unless ``persona`` is given. Transcripts name who spoke
                (`TimedString.speaker_id`); ``markup.llm_instructions()`` teaches the LLM
                the speaker tags.
            style: Style tag for every request, e.g. "warm"; overrides the persona's default
                style, "" turns it off.
            temperature, top_p, top_k, repetition_penalty, seed, max_new_tokens: S2 sampling.
            sample_rate: The rate of the frames this TTS emits. S2 speaks at 44.1 kHz; the
                plugin resamples once, per segment. 24 kHz is what `AgentSession` plays in a
                room (and in console mode), so nothing downstream resamples again.
            base_url: The sidecar, by default on loopback.
            api_key: The sidecar's API key, if it was started with one.
            http_session: An aiohttp session to share; by default the job's shared session
                (`utils.http_context`), or outside a job (scripts, tests) one of its own.
            pronunciations: How to say words, ``{"read": "ɹɛd", "Niamh": "N IY1 V"}``: IPA
                or CMU Arpabet, sent to S2 as its phoneme markup. Each whole word (any case) is
                replaced in every segment just before it is sent, so ``tts_text_transforms``
                have run and the word is whole; transcripts keep the word. A pronunciation
                with a phone Arpabet cannot write is reported once and the word said as
                written.
        """
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=True),
            sample_rate=check_rate(sample_rate),
            num_channels=NUM_CHANNELS,
        )
        members = list(cast or ())
        if members and persona == DEFAULT_VOICE:
            persona = members[0]
        self._opts = _TTSOptions(
            persona=persona,
            cast=members,
            speech=SpeechOptions(
                voice=voice_name(persona),
                cast=tuple(validate_cast([voice_name(p) for p in members])) if members else (),
                style=style,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                repetition_penalty=repetition_penalty,
                seed=seed,
                max_new_tokens=max_new_tokens,
            ),
            sample_rate=sample_rate,
            lexicon=_lexicon(pronunciations or {}),
        )
        self._base_url = base_url
        self._api_key = api_key
        self._session = http_session
        self._owns_session = False
        self._s2: S2Client | None = None
        self._registrar = Registrar([persona, *members], logger.warning)
        self._pace = Pace()  # the voice's pace, learned over replies, times words ahead
        self._prewarm_task: asyncio.Task[None] | None = None
        self._streams = weakref.WeakSet[SynthesizeStream]()

    @property
    def model(self) -> str:
        """The model the sidecar reports (S2-Pro, or the preview voice) once it was asked."""
        return self._registrar.model or "s2-pro"

    @property
    def provider(self) -> str:
        return "s2-sidecar"

    def update_options(
        self,
        *,
        persona: NotGivenOr[str | Persona] = NOT_GIVEN,
        style: NotGivenOr[str | None] = NOT_GIVEN,
        temperature: NotGivenOr[float | None] = NOT_GIVEN,
        top_p: NotGivenOr[float | None] = NOT_GIVEN,
        top_k: NotGivenOr[int | None] = NOT_GIVEN,
        repetition_penalty: NotGivenOr[float | None] = NOT_GIVEN,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        max_new_tokens: NotGivenOr[int | None] = NOT_GIVEN,
        pronunciations: NotGivenOr[Mapping[str, str] | None] = NOT_GIVEN,
    ) -> None:
        """Change the voice, sampling or pronunciations (all of them, as in `__init__`);
        replies started after this call use them."""
        settings: dict[str, Any] = {
            "style": style,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "repetition_penalty": repetition_penalty,
            "seed": seed,
            "max_new_tokens": max_new_tokens,
        }
        changes = {name: value for name, value in settings.items() if is_given(value)}
        if isinstance(persona, str | Persona):
            self._opts.persona = persona
            changes["voice"] = voice_name(persona)
            self._registrar.set_voices([persona, *self._opts.cast])
        self._opts.speech = replace(self._opts.speech, **changes)
        if is_given(pronunciations):
            self._opts.lexicon = _lexicon(pronunciations or {})

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    def prewarm(self) -> None:
        """Open a connection to the sidecar and register (and so warm) the persona."""
        if self._prewarm_task is None:
            self._prewarm_task = asyncio.create_task(self._prewarm())

    async def _prewarm(self) -> None:
        try:
            await self._registrar.ensure(self._client())
        except (S2Error, ValueError) as e:
            logger.warning("prewarm failed, the first reply will retry: %s", e)

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        if self._prewarm_task is not None:
            await utils.aio.cancel_and_wait(self._prewarm_task)
        await self._registrar.aclose()
        if self._s2 is not None:
            await self._s2.aclose()
            self._s2 = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> S2Client:
        """The sidecar's client, on the job's shared connection pool when there is one.

        Each request passes its caller's `conn_options.timeout`; the client's own timeouts
        (LiveKit's default) are for `prewarm()`, which has no caller.
        """
        if self._s2 is None:
            if self._session is None:
                try:
                    self._session = utils.http_context.http_session()
                except RuntimeError:  # not in a job: no shared session to use
                    self._session = aiohttp.ClientSession()
                    self._owns_session = True
            timeout = DEFAULT_API_CONNECT_OPTIONS.timeout
            self._s2 = S2Client(
                self._base_url,
                api_key=self._api_key,
                session=self._session,
                connect_timeout=timeout,
                read_timeout=timeout,
            )
        return self._s2

    async def _speech_stream(
        self, opts: _TTSOptions, conn_options: APIConnectOptions
    ) -> SpeechStream:
        """A reply's stream, once its personas are registered; every request it makes, the
        registration included, times out after the caller's `conn_options.timeout`."""
        client = self._client()
        await self._registrar.ensure(client, timeout=conn_options.timeout)
        lexicon = opts.lexicon

        async def pronounce(text: str) -> str:
            return lexicon.apply(text)

        return SpeechStream(
            client,
            opts.speech,
            sample_rate=opts.sample_rate,
            transform=pronounce if lexicon else None,
            timeout=conn_options.timeout,
        )


class ChunkedStream(tts.ChunkedStream):
    """One text, spoken whole (segmented and pipelined like a stream).

    Not `TTS._synthesize_with_stream()`: its inner stream runs with `max_retry=0` and emits
    its own metrics and errors on this TTS, so each text would report two `metrics_collected`
    and each failed attempt an unrecoverable error, which `AgentSession` counts towards
    closing, even when the attempt is then retried.
    """

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
        )
        with _api_errors():
            speech = await self._tts._speech_stream(self._opts, self._conn_options)
            speech.push_text(self._input_text)
            speech.end_input()
            if not speech.segments and self._input_text.strip():
                raise _nothing_to_say(self._input_text)
            await _emit(self, speech, output_emitter, self._tts._pace, self._opts.speech.cast)
        # No flush(): the base class ends the segment with the held-back tail as the final
        # frame, where a flush would add a 10 ms silent marker after the speech.


class SynthesizeStream(tts.SynthesizeStream):
    """One reply: LLM tokens in, audio out while the LLM is still writing."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
            stream=True,
        )
        output_emitter.start_segment(segment_id=request_id)

        with _api_errors():
            speech = await self._tts._speech_stream(self._opts, self._conn_options)

            async def _send_text() -> None:
                async for data in self._input_ch:
                    # One segment per stream: the base class ignores text after a flush.
                    if isinstance(data, self._FlushSentinel):
                        break
                    speech.push_text(data)
                    if speech.segments:
                        self._mark_started()
                speech.end_input()
                if speech.segments:
                    self._mark_started()

            tasks = [
                asyncio.create_task(_send_text()),
                asyncio.create_task(
                    _emit(self, speech, output_emitter, self._tts._pace, self._opts.speech.cast)
                ),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                await utils.aio.cancel_and_wait(*tasks)
                await speech.aclose()
            if not speech.segments and self._pushed_text.strip():
                raise _nothing_to_say(self._pushed_text)
        output_emitter.end_segment()


def _lexicon(pronunciations: Mapping[str, str]) -> Lexicon:
    lexicon, unusable = Lexicon.usable(pronunciations)
    if unusable:
        logger.warning(
            "S2 cannot use these pronunciations (a phone CMU Arpabet cannot write, or not a "
            f"word), so they will be spoken as written: {', '.join(unusable)}"
        )
    return lexicon


async def _emit(
    stream: tts.ChunkedStream | tts.SynthesizeStream,
    speech: SpeechStream,
    output_emitter: tts.AudioEmitter,
    pace: Pace,
    cast: Sequence[str] = (),
) -> None:
    """Push the reply's audio, and before the audio of each word, the word (tags stripped)
    with its time span, as `WordClock` times it from the audio arriving; LiveKit cuts the
    transcript at the playback position, so an interruption keeps the words played. The first
    request's connection goes into the stream's metrics, as it is the one the reply's first
    audio waited for.
    """
    clock = WordClock(speech.sample_rate, pace)
    separator = ""
    speaker: str | None = None
    async for event in speech:
        if isinstance(event, SegmentStart):
            speaker = cast[event.speaker] if cast else None
        for word in clock.feed(event):
            output_emitter.push_timed_transcript(
                TimedString(
                    separator + word.spoken,
                    start_time=word.start_s,
                    end_time=word.end_s,
                    speaker_id=speaker,
                )
            )
            separator = " "
        if isinstance(event, AudioChunk):
            output_emitter.push(event.pcm)
        elif isinstance(event, SegmentEnd) and event.index == 0:
            # What TTSMetrics reads; 1.8.9 has no public setter (cartesia sets them too).
            stream._acquire_time = event.connection.acquire_s
            stream._connection_reused = event.connection.reused


def _nothing_to_say(text: str) -> APIError:
    """Text with tags and no words: S2 has nothing to say, and a retry would say it again.

    LiveKit's base classes fail a non-empty text that gave no audio, as a retryable error;
    this one says why and is not retried (docs/conformance.md).
    """
    return APIError(
        f"{text.strip()[:80]!r} holds no words to speak: a tag steers the words after it",
        retryable=False,
    )


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """Raise the sidecar's errors as LiveKit's, so the base classes retry what is retryable."""
    try:
        yield
    except S2StatusError as e:
        raise APIStatusError(
            e.message,
            status_code=e.status,
            request_id=e.request_id,
            body={"type": e.type, "code": e.code},
            retryable=e.retryable,
        ) from None
    except S2TimeoutError as e:
        raise APITimeoutError(str(e)) from None
    except S2ConnectionError as e:
        # Not retried when nothing listens (`S2UnreachableError`): a FallbackAdapter then
        # moves to the next voice at once, and its recovery probe brings this one back.
        raise APIConnectionError(str(e), retryable=e.retryable) from None
    except S2Error as e:
        raise APIError(str(e), retryable=e.retryable) from None
    except ValueError as e:  # text or a persona that cannot be sent as it is
        raise APIError(str(e), retryable=False) from None
