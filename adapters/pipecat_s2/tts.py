"""Fish Audio S2-Pro text-to-speech for Pipecat, served by a local `s2-sidecar`.

`S2TTSService` streams the LLM's tokens into the core's tag-aware segmenter and keeps the
next segment's request open while the current one plays (`s2_plugin.stream.SpeechStream`),
so a reply has no gap between sentences and its first audio comes at the first clause.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from loguru import logger
from pipecat.frames.frames import CancelFrame, Frame, StartFrame, TTSAudioRawFrame
from pipecat.processors.frameworks.rtvi import BotOutputTransformResult
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.text.base_text_aggregator import TextType
from pipecat.utils.text.phonemes import ipa_phones, normalize_ipa
from pipecat.utils.text.transforms.text_transform import TextTransform
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import NOT_GIVEN, NotGiven, assert_given

from s2_plugin import phonemes
from s2_plugin.client import S2Client, S2ConnectionError, S2Error, S2UnreachableError
from s2_plugin.personas import Persona, validate_cast
from s2_plugin.protocol import DEFAULT_URL, DEFAULT_VOICE
from s2_plugin.registrar import Registrar, voice_name
from s2_plugin.stream import SPEECH_SETTINGS, AudioChunk, SpeechOptions, SpeechStream
from s2_plugin.tags import mask, strip_tags, unmask
from s2_plugin.timing import Pace, WordClock

__all__ = ["S2TTSService", "S2TTSSettings", "without_tags"]

_WATCH_INTERVAL_S = 1.0
"""How often a service that found no sidecar asks whether it is back."""


@dataclass
class S2TTSSettings(TTSSettings):
    """Runtime-updatable settings for `S2TTSService`.

    A change applies from the next segment sent to the sidecar (the next sentence or clause);
    the segments already requested finish as they were asked for.

    Parameters:
        voice: A persona registered on the sidecar (the inherited ``voice`` field).
        style: Overrides the persona's default style tag (e.g. ``"warm"``); ``""`` turns the
            persona's style off, None keeps it.
        temperature: Sampling temperature (0-2).
        top_p: Nucleus sampling threshold (0-1].
        top_k: Top-k sampling, -1 or 1-30.
        repetition_penalty: Repetition penalty (0-2].
        seed: Sampling seed, for repeatable output.
        max_new_tokens: Cap on codec tokens generated per segment.
    """

    style: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    temperature: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    top_p: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    top_k: int | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    repetition_penalty: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    seed: int | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    max_new_tokens: int | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


@dataclass(eq=False)
class _Reply:
    """One audio context's speech: its stream and the task playing it."""

    context_id: str
    stream: SpeechStream | None = None
    task: asyncio.Task[None] | None = None
    input_ended: bool = False
    finished: bool = False


# What S2TTSService decides itself: S2's tag-aware segmenter gets every LLM token, and words
# are timed from the audio (`add_word_timestamps`), which needs one context per turn.
_FIXED = frozenset(
    {
        "text_aggregation_mode",
        "aggregate_sentences",
        "push_text_frames",
        "push_start_frame",
        "push_stop_frames",
        "reuse_context_id_within_turn",
    }
)
_PASSED_ON = (
    frozenset(
        name
        for cls in TTSService.__mro__
        if "__init__" in vars(cls)
        for name, p in inspect.signature(vars(cls)["__init__"]).parameters.items()
        if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
    )
    - _FIXED
    - {"self", "sample_rate", "settings"}
)


