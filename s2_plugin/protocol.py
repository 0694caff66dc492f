"""The wire between plugin and sidecar, shared by both ends.

`SpeechRequest` is SGLang-Omni 0.1.9's `CreateSpeechRequest` restricted to the fields S2 reads,
so the plugin can also talk to a bare SGLang-Omni server. Errors travel as
`{"error": {"message", "type", "code"}}`: 4xx means the caller must change something, 5xx means
try again later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from s2_plugin import tags
from s2_plugin.personas import check_speakers, validate_cast

SAMPLE_RATE = 44100
"""S2's codec rate: every PCM byte on the wire is int16 little-endian mono at this rate."""

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Rates a client may ask for (`sample_rate`) and the plugin resamples to."""

MAX_INPUT_CHARS = 4096
"""SGLang-Omni's `MAX_SPEECH_INPUT_CHARS`; longer text is rejected there, so it is here."""

DEFAULT_VOICE = "default"
"""The sidecar's own voice, spoken when no persona is named."""

DEFAULT_PORT = 8421
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
"""Where `s2-sidecar serve` listens unless told otherwise (loopback only without an API key)."""

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"
MODELS_PATH = "/v1/models"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_new_tokens")
"""The `SpeechRequest` fields S2 samples with, passed on to SGLang-Omni as they are."""

HEADER_SAMPLE_RATE = "X-Sample-Rate"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_ENGINE = "X-S2-Engine"
HEADER_CLIENT = "X-S2-Client"
"""What a browser's request that changes something must carry (the studio sends it): no form
on another site can send it, and a fetch that adds it must first ask the sidecar (a CORS
preflight), which it refuses. Clients outside a browser need not send it."""
HEADER_DUE_IN = "X-Audio-Due-In"
"""Request header: seconds from now until the request's audio must start playing, for a
look-ahead segment the time the audio before it runs out. Absent (any OpenAI client) or 0 means
now. The sidecar generates what is due first first and holds what is not yet nearly due."""
MAX_DUE_IN_S = 3600.0


def parse_due_in(value: str | None) -> float:
    """`X-Audio-Due-In` in seconds (0 when absent); a ValueError says what to send instead."""
    if value is None:
        return 0.0
    try:
        due = float(value)
    except ValueError:
        due = -1.0
    if not 0 <= due <= MAX_DUE_IN_S:  # also NaN
        raise ValueError(
            f"{HEADER_DUE_IN} must be seconds from now, 0 to {MAX_DUE_IN_S:.0f}; got {value!r}"
        )
    return due


ResponseFormat = Literal["wav", "pcm", "mp3", "opus", "aac", "flac"]

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx"}
    | {"sage", "shimmer", "verse"}
)
"""The voice names OpenAI's clients allow; the sidecar maps them to personas (`--voice-alias`)."""

OPENAI_PCM_RATE = 24000
"""OpenAI defines `pcm` as 24 kHz; its clients play it so whatever the server says."""

# SGLang-Omni 0.1.9 fields for its other models: accepted by name, refused when set (S2 has
# no such control), so that nothing a client asks for is silently dropped.
_OTHER_MODELS = {
    "task_type": "S2 has one task, voice cloning ('Base')",
    "x_vector_only_mode": "it is a Qwen3-TTS mode",
    "stream_codec_output": "the sidecar serves audio, not codec codes",
    "suppress_bootstrap_silence": "it is for Qwen3-TTS",
    "token_count": "it is MOSS-TTS's duration control",
    "duration_tokens": "it is MOSS-TTS's duration control",
    "initial_codec_chunk_frames": "the first chunk's size is set at launch (--stream-stride)",
    "stage_params": "per-stage overrides are not exposed",
}


