"""s2_plugin.protocol: request validation and wire compatibility with SGLang-Omni 0.1.9."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError
from sglang_omni.config.schema import MAX_SPEECH_INPUT_CHARS
from sglang_omni.serve.protocol import CreateSpeechRequest

from s2_plugin.protocol import MAX_INPUT_CHARS, ErrorBody, Health, SpeechRequest, parse_due_in


def wire(req: SpeechRequest) -> dict[str, Any]:
    """What the client sends a bare SGLang-Omni server: our JSON without our own `style`."""
    payload = req.model_dump(mode="json", exclude_none=True)
    payload.pop("style", None)
    return payload


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "input is empty; send the text to speak"),
        ("  \n\t ", "input is empty; send the text to speak"),
        ("[whisper] [laugh]", "input holds only tags; add words"),
        ("[whisper] <|speaker:1|> ...", "input holds only tags; add words"),
        ("x" * (MAX_INPUT_CHARS + 1), "input is 4097 characters; split it into requests of"),
        ("[whisper hello", r"never closed; add '\]'"),
        ("hello] there", r"closes no tag; remove it or add the '\['"),
        ("[] hello", r"empty tag '\[\]' at position 0; write a cue like \[whisper\]"),
        (f"[{'x' * 65}] hello", "keep cues to 64"),
        ("hello\x00", "control character"),
        ("<|speaker:x|> hello", r"write it as <\|speaker:N\|>"),
    ],
)
def test_bad_input_says_what_to_change(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpeechRequest(input=text)


def test_input_at_the_limit_is_accepted() -> None:
    assert len(SpeechRequest(input="x" * MAX_INPUT_CHARS).input) == MAX_INPUT_CHARS


def test_our_limit_is_sglang_omnis() -> None:
    assert MAX_INPUT_CHARS == MAX_SPEECH_INPUT_CHARS


@pytest.mark.parametrize("top_k", [-1, 1, 30])
def test_top_k_accepted(top_k: int) -> None:
    assert SpeechRequest(input="hi", top_k=top_k).top_k == top_k


@pytest.mark.parametrize("top_k", [-2, 0, 31])
def test_top_k_rejected(top_k: int) -> None:
    with pytest.raises(ValidationError, match="top_k must be -1 or between 1 and 30"):
        SpeechRequest(input="hi", top_k=top_k)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("repetition_penalty", 0.0),
        ("max_new_tokens", 0),
        ("max_new_tokens", 2049),
    ],
)
def test_sampling_ranges(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        SpeechRequest.model_validate({"input": "hi", field: value})


def test_defaults_are_sglang_omnis_and_any_format_may_stream() -> None:
    req = SpeechRequest(input="hi")
    assert (req.stream, req.response_format, req.stream_format) == (False, "wav", "audio")
    assert SpeechRequest(input="hi", stream=True, response_format="mp3").stream


def test_every_openai_and_sglang_omni_field_is_known() -> None:
    ours = {
        f.validation_alias.choices[0] if f.validation_alias else n  # type: ignore[union-attr]
        for n, f in SpeechRequest.model_fields.items()
    }
    openai = {"model", "input", "voice", "response_format", "speed", "instructions"}
    assert set(CreateSpeechRequest.model_fields) | openai | {"stream_format"} <= ours


@pytest.mark.parametrize("field", ["voices", "speeds", "format"])
def test_fields_neither_api_has_are_rejected_by_name(field: str) -> None:
    with pytest.raises(ValidationError, match=rf"{field}\n  Extra inputs are not permitted"):
        SpeechRequest.model_validate({"input": "hi", field: "x"})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"speed": 1.5}, "speed must be 1.0"),
        ({"stream": "yes"}, "valid boolean"),
        ({"temperature": float("nan")}, "finite number"),
        ({"style": "[bad"}, "never closed"),
        ({"instructions": "warm]"}, "closes no tag"),
        ({"task_type": "VoiceDesign"}, "task_type is not supported for S2"),
        ({"stream_codec_output": True}, "not codec codes"),
        ({"sample_rate": 11025}, "sample_rate must be one of"),
        ({"style": "warm", "instructions": "calm"}, "not both"),
        ({"voice": {"name": "x"}}, '{"id": name}'),
    ],
)
def test_fields_s2_cannot_honour_say_why(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        SpeechRequest.model_validate({"input": "hi", **fields})


def test_openai_voice_object_and_sglang_speaker_name_the_voice() -> None:
    assert SpeechRequest.model_validate({"input": "hi", "voice": {"id": "joe"}}).voice == "joe"
    assert SpeechRequest.model_validate({"input": "hi", "speaker": "joe"}).voice == "joe"
    assert SpeechRequest(input="hi", instructions="calm").style_tag == "calm"


def test_emoji_only_input_is_not_called_tags() -> None:
    with pytest.raises(ValidationError, match="no words to speak"):
        SpeechRequest(input="\N{GRINNING FACE}\N{THUMBS UP SIGN}")


FULL = SpeechRequest(
    input="[whisper] Hello <|speaker:1|> there.",
    voice="ava",
    model="s2-pro",
    style="warm",
    temperature=0.7,
    top_p=0.9,
    top_k=30,
    repetition_penalty=1.1,
    seed=7,
    max_new_tokens=512,
)


@pytest.mark.parametrize(
    "req",
    [
        FULL,
        SpeechRequest(input="Hi."),
        SpeechRequest(input="Hi.", stream=True, response_format="pcm", top_k=-1),
    ],
)
def test_sglang_omni_accepts_our_request(req: SpeechRequest) -> None:
    payload = wire(req)
    # SGLang-Omni ignores unknown fields, so check that every one of ours is a field there,
    # or it would be dropped without a word.
    assert set(payload) <= set(CreateSpeechRequest.model_fields)
    theirs = CreateSpeechRequest.model_validate_json(json.dumps(payload))
    assert {k: getattr(theirs, k) for k in payload} == payload


def test_defaults_match_sglang_omnis() -> None:
    theirs = CreateSpeechRequest.model_validate({"input": "Hi."})
    ours = SpeechRequest(input="Hi.")
    assert (theirs.stream, theirs.response_format, theirs.speed, theirs.stream_format) == (
        ours.stream,
        ours.response_format,
        ours.speed,
        ours.stream_format,
    )


def test_style_stays_off_the_sglang_wire() -> None:
    assert "style" not in wire(FULL)
    assert FULL.model_dump(exclude_none=True)["style"] == "warm"


def test_error_body_shape() -> None:
    body = ErrorBody.model_validate(
        {"error": {"message": "voice 'x' is not registered", "type": "invalid_request_error"}}
    )
    assert body.error.code is None
    assert body.model_dump()["error"]["message"] == "voice 'x' is not registered"


def test_health_rejects_unknown_status() -> None:
    with pytest.raises(ValidationError, match="status"):
        Health.model_validate(
            {"status": "ok", "engine": "preview", "model": "m", "preview": True, "personas": 0}
        )


def test_a_cast_is_checked_against_its_speaker_tags_and_voice() -> None:
    ok = SpeechRequest(input="Hi. <|speaker:1|> Hello.", cast=["ava", "ben"], voice="ava")
    assert ok.cast == ["ava", "ben"]
    for body, message in [
        ({"cast": ["ava"], "input": "<|speaker:1|> Hi."}, r"<\|speaker:1\|> names no one"),
        ({"cast": ["ava", "ava"], "input": "Hi."}, "names ava more than once"),
        ({"cast": ["ava"], "voice": "ben", "input": "Hi."}, "leave voice out"),
    ]:
        with pytest.raises(ValidationError, match=message):
            SpeechRequest.model_validate(body)


def test_the_due_time_header_is_seconds_from_now_and_optional() -> None:
    assert parse_due_in(None) == 0.0
    assert parse_due_in("1.250") == 1.25
    for bad in ("soon", "-1", "nan", "1e9"):
        with pytest.raises(ValueError, match="X-Audio-Due-In must be seconds from now"):
            parse_due_in(bad)
