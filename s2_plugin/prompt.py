"""The system-prompt section that teaches an LLM to write S2's inline tags."""

from __future__ import annotations

from collections.abc import Sequence

from s2_plugin import tags
from s2_plugin.personas import Cast, validate_cast

EXAMPLE_TAGS = ("[whisper]", "[laugh]", "[sigh]", "[excited]", "[pause]", "[serious]")

_GUIDE = """\
Your replies are spoken aloud by an expressive voice. Write plain spoken sentences: no markdown, \
no lists, no emoji, no URLs. You may steer the delivery with short cues in square brackets, \
placed right before the words they colour, for example:
- [whisper] Can you keep a secret?
- That is the funniest thing I have heard all day. [laugh]
- [excited] We did it!
Useful cues: {examples}. Any short description works too, such as [speaking slowly] or \
[professional broadcast tone]. Use at most one or two cues per reply, only where they help; \
never explain them, never put words you want spoken inside brackets, and never use square \
brackets for anything else."""

_STYLE = "\nYour default speaking style is {cue}; you don't need to write that cue yourself."

# No tag at the start: a reply starts with speaker 0, and SGLang-Omni 0.1.9 puts <|speaker:0|>
# before every input itself (models/fishaudio_s2_pro/tokenizer.py, build_prompt).
_CAST = """
Several voices speak in your replies: {names}. Every reply starts in {first}'s voice. Right \
before the words of another voice, write its speaker tag: {switches}. Write a tag only where \
the voice changes, even in the middle of a sentence, never at the very start of a reply, and \
never use these tags for anything else."""


def tag_guide(style: str | None = None, *, cast: Cast | Sequence[str] | None = None) -> str:
    """Text to append to an LLM's system prompt so its replies use S2 tags well.

    `style` is the persona's default style (applied by the sidecar to every request); naming it
    here keeps the LLM from repeating it. `cast` (personas or their names, speaker 0 first)
    teaches the speaker tags that switch between them.
    """
    guide = _GUIDE.format(examples=", ".join(EXAMPLE_TAGS))
    if style:
        guide += _STYLE.format(cue=tags.style_cue(style))
    if cast is not None:
        names = validate_cast(cast.names if isinstance(cast, Cast) else cast)
        if len(names) > 1:
            switches = ", ".join(
                f"{tags.speaker_tag(i)} for {name}" for i, name in enumerate(names)
            )
            guide += _CAST.format(names=", ".join(names), first=names[0], switches=switches)
    return guide
