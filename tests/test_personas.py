"""s2_plugin.personas: names, content hash, clips, and the personas TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2_plugin.personas import (
    MAX_CAST,
    MAX_CLIP_BYTES,
    MAX_TRANSCRIPT_CHARS,
    Cast,
    Persona,
    PersonaError,
    check_speakers,
    content_hash,
    load_personas,
    validate_cast,
    validate_name,
)
from s2_plugin.tags import TagError

CLIP = b"RIFF....WAVEfmt "  # clip_bytes does not parse audio; any non-empty bytes do


@pytest.mark.parametrize("name", ["ava", "Ava_2", "narrator-en.v1", "7", "a" * 64])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "..", "a/b", "a\\b", ".hidden", "-x", "_x", "a..b", "a" * 65, "ava\n", "a b", "é"],
)
def test_bad_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(PersonaError, match=r"use 1-64 letters, digits, '_', '-' or '\.'"):
        validate_name(name)


def test_persona_validates_its_name() -> None:
    with pytest.raises(PersonaError, match=r"'\.\./x' is not allowed"):
        Persona(name="../x", clip=CLIP, transcript="Hi.")


def test_content_hash_is_pinned() -> None:
    """The sidecar keeps this hash on disk to make registration idempotent: it must not drift."""
    assert content_hash(b"RIFF", "Hello there.", "warm") == (
        "c4d15bc8f5cc8a6936c2d484b55962ef73197d66a30d5550a21f679ccc443c3b"
    )


def test_content_hash_is_sensitive_to_each_part() -> None:
    base = content_hash(CLIP, "Hello there.", "warm")
    variants = [
        content_hash(CLIP + b"\x00", "Hello there.", "warm"),
        content_hash(CLIP, "Hello there!", "warm"),
        content_hash(CLIP, "Hello there.", "calm"),
        content_hash(CLIP, "Hello there.", None),
    ]
    assert len({base, *variants}) == 5


def test_content_hash_parts_cannot_run_into_each_other() -> None:
    assert content_hash(b"ab", "c", None) != content_hash(b"a", "bc", None)
    assert content_hash(b"a", "b", "c") != content_hash(b"a", "", "bc")


def test_content_hash_ignores_only_what_does_not_change_the_voice() -> None:
    assert content_hash(CLIP, "  Hello there.\n", "") == content_hash(CLIP, "Hello there.", None)


def test_persona_hash_is_the_same_from_bytes_or_path(tmp_path: Path) -> None:
    clip_file = tmp_path / "ava.wav"
    clip_file.write_bytes(CLIP)
    from_path = Persona(name="ava", clip=clip_file, transcript="Hi.", style="warm")
    from_bytes = Persona(name="ava", clip=CLIP, transcript="Hi.", style="warm")
    assert from_path.clip_bytes() == from_bytes.clip_bytes() == CLIP
    assert from_path.content_hash() == from_bytes.content_hash()
    assert from_path.content_hash() == content_hash(CLIP, "Hi.", "warm")


def test_persona_hash_reads_the_clip_once(tmp_path: Path) -> None:
    clip_file = tmp_path / "ava.wav"
    clip_file.write_bytes(CLIP)
    persona = Persona(name="ava", clip=clip_file, transcript="Hi.")
    first = persona.content_hash()
    clip_file.unlink()  # a second read would fail
    assert persona.content_hash() == first == content_hash(CLIP, "Hi.", None)


def test_missing_clip_file(tmp_path: Path) -> None:
    p = Persona(name="ava", clip=tmp_path / "nope.wav", transcript="Hi.")
    with pytest.raises(PersonaError, match="cannot read the clip of 'ava'"):
        p.clip_bytes()


def test_empty_clip() -> None:
    with pytest.raises(PersonaError, match="the clip of 'ava' is empty"):
        Persona(name="ava", clip=b"", transcript="Hi.").clip_bytes()


def test_huge_clip() -> None:
    p = Persona(name="ava", clip=b"\x00" * (MAX_CLIP_BYTES + 1), transcript="Hi.")
    with pytest.raises(PersonaError, match=f"keep it under {MAX_CLIP_BYTES}"):
        p.clip_bytes()


def test_clip_at_the_limit_is_accepted() -> None:
    assert len(Persona(name="a", clip=b"\x00" * MAX_CLIP_BYTES, transcript="Hi.").clip_bytes())


def test_repr_leaves_the_clip_out() -> None:
    assert "RIFF" not in repr(Persona(name="ava", clip=CLIP, transcript="Hi."))


@pytest.mark.parametrize("transcript", ["", "   "])
def test_transcript_is_required(transcript: str) -> None:
    with pytest.raises(PersonaError, match="needs the transcript of its clip"):
        Persona(name="ava", clip=CLIP, transcript=transcript)


def test_overlong_transcript() -> None:
    with pytest.raises(PersonaError, match="a 10-30 s clip needs well under"):
        Persona(name="ava", clip=CLIP, transcript="x" * (MAX_TRANSCRIPT_CHARS + 1))


@pytest.mark.parametrize("style", ["warm", "[warm]", "speaking softly"])
def test_good_styles(style: str) -> None:
    assert Persona(name="ava", clip=CLIP, transcript="Hi.", style=style).style == style


@pytest.mark.parametrize("style", ["wa[rm", "a\x07b", "x" * 65])
def test_bad_style_is_rejected(style: str) -> None:
    with pytest.raises(TagError):
        Persona(name="ava", clip=CLIP, transcript="Hi.", style=style)


# --- personas file -----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "personas.toml"
    f.write_text(text)
    return f


GOOD = """
[[persona]]
name = "ava"
clip = "clips/ava.wav"
transcript = "What the clip says."
style = "warm"

