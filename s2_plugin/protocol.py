"""The wire between plugin and sidecar, shared by both ends.

`SpeechRequest` is SGLang-Omni 0.1.9's `CreateSpeechRequest` restricted to the fields S2 reads,
so the plugin can also talk to a bare SGLang-Omni server. Errors travel as
`{"error": {"message", "type", "code"}}`: 4xx means the caller must change something, 5xx means
try again later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from s2_plugin import tags
from s2_plugin.personas import check_speakers, validate_cast

SAMPLE_RATE = 44100
"""S2's codec rate: every PCM byte on the wire is int16 little-endian mono at this rate."""

MAX_INPUT_CHARS = 4096
"""SGLang-Omni's `MAX_SPEECH_INPUT_CHARS`; longer text is rejected there, so it is here."""

DEFAULT_VOICE = "default"
"""The sidecar's own voice, spoken when no persona is named."""

DEFAULT_PORT = 8421
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
"""Where `s2-sidecar serve` listens unless told otherwise (loopback only without an API key)."""

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_new_tokens")
"""The `SpeechRequest` fields S2 samples with, passed on to SGLang-Omni as they are."""

HEADER_SAMPLE_RATE = "X-Sample-Rate"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_ENGINE = "X-S2-Engine"


class SpeechRequest(BaseModel):
    """One synthesis request: text with inline tags, spoken by a registered persona."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="Text to speak; inline tags such as [whisper] pass to S2.")
    voice: str = Field(default=DEFAULT_VOICE, description="A persona registered on the sidecar.")
    model: str | None = None
    response_format: Literal["pcm", "wav"] = "pcm"
    stream: bool = True
    style: str | None = Field(
        default=None, description="Overrides the persona's default style tag; '' for none."
    )
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
            raise ValueError("input holds only tags; add words for the tags to act on")
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

    @model_validator(mode="after")
    def _check_format(self) -> SpeechRequest:
        if self.stream and self.response_format != "pcm":
            raise ValueError("stream=true requires response_format='pcm'")
        if self.cast:
            if self.voice not in (DEFAULT_VOICE, self.cast[0]):
                raise ValueError(
                    f"voice {self.voice!r} is not the cast's speaker 0 ({self.cast[0]!r}); "
                    "leave voice out when sending a cast"
                )
            check_speakers(self.input, self.cast)
        return self


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
    voices: list[VoiceInfo]


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
