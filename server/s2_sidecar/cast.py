"""A cast in one S2 context: the combined reference that SGLang-Omni 0.1.9 can carry.

S2 was trained on multi-speaker prompts in fish-speech's format: reference i's transcript tagged
`<|speaker:i|>`, the transcripts joined with "\\n", all reference codes concatenated in order.
SGLang-Omni 0.1.9 tags every reference it is given as `<|speaker:0|>` (`build_prompt` in
`models/fishaudio_s2_pro/tokenizer.py`), so several references there would all be speaker 0.
One reference reproduces the trained format instead: its audio is the clips back to back, each
padded with silence to whole codec frames (so clip i's codes start on a frame boundary, as if
encoded alone), and its text is `textA\\n<|speaker:1|>textB...`, which `build_prompt` opens with
`<|speaker:0|>` itself.

The combined reference is built once per cast content and reused byte for byte, so both
SGLang-Omni's reference-encode cache (keyed by the base64 string, `cache_key.py`) and its radix
prefix cache (keyed by the codes, `request_builders.py` `ref_vq_fingerprint`) hit.
"""

from __future__ import annotations

import hashlib
import io
import math
import wave
from collections.abc import Sequence
from pathlib import Path

from s2_plugin import tags
from s2_plugin.audio import duration_s, wav_bytes
from s2_plugin.personas import describe_cast
from s2_plugin.protocol import SAMPLE_RATE, SpeechRequest, VoiceInfo
from s2_sidecar.errors import BadRequest
from s2_sidecar.files import write_atomic
from s2_sidecar.store import PersonaStore, StoredPersona

FRAME_SAMPLES = 2048
"""Samples per S2 codec frame at 44.1 kHz (about 21.5 frames per second)."""

CONTEXT_TOKENS = 4096
"""S2's context in SGLang-Omni 0.1.9 (`engine_builder.py`, `context_length`)."""

DEFAULT_MAX_NEW_TOKENS = 1024
"""What SGLang-Omni generates at most when a request names no `max_new_tokens` (`stages.py`)."""

PROMPT_TEMPLATE_TOKENS = 48
"""The chat template `build_prompt` wraps around the texts: role markers, the system sentence
("convert the provided text to speech reference to the following: ..."), `<|voice|>`."""


def resolve(store: PersonaStore, names: Sequence[str]) -> StoredPersona:
    """The reference for a cast request: one persona's own, or the cast's combined one."""
    members = []
    for name in names:
        member = store.find(name)
        if member is None:
            registered = ", ".join(p.name for p in store.list()) or "none"
            raise BadRequest(
                f"cast member {name!r} is not a registered persona (registered: {registered}); "
                "register it first or fix the name",
                "unknown_cast_member",
            )
        members.append(member)
    return members[0] if len(members) == 1 else combined(members, store.root / CASTS_DIR)


CASTS_DIR = "casts"
"""Under the persona store, which a local SGLang-Omni may read: the combined clips."""

_COMBINED: dict[tuple[str, ...], StoredPersona] = {}
_KEEP = 32


def combined(members: Sequence[StoredPersona], directory: Path) -> StoredPersona:
    """The cast's one reference: speaker N is `members[N]`; the same bytes for the same cast.

    Its clip is also written to `directory` (once: the name holds the content hash), for an
    engine that sends references by path.
    """
    key = (str(directory), *(f"{m.name}:{m.info.sha256}" for m in members))
    reference = _COMBINED.get(key)
    if reference is None:
        if len(_COMBINED) >= _KEEP:
            del _COMBINED[next(iter(_COMBINED))]
        reference = _COMBINED[key] = _combine(tuple(members), directory)
    return reference


def _combine(members: tuple[StoredPersona, ...], directory: Path) -> StoredPersona:
    pcm = b"".join(_padded(_pcm(m.wav)) for m in members)
    text = "\n".join(
        (tags.speaker_tag(i) if i else "") + m.info.transcript for i, m in enumerate(members)
    )
    digest = hashlib.sha256("\n".join(m.info.sha256 for m in members).encode())
    info = VoiceInfo(
        name="+".join(m.name for m in members),
        transcript=text,
        sha256=digest.hexdigest(),
        duration_s=round(duration_s(pcm), 3),
    )
    wav = wav_bytes(pcm)
    # Named by content alone: a name made of the members' names can pass the file system's limit.
    path = directory / f"cast.{info.sha256}.wav"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(path, wav)  # whole or absent, should SGLang-Omni read it meanwhile
    return StoredPersona(info, wav, path, cast=members)


def _pcm(wav: bytes) -> bytes:
    with wave.open(io.BytesIO(wav)) as w:
        return bytes(w.readframes(w.getnframes()))


def _padded(pcm: bytes) -> bytes:
    frame = FRAME_SAMPLES * 2
    return pcm + bytes(-len(pcm) % frame)


def reference_frames(reference: StoredPersona) -> int:
    """Codec frames the reference's audio becomes in the prompt."""
    return math.ceil(len(_pcm(reference.wav)) / 2 / FRAME_SAMPLES)


def text_tokens(text: str) -> int:
    """A generous estimate of the tokens `text` takes (the checkpoint's tokenizer is not here).

    Qwen3's tokenizer averages about 4 characters of English and about 1.5 CJK characters a
    token; a token per 3 UTF-8 bytes errs on the long side for both.
    """
    return math.ceil(len(text.encode()) / 3)


def check_context(reference: StoredPersona, text: str, max_new_tokens: int | None) -> None:
    """Refuse a request whose prompt plus generation would not fit S2's context.

    SGLang-Omni does not refuse one: it shrinks `max_new_tokens` to what is left, down to 1
    (`make_tts_scheduler_adapters` in `request_builders.py`), and the speech is cut short.
    """
    frames = reference_frames(reference)
    prompt = PROMPT_TEMPLATE_TOKENS + text_tokens(reference.info.transcript) + text_tokens(text)
    generation = max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    total = frames + prompt + generation
    if total < CONTEXT_TOKENS:
        return
    members = reference.cast or (reference,)
    who = describe_cast([m.name for m in members])
    seconds = frames * FRAME_SAMPLES / SAMPLE_RATE
    raise BadRequest(
        f"the cast ({who}) does not fit S2's context of {CONTEXT_TOKENS} tokens: "
        f"{frames} reference frames ({seconds:.1f} s of clips at "
        f"{SAMPLE_RATE / FRAME_SAMPLES:.1f} frames/s) + about {prompt} text tokens + "
        f"{generation} for generation = {total}; use shorter clips, fewer speakers, "
        "shorter text or a smaller max_new_tokens",
        "cast_too_long",
    )


def speaker_text(text: str, reference: StoredPersona, request: SpeechRequest) -> str:
    """The input of a cast request, checked against S2's context.

    A leading `<|speaker:0|>` is dropped: SGLang-Omni opens every input with one itself. The
    members' own styles would each colour only their turns, so only the request's `style`
    applies, to the whole input.
    """
    text = text.strip().removeprefix(tags.speaker_tag(0)).lstrip()
    text = tags.apply_style(text, request.style)
    check_context(reference, text, request.max_new_tokens)
    return text
