"""The system-prompt section that teaches an LLM to write S2's inline tags."""

from __future__ import annotations

from s2_plugin import tags

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

_STYLE = "\nYour default speaking style is [{style}]; you don't need to write that cue yourself."

_SPEAKERS = (
    "\nTo switch between voices in one reply, start each part with <|speaker:0|>, "
    "<|speaker:1|> and so on."
)


def tag_guide(style: str | None = None, *, speakers: bool = False) -> str:
    """Text to append to an LLM's system prompt so its replies use S2 tags well.

    `style` is the persona's default style (applied by the sidecar to every request); naming it
    here keeps the LLM from repeating it. `speakers` adds the multi-speaker syntax.
    """
    guide = _GUIDE.format(examples=", ".join(EXAMPLE_TAGS))
    if style:
        cue = style.strip().strip("[]")
        tags.validate(f"[{cue}]")
        guide += _STYLE.format(style=cue)
    if speakers:
        guide += _SPEAKERS
    return guide
