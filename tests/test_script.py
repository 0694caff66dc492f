"""s2_plugin.script: the hand-written script syntax and its cut into S2 generations."""

from __future__ import annotations

import pytest
from s2_sidecar.clips import pitch_hz
from support.cast import plain, turns_heard
from support.sidecar import SidecarProcess
from support.speech import transcribe, wer

from s2_plugin import tags
from s2_plugin.client import S2Client
from s2_plugin.personas import PersonaError
from s2_plugin.protocol import SAMPLE_RATE
from s2_plugin.script import PART_CHARS, ScriptError, Turn, narrate, parse, parts, tagged

CAST = ["ava", "ben", "cy"]


def test_lines_map_to_speaker_numbers_in_any_case() -> None:
    script = "AVA: Welcome back.\n\n  Ben : Thanks! [laugh] Good to be here.\ncy:Hello."
    assert parse(script, CAST) == [
        Turn(0, "Welcome back."),
        Turn(1, "Thanks! [laugh] Good to be here."),
        Turn(2, "Hello."),
    ]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("", "the script has no lines to speak"),
        ("\n  \nAVA: [laugh]\n", "the script has no lines to speak"),
        ("AVA: Hi.\nAnd then she left.", "line 2 names no speaker: 'And then she left.'; start it"),
        ("AVA: Hi.\nZED: Hello.", "line 2: 'ZED' is not in the cast (ava, ben, cy)"),
        ("AVA: Hi <|speaker:1|> there.", "line 1 holds a speaker tag"),
        ("BEN: [whisper Hi.", "line 1: tag opened at position 0 is never closed"),
    ],
)
def test_bad_scripts_say_what_to_change(script: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(script, CAST)


def test_a_bad_cast_is_refused_before_the_script_is_read() -> None:
    with pytest.raises(PersonaError, match="more than once"):
        parse("AVA: Hi.", ["ava", "ava"])


def test_parts_keep_turns_whole_and_in_order_in_fish_speechs_form() -> None:
    turns = [Turn(i % 3, f"Line number {i} of the story, told slowly.") for i in range(40)]
    cut = parts(turns, max_chars=200)
    assert len(cut) > 5
    assert all(len(p.text) <= 200 for p in cut)
    assert [t for p in cut for t in p.turns] == turns  # nothing lost, nothing moved
    for p in cut:
        assert p.text == "\n".join(f"<|speaker:{t.speaker}|>{t.text}" for t in p.turns)
        assert tags.turns(p.text) == [(t.speaker, t.text) for t in p.turns]


def test_a_turn_too_long_for_one_part_is_cut_between_sentences() -> None:
    sentences = [f"This is sentence {i} of a long speech by one person." for i in range(30)]
    long = " ".join(sentences)
    cut = parts([Turn(1, "Short intro."), Turn(0, long)], max_chars=PART_CHARS)
    assert len(cut) > 1 and all(len(p.text) <= PART_CHARS for p in cut)
    spoken = " ".join(t.text for p in cut for t in p.turns if t.speaker == 0)
    assert spoken == long
    for p in cut[1:]:  # a part that starts mid-turn still names its speaker
        assert p.text.startswith("<|speaker:0|>This is sentence")
        assert p.turns[0].text.endswith(".")


# --- narration on the real sidecar (preview engine)

STORY = """\
AVA: Good evening, and welcome to our little story about the sea.
BEN: Thank you. I have waited all week to tell it. The boat left at dawn.
CY: The water was calm, and the sky was grey and quiet.
AVA: And then, without any warning, the wind began to rise.
BEN: We pulled the sails down as fast as we could.
CY: By noon the storm had passed, and the sun came out again.
"""


async def test_a_story_is_narrated_in_order_every_voice_in_its_turn(
    cast_sidecar: SidecarProcess,
) -> None:
    turns = parse(STORY, CAST)
    planned = parts(turns, max_chars=200)  # several parts, so there are joins to check
    assert len(planned) >= 3
    async with S2Client(cast_sidecar.url) as client:
        hz = {
            n: pitch_hz(await client.synthesize(STORY.splitlines()[2][4:], voice=n)) for n in CAST
        }
        per_part: dict[int, list[bytes]] = {}
        async for part, pcm in narrate(client, planned, CAST):
            per_part.setdefault(part.index, []).append(pcm)
    assert sorted(per_part) == [p.index for p in planned]
    audio = [b"".join(chunks) for _, chunks in sorted(per_part.items())]
    story = b"".join(audio)
    assert len(story) == sum(len(a) for a in audio)
    # Speaker order by pitch, over the whole story.
    order = [CAST[t.speaker] for t in turns]
    heard = turns_heard(story, SAMPLE_RATE, hz, order)
    assert [name for name, _ in heard] == order
    assert all(len(pcm) > SAMPLE_RATE * 2 for _, pcm in heard)  # a second or more each
    said = " ".join(transcribe(plain(pcm, SAMPLE_RATE, name), SAMPLE_RATE) for name, pcm in heard)
    error = wer(" ".join(t.text for t in turns), said)
    print(f"story WER {error:.2f}")
    assert error <= 0.5, said  # measured 0.25-0.26; the whole 200 s story in bench_cast: 0.26


def test_s2s_own_form_maps_speaker_numbers_to_the_cast() -> None:
    script = (
        "<|speaker:0|> The harbour was quiet.\nToo quiet.\n"
        "<|speaker:2|>[whisper] Did you hear that? <|speaker:0|> No."
    )
    assert parse(script, CAST) == [
        Turn(0, "The harbour was quiet.\nToo quiet."),
        Turn(2, "[whisper] Did you hear that?"),
        Turn(0, "No."),
    ]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("<|speaker:3|> Hi.", "<|speaker:3|> has no cast member: the cast is 0=ava, 1=ben, 2=cy"),
        ("<|speaker:0|> [laugh]", "no words to speak after its speaker tags"),
        ("<|speaker:0|> Hi [there.", "never closed"),
    ],
)
def test_bad_s2_scripts_say_what_to_change(script: str, message: str) -> None:
    with pytest.raises(ScriptError, match=None) as e:
        parse(script, CAST)
    assert message in str(e.value)


def test_a_name_script_is_sent_in_s2s_form_and_other_text_is_left_alone() -> None:
    assert tagged("AVA: Hi.\n\nben: Hello.", CAST) == "<|speaker:0|>Hi.\n<|speaker:1|>Hello."
    for text in ("Note: this is one line.", "<|speaker:1|> Hi.", "AVA: Hi.\nAnd then."):
        assert tagged(text, CAST) == text