[[persona]]
name = "bob"
clip = "bob.flac"
transcript = "Bob's words."
"""


def test_load_good_file(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "ava.wav").write_bytes(CLIP)
    ava, bob = load_personas(write(tmp_path, GOOD))
    assert (ava.name, ava.transcript, ava.style) == ("ava", "What the clip says.", "warm")
    assert ava.clip == tmp_path / "clips" / "ava.wav"  # relative to the file, not the cwd
    assert ava.clip_bytes() == CLIP
    assert (bob.name, bob.style, bob.clip) == ("bob", None, tmp_path / "bob.flac")


@pytest.mark.parametrize("missing", ["name", "clip", "transcript"])
def test_missing_field_names_the_entry(tmp_path: Path, missing: str) -> None:
    second = {"name": "bob", "clip": "b.wav", "transcript": "Hi."}
    del second[missing]
    ava = "[[persona]]" + GOOD.split("[[persona]]")[1]
    text = ava + "[[persona]]\n" + "".join(f'{k} = "{v}"\n' for k, v in second.items())
    with pytest.raises(PersonaError, match=f"persona #2 lacks '{missing}'"):
        load_personas(write(tmp_path, text))


def test_wrong_type_is_a_persona_error(tmp_path: Path) -> None:
    f = write(tmp_path, '[[persona]]\nname = 5\nclip = "a.wav"\ntranscript = "Hi."\n')
    with pytest.raises(PersonaError, match="persona #1: name must be a string, got 5"):
        load_personas(f)


def test_entry_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"persona #1 is not a table; write a \[\[persona\]\]"):
        load_personas(write(tmp_path, 'persona = ["ava"]\n'))


def test_bad_name_in_file(tmp_path: Path) -> None:
    f = write(tmp_path, '[[persona]]\nname = "../x"\nclip = "a.wav"\ntranscript = "Hi."\n')
    with pytest.raises(PersonaError, match=r"'\.\./x' is not allowed"):
        load_personas(f)


def test_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"cannot read personas file .*personas\.toml"):
        load_personas(write(tmp_path, "[[persona]\nname = \n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="cannot read personas file"):
        load_personas(tmp_path / "nope.toml")


@pytest.mark.parametrize("text", ["", "title = 'x'\n", "persona = 'ava'\n", "persona = []\n"])
def test_file_without_personas(tmp_path: Path, text: str) -> None:
    with pytest.raises(PersonaError, match=r"has no \[\[persona\]\] tables"):
        load_personas(write(tmp_path, text))


# --- casts


def _persona(name: str) -> Persona:
    return Persona(name, CLIP, f"I am {name}.")


def test_a_cast_maps_speaker_numbers_to_personas_in_order() -> None:
    ava, ben = _persona("ava"), _persona("ben")
    cast = Cast([ava, ben])
    assert cast[0] is ava and cast[1] is ben
    assert cast.names == ["ava", "ben"] and len(cast) == 2
    with pytest.raises(PersonaError, match=r"<\|speaker:2\|> names no one.*2 speakers"):
        cast[2]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "the cast is empty"),
        (["ava", "ben", "ava"], "names ava more than once"),
        (["ava", "../x"], "not allowed"),
        ([f"p{i}" for i in range(MAX_CAST + 1)], f"at most {MAX_CAST} speakers"),
    ],
)
def test_a_bad_cast_says_what_to_change(names: list[str], message: str) -> None:
    with pytest.raises(PersonaError, match=message):
        validate_cast(names)


def test_a_speaker_tag_beyond_the_cast_is_named_with_the_cast() -> None:
    check_speakers("<|speaker:1|> fine", ["ava", "ben"])
    with pytest.raises(PersonaError) as e:
        check_speakers("Hi. <|speaker:1|> Yo. <|speaker:2|> Hey.", ["ava", "ben"])
    assert str(e.value) == (
        "<|speaker:2|> names no one: the cast has 2 speakers (<|speaker:0|> ava, "
        "<|speaker:1|> ben); add a persona to the cast or use a lower speaker number"
    )