class SpeechReference(BaseModel):
    """A voice reference inline in a request: SGLang-Omni 0.1.9's `SpeechReference` fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    data: str | None = Field(default=None, description="Base64 audio (with media_type).")
    media_type: str | None = None
    audio: str | None = Field(default=None, description="A data: URL or base64 audio.")
    ref_audio: str | None = Field(default=None, description="Same as audio.")
    text: str | None = Field(default=None, description="What the clip says.")
    audio_path: str | None = Field(default=None, description="Refused: no local file reads.")
    vq_codes: list[list[int]] | list[int] | None = Field(
        default=None, description="Refused: no endpoint returns codes."
    )


class SpeechRequest(BaseModel):
    """One synthesis request: OpenAI's and SGLang-Omni 0.1.9's `CreateSpeechRequest` fields.

    Defaults are SGLang-Omni's (a WAV, not streamed). A field neither API has is refused, by
    name; fields S2 cannot honour are refused with the reason (see docs/api.md).
    Types are strict: `"stream": "yes"` is an error, not true.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True
    )

    input: str = Field(description="Text to speak; inline tags such as [whisper] pass to S2.")
    voice: str = Field(
        default=DEFAULT_VOICE,
        validation_alias=AliasChoices("voice", "speaker"),
        description="A persona, an alias of one (OpenAI's names), or {'id': name}.",
    )
    model: str | None = None
    response_format: ResponseFormat = "wav"
    stream: bool = False
    stream_format: Literal["audio", "sse"] = "audio"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(
        default=None, description="Free-form style, sent to S2 as a tag: 'warm and slow'."
    )
    language: str | None = Field(default=None, description="S2 reads the language from the text.")
    sample_rate: int | None = Field(
        default=None, description="Sidecar extension: the rate of pcm/wav/mp3/aac/flac."
    )
    style: str | None = Field(
        default=None, description="Overrides the persona's default style tag; '' for none."
    )
    references: list[SpeechReference] | None = None
    ref_audio: str | None = Field(default=None, description="A data: URL or base64 audio.")
    ref_text: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, description="-1 or 1..30, as S2 accepts.")
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=2.0)
    seed: int | None = Field(
        default=None, ge=0, description=">= 0, as SGLang-Omni 0.1.9 requires (speech_service.py)."
    )
    max_new_tokens: int | None = Field(default=None, ge=1, le=2048)
    cast: list[str] | None = Field(
        default=None,
        description="Personas speaking together, speaker 0 first; <|speaker:N|> picks the Nth.",
    )
    task_type: str | None = None
    x_vector_only_mode: bool | None = None
    stream_codec_output: bool | None = None
    suppress_bootstrap_silence: bool | None = None
    token_count: int | None = None
    duration_tokens: int | None = None
    initial_codec_chunk_frames: int | None = None
    stage_params: dict[str, dict[str, object]] | None = None

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_id(cls, value: object) -> object:
        # OpenAI's SDK sends a custom voice as {"id": "voice_..."}.
        if isinstance(value, dict):
            if set(value) != {"id"}:
                raise ValueError('voice must be a name or {"id": name}')
            return value["id"]
        return value

    @field_validator("input")
    @classmethod
    def _check_input(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input is empty; send the text to speak")
        if len(value) > MAX_INPUT_CHARS:
            raise ValueError(
                f"input is {len(value)} characters; split it into requests of at most "
                f"{MAX_INPUT_CHARS} (the segmenter does this for you)"
            )
        tags.validate(value)
        if not tags.has_speech(value):
            if tags.find_tags(value):
                raise ValueError("input holds only tags; add words for the tags to act on")
            raise ValueError("input has no words to speak (symbols and punctuation say nothing)")
        return value

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and not 1 <= value <= 30:
            raise ValueError("top_k must be -1 or between 1 and 30")
        return value

    @field_validator("cast")
    @classmethod
    def _check_cast(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else validate_cast(value)

    @field_validator("speed")
    @classmethod
    def _check_speed(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError(
                "speed must be 1.0: S2 has no rate control that keeps the pitch; ask for a pace "
                "in words instead, e.g. instructions='speaking slowly'"
            )
        return value

    @field_validator("style", "instructions")
    @classmethod
    def _check_style(cls, value: str | None) -> str | None:
        # Both become the style tag before the text.
        if value:
            try:
                tags.style_cue(value)
            except tags.TagError as e:
                raise ValueError(str(e)) from None
        return value

    @field_validator("sample_rate")
    @classmethod
    def _check_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in SUPPORTED_RATES:
            rates = ", ".join(str(r) for r in SUPPORTED_RATES)
            raise ValueError(f"sample_rate must be one of {rates}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> SpeechRequest:
        for name, why in _OTHER_MODELS.items():
            value = getattr(self, name)
            if value not in (None, False) and not (name == "task_type" and value == "Base"):
                raise ValueError(f"{name} is not supported for S2: {why}; leave it out")
        if self.instructions is not None and self.style is not None:
            raise ValueError("send style or instructions, not both: both set the style tag")
        if self.cast:
            if self.voice not in (DEFAULT_VOICE, self.cast[0]):
                raise ValueError(
                    f"voice {self.voice!r} is not the cast's speaker 0 ({self.cast[0]!r}); "
                    "leave voice out when sending a cast"
                )
            check_speakers(self.input, self.cast)
        return self

    @property
    def style_tag(self) -> str | None:
        """The style this request asks for: `style`, else `instructions`, else None."""
        return self.style if self.style is not None else self.instructions


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None


class ErrorBody(BaseModel):
    """What every non-2xx response carries."""

    error: ErrorDetail


class VoiceInfo(BaseModel):
    """A persona as the sidecar describes it (`GET /v1/audio/voices`)."""

    name: str
    transcript: str
    style: str | None = None
    sha256: str = Field(description="Content hash of clip, transcript and style.")
    duration_s: float
    sample_rate: int = SAMPLE_RATE
    warnings: list[str] = Field(default_factory=list)


class VoiceList(BaseModel):
    """`GET /v1/audio/voices`, in SGLang-Omni 0.1.9's shape (`serve/speech_voices.py`)."""

    voices: list[str] = Field(description="Every voice name a request may use, aliases too.")
    uploaded_voices: list[VoiceInfo] = Field(description="The personas, in full.")


class Health(BaseModel):
    """`GET /health`: 200 when ready, 503 while starting or unhealthy."""

    status: Literal["starting", "ready", "unhealthy"]
    engine: str
    model: str
    preview: bool = Field(description="True when the voice is the CPU preview, not S2.")
    personas: int
    detail: str | None = None


def describe(error: ValidationError) -> str:
    """One line per problem, naming the field unless the message already does."""
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        parts.append(message if not where or message.startswith(where) else f"{where}: {message}")
    return "; ".join(parts)