class S2TTSService(TTSService):
    """Fish Audio S2-Pro voices from a self-hosted `s2-sidecar`.

    Text goes through S2's tag-aware segmenter rather than Pipecat's sentence aggregator
    (which cuts and moves inline ``[tags]``): the service runs in token mode and streams each
    LLM token into one `SpeechStream` per reply. The first segment is cut at the first clause
    boundary, the next segments are requested while the current one plays, and audio comes
    back strictly in order, resampled once to the pipeline's output rate with nothing lost at
    segment ends. Each reply is one audio context: one ``TTSStartedFrame``, its audio, one
    ``TTSStoppedFrame``.

    Words are timed from the audio as it arrives (`s2_plugin.timing.WordClock`) and
    reported with ``add_word_timestamps`` before the audio that speaks them, as Pipecat's
    word-timestamp services do: each word's ``TTSTextFrame`` carries the time it is heard,
    so the output transport releases it in step with the voice, and after an interruption
    the assistant's context holds the words played. The text is the LLM's own, inline tags
    (``[whisper]``, ``<|speaker:1|>``) included: the LLM sees how it spoke and, with a cast,
    who said what. Clients see the words without tags through `without_tags`, an RTVI
    ``bot_output_transforms`` entry.

    On an interruption the reply's open requests are closed, which makes the sidecar stop
    generating; an uninterruptible ``TTSSpeakFrame`` keeps playing. A failed request becomes
    an ``ErrorFrame`` upstream that says why, and the service carries on with the next reply.
    A sidecar that cannot be reached at all (nothing listens) is reported as Pipecat's
    services report a lost connection that will not come back by itself: the error leaves the
    service unusable (``is_usable`` False), so a ``ServiceSwitcher`` with the failover strategy
    moves to its next service on that first reply. The service then watches the sidecar and
    makes itself usable again as soon as it answers.

    Example::

        tts = S2TTSService(
            persona=Persona("ava", clip=Path("ava.wav"), transcript="What the clip says."),
            settings=S2TTSService.Settings(temperature=0.7),
        )

        # Later, from the next segment on:
        await task.queue_frame(
            TTSUpdateSettingsFrame(delta=S2TTSService.Settings(style="whisper"), service=tts)
        )
    """

    Settings = S2TTSSettings
    _settings: S2TTSSettings

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        persona: str | Persona | None = None,
        cast: Sequence[str | Persona] | None = None,
        style: str | None = None,
        api_key: str | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
        read_timeout: float = 10.0,
        ahead: int = 2,
        sample_rate: int | None = None,
        settings: S2TTSSettings | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize the S2 TTS service.

        Args:
            base_url: The sidecar's URL; the local ``s2-sidecar serve`` by default.
            persona: The voice: the name of a persona registered on the sidecar, or a
                `Persona`, which is registered when the pipeline starts unless the sidecar
                already holds the same content (one upload per content hash). None speaks
                with the sidecar's default voice. ``settings.voice``, if given, wins.
            cast: Several voices, speaker 0 first (names or `Persona`s, registered like
                ``persona``): ``<|speaker:N|>`` in the LLM's text hands over to the Nth, and
                every segment is spoken by its turn's persona, also one cut mid-turn. Speaker
                0 is the voice, unless ``persona`` names it. Give the LLM
                ``tag_guide(cast=...)``.
            style: A style tag for every request, e.g. ``"warm"`` (``settings.style`` wins);
                overrides the persona's default style, ``""`` turns it off.
            api_key: The sidecar's API key, if it was started with one.
            aiohttp_session: A session to share; it is not closed by this service.
            read_timeout: Seconds without audio after which a request fails with an error.
            ahead: Segment requests open at once: the playing one and those generated
                ahead of it. 2 is enough when the engine is faster than real time.
            sample_rate: Output sample rate; the pipeline's output rate by default.
            settings: Runtime-updatable settings.
            **kwargs: `TTSService`'s own arguments (anything else is refused), with one
                default changed:

                - ``stop_frame_timeout_s`` is ``read_timeout`` plus 2 s. Pipecat ends an
                  audio context that stays silent that long (3 s by default), which would cut
                  off a slow first audio (a cold GPU, a queue); a request this slow fails with
                  its own, clearer, read-timeout error first.

                - ``text_transforms`` (Pipecat's ``VoiceFormatter``, a
                  ``pronunciation_transform_ipa``) run on each segment just before it is
                  sent, where words are whole, rather than on each LLM token. S2 reads
                  pronunciations (`format_pronunciation`) on every engine, so
                  ``supports_pronunciations`` stays true.

        Raises:
            TypeError: For an argument `TTSService` does not take, or one this service sets
                itself (how text is aggregated and how text frames are pushed).
        """
        if fixed := sorted(kwargs.keys() & _FIXED):
            raise TypeError(
                f"S2TTSService sets {', '.join(fixed)} itself: every LLM token goes to S2's "
                "tag-aware segmenter and words are timed from the audio; leave it out"
            )
        if unknown := sorted(kwargs.keys() - _PASSED_ON):
            raise TypeError(
                f"S2TTSService got unexpected argument(s) {', '.join(unknown)}; it takes its "
                f"own and TTSService's: {', '.join(sorted(_PASSED_ON))}"
            )
        members = list(cast or ())
        persona = persona if persona is not None else (members[0] if members else None)
        voices = [persona, *members] if persona is not None else members
        self._registrar = Registrar(voices, _warn)
        self._cast = tuple(validate_cast([voice_name(p) for p in members])) if members else ()
        _unset: dict[str, Any] = dict.fromkeys(SPEECH_SETTINGS)
        default_settings = self.Settings(
            model=None,
            voice=voice_name(persona) if persona is not None else DEFAULT_VOICE,
            language=None,
            **_unset,
        )
        default_settings.style = style
        if settings is not None:
            default_settings.apply_update(settings)

        # Applied per segment (`_transform`), where words are whole; Pipecat's own place for
        # them, in token mode, is every LLM token ("Met" + "formin").
        self._segment_transforms: list[tuple[TextType | str, TextTransform]] = list(
            kwargs.pop("text_transforms", None) or []
        )
        kwargs.setdefault("stop_frame_timeout_s", read_timeout + 2.0)
        super().__init__(
            text_aggregation_mode=TextAggregationMode.TOKEN,
            push_text_frames=False,
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=sample_rate,
            settings=default_settings,
            **kwargs,
        )
        self._client = S2Client(
            base_url, api_key=api_key, session=aiohttp_session, read_timeout=read_timeout
        )
        self._ahead = ahead
        self._watch: asyncio.Task[None] | None = None
        self._pace = Pace()  # the voice's pace, learned over replies, times words ahead
        self._replies: dict[str, _Reply] = {}
        # Contexts that end with a flush_audio (LLM turns, speak frames); text outside them
        # (a bare TextFrame) is spoken whole at once.
        self._turns: set[str] = set()

    def can_generate_metrics(self) -> bool:
        """Check if this service can generate processing metrics.

        Returns:
            True: TTFB (once per reply, at its first audio, as the base class times it),
            TTFA and usage are reported.
        """
        return True

    @classmethod
    def format_pronunciation(cls, word: str, ipa: str) -> str | None:
        """Render a word's IPA as S2's phoneme markup: CMU Arpabet with stress.

        Pipecat's IPA parser splits the phones; the core writes them as Arpabet, one markup
        per IPA word, the first keeping ``word`` so transcripts and captions show the word.

        Args:
            word: The word as it appears in the text.
            ipa: How to pronounce it, in IPA, e.g. ``"ɹɛd"``.

        Returns:
            The markup, or None when Arpabet has no symbol for one of its phones (a
            glottal stop, a nasal vowel): Pipecat then says the word as written.
        """
        arpabet = [phonemes.arpabet_from_phones(ipa_phones(w)) for w in normalize_ipa(ipa).split()]
        if not arpabet or None in arpabet:
            return None
        return phonemes.markups(word, [a for a in arpabet if a is not None])

    def add_text_transformer(
        self,
        transform_function: TextTransform,
        text_type: TextType | str = "*",
        *,
        aggregation_type: TextType | str | None = None,
    ) -> None:
        """Transform each segment's text just before it is sent (see ``text_transforms``).

        Args:
            transform_function: ``async (text, text_type) -> text``.
            text_type: ``"*"`` or ``"sentence"``: segments are sentence-like.
            aggregation_type: Deprecated name of ``text_type``.
        """
        self._segment_transforms.append((aggregation_type or text_type, transform_function))

    def remove_text_transformer(
        self,
        transform_function: TextTransform,
        text_type: TextType | str = "*",
        *,
        aggregation_type: TextType | str | None = None,
    ) -> None:
        """Remove a transform added with ``text_transforms`` or `add_text_transformer`.

        Args:
            transform_function: The transform to remove.
            text_type: The type it was registered for.
            aggregation_type: Deprecated name of ``text_type``.
        """
        kind = aggregation_type or text_type
        self._segment_transforms = [
            t for t in self._segment_transforms if t != (kind, transform_function)
        ]

    async def _transform(self, text: str) -> str:
        """A segment's text through the text transforms, in order, as Pipecat runs them;
        its tags are hidden from them (`tags.mask`), so none is rewritten."""
        masked, found = mask(text)
        for kind, transform in self._segment_transforms:
            if kind in ("*", TextType.SENTENCE):
                masked = await transform(masked, TextType.SENTENCE)
        return unmask(masked, found)

    @property
    def supports_processing_metrics(self) -> bool:
        """Whether this service has a meaningful processing-time metric.

        False: ``run_tts`` hands the text to the reply's stream and returns; the audio comes
        from the reply's playing task, so the measured window holds no synthesis (as for
        Pipecat's own services that receive audio elsewhere). TTFB and TTFA carry the latency.
        """
        return False

    async def start(self, frame: StartFrame) -> None:
        """Start the service and register its persona in the background.

        Args:
            frame: The start frame.
        """
        await super().start(frame)
        self.create_task(self._register_personas(), name=f"{self}::register_persona")

    async def cancel(self, frame: CancelFrame) -> None:
        """Cancel the service, closing every open request.

        Args:
            frame: The cancel frame.
        """
        await super().cancel(frame)
        await self._close_all()
        await self._stop_watching()

    async def cleanup(self) -> None:
        """Close every open request and the sidecar connections."""
        await super().cleanup()
        await self._close_all()
        await self._stop_watching()
        await self._registrar.aclose()
        await self._client.aclose()

    async def _register_personas(self) -> None:
        """Upload the personas early, so the first reply doesn't wait for them."""
        try:
            await self._registrar.ensure(self._client)
        except S2Error as e:
            # Each reply retries and reports what still fails, as an ErrorFrame.
            logger.warning(f"{self}: cannot register persona {self._registrar.failed!r} yet: {e}")

    def _speech_options(self) -> SpeechOptions:
        """The current settings as request fields; read for every segment."""
        s = self._settings
        return SpeechOptions(
            voice=assert_given(s.voice) or DEFAULT_VOICE,
            cast=self._cast,
            **{name: assert_given(getattr(s, name)) for name in SPEECH_SETTINGS},
        )

    # TTSService narrows AIService's parameter to TTSSettings itself; this follows TTSService.
    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a settings delta; it takes effect from the next segment requested.

        Args:
            delta: A settings delta.

        Returns:
            The changed fields with their previous values.
        """
        changed = await super()._update_settings(delta)
        self._warn_unhandled_updated_settings(changed.keys() & {"model", "language"})
        return changed

    async def on_turn_context_created(self, context_id: str) -> None:
        """Note a turn, whose text ends with ``flush_audio``.

        Args:
            context_id: The turn's audio context.
        """
        self._turns.add(context_id)

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Stream a text fragment into its reply's `SpeechStream`.

        Audio is appended to the audio context by the reply's playing task, so this returns
        at once and the next tokens keep flowing while earlier segments are generated.

        Args:
            text: An LLM token, or a whole text (``TTSSpeakFrame``).
            context_id: The audio context (one per reply).

        Yields:
            None (a reply that cannot start pushes its error upstream).
        """
        reply = self._replies.get(context_id)
        if reply is None:
            reply = self._replies[context_id] = _Reply(context_id)
            await self._open(reply)
        if reply.stream is not None and not reply.finished:
            reply.stream.push_text(text)
        if context_id not in self._turns:
            await self.flush_audio(context_id)
        yield None

    async def _open(self, reply: _Reply) -> None:
        """Start a reply's stream and its playing task, or report why it can't."""
        try:
            await self._registrar.ensure(self._client)
        except S2Error as e:
            reply.finished = True
            await self._report(f"{self} cannot register persona {self._registrar.failed!r}", e)
            return
        reply.stream = SpeechStream(
            self._client,
            self._speech_options,
            sample_rate=self.sample_rate,
            ahead=self._ahead,
            transform=self._transform,
        )
        reply.task = self.create_task(self._play(reply), name=f"{self}::play")

    async def _report(self, message: str, error: S2Error | ValueError) -> None:
        """Push an error upstream; one that finds no sidecar at all makes the service unusable.

        As Pipecat's connection-holding services do when a connection is lost for good
        (``WebsocketService`` after its reconnects fail): ``force_treat_as_permanent``, which
        is what a ``ServiceSwitcher``'s failover strategy switches on. A sidecar that answers
        but fails a request leaves the service usable; the next reply tries again.
        """
        unreachable = isinstance(error, S2UnreachableError)
        await self.push_error(
            error_msg=f"{message}: {error}", exception=error, force_treat_as_permanent=unreachable
        )
        if unreachable and (self._watch is None or self._watch.done()):
            self._watch = self.create_task(self._wait_for_sidecar(), name=f"{self}::watch")

    async def _wait_for_sidecar(self) -> None:
        """Make the service usable again once the sidecar answers, asked every second."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            try:
                await self._client.health(timeout=_WATCH_INTERVAL_S)
            except S2Error:
                continue
            break
        logger.info(f"{self}: the sidecar at {self._client.base_url} answers again")
        await self.set_usable(True)

    async def _stop_watching(self) -> None:
        if self._watch is not None:
            await self.cancel_task(self._watch)
            self._watch = None

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        """A connection that failed or timed out is connectivity; statuses go by their code.

        Args:
            exception: The error being reported.

        Returns:
            ``CONNECTIVITY`` for the client's connection errors, else None (Pipecat's
            classification by HTTP status).
        """
        return ErrorCategory.CONNECTIVITY if isinstance(exception, S2ConnectionError) else None

    async def flush_audio(self, context_id: str | None = None) -> None:
        """End a reply's text: the segmenter sends what it still holds.

        Args:
            context_id: The reply's audio context.
        """
        self._turns.discard(context_id or "")
        reply = self._replies.get(context_id or "")
        if reply is None or reply.input_ended:
            return
        reply.input_ended = True
        if reply.finished:
            await self._end_reply(reply)
        elif reply.stream is not None:
            reply.stream.end_input()

    async def _play(self, reply: _Reply) -> None:
        """Append a reply's audio to its context in order, each word before the audio of it."""
        assert reply.stream is not None
        context_id = reply.context_id
        clock = WordClock(self.sample_rate, self._pace)
        try:
            async for event in reply.stream:
                if words := clock.feed(event):
                    await self.add_word_timestamps([(w.word, w.start_s) for w in words], context_id)
                if isinstance(event, AudioChunk):
                    frame = TTSAudioRawFrame(event.pcm, self.sample_rate, 1, context_id=context_id)
                    await self.append_to_audio_context(context_id, frame)
        except (S2Error, ValueError) as e:
            await self._report(f"{self} speech request failed", e)
        reply.finished = True
        if reply.input_ended:
            await self._end_reply(reply)

    async def _end_reply(self, reply: _Reply) -> None:
        """Close a finished reply's audio context, which pushes its ``TTSStoppedFrame``."""
        self._replies.pop(reply.context_id, None)
        await self.remove_audio_context(reply.context_id)

    async def _close(self, context_id: str) -> None:
        """Stop a reply now: cancel its task and its open requests, drop its audio."""
        self._turns.discard(context_id)
        reply = self._replies.pop(context_id, None)
        if reply is None:
            return
        if reply.task is not None:
            await self.cancel_task(reply.task)
        if reply.stream is not None:
            await reply.stream.aclose()

    async def _close_all(self) -> None:
        for context_id in list(self._replies):
            await self._close(context_id)

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Close the interrupted reply's requests so the sidecar stops generating.

        Args:
            context_id: The interrupted audio context.
        """
        await self._close(context_id)

    async def on_audio_context_completed(self, context_id: str) -> None:
        """Close a reply whose context Pipecat ended early (it stayed silent too long).

        Args:
            context_id: The audio context that finished playing.
        """
        if context_id in self._replies:
            logger.warning(f"{self}: audio context {context_id} timed out; closing its requests")
            await self._close(context_id)


async def without_tags(
    text: str,
    text_type: str,
    accumulated_text: str | None = None,
    remaining_text: str | None = None,
) -> BotOutputTransformResult:
    """The bot's output without S2's inline tags, for RTVI clients (captions, transcripts).

    Register it with ``RTVIObserverParams(bot_output_transforms=[("*", without_tags)])``;
    the LLM context keeps the tags.

    Args:
        text: A segment's or a word's text.
        text_type: Its type (unused: tags go from every type).
        accumulated_text: For a progress event, what has been spoken so far.
        remaining_text: For a progress event, what is still to come.

    Returns:
        The same texts with their tags removed.
    """
    return BotOutputTransformResult(
        text=strip_tags(text),
        accumulated_text=None if accumulated_text is None else strip_tags(accumulated_text),
        remaining_text=None if remaining_text is None else strip_tags(remaining_text),
    )


def _warn(message: str) -> None:
    logger.warning(f"S2TTSService: {message}")
