"""Reference clips sent inside a speech request (OpenAI-style clients, SGLang-Omni's fields)."""

from __future__ import annotations

import base64
import binascii

from s2_plugin.protocol import SpeechReference, SpeechRequest
from s2_sidecar.errors import BadRequest

_NOT_INLINE = ("/", "file:", "http:", "https:", "s3:", "gs:")


def carries_reference(req: SpeechRequest) -> bool:
    """Whether the request sends a clip: only such a request may exceed the small body limit."""
    return bool(req.references) or req.ref_audio is not None


def inline_reference(req: SpeechRequest) -> tuple[bytes, str] | None:
    """The clip and transcript of a reference sent in the request, if there is one."""
    refs = list(req.references or [])
    if req.ref_audio is not None:
        refs.append(SpeechReference(audio=req.ref_audio, text=req.ref_text))
    if not refs:
        return None
    if len(refs) > 1:
        raise BadRequest(
            "send one inline reference per request; register personas for several voices",
            "too_many_references",
        )
    ref = refs[0]
    if ref.vq_codes is not None:
        raise BadRequest("vq_codes are not accepted; send the clip as base64", "invalid_reference")
    value = ref.data or ref.audio or ref.ref_audio
    if ref.audio_path is not None or (value and value.startswith(_NOT_INLINE)):
        raise BadRequest(
            "references by path or URL are refused: the sidecar reads no local files and fetches "
            "nothing for a client; send the clip inline as base64 (data or a data: URL), or "
            "register it once (POST /v1/audio/voices)",
            "reference_not_inline",
        )
    if not value:
        raise BadRequest("the reference has no audio; send it as base64 in 'data'", "no_audio")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        audio = base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise BadRequest(f"the reference is not valid base64 ({e})", "invalid_reference") from e
    text = ref.text or req.ref_text
    if not text:
        raise BadRequest(
            "the reference needs its transcript ('text', or 'ref_text'): what the clip says",
            "invalid_reference",
        )
    return audio, text
