"""The bundled default voice: what S2 speaks in when a request names no persona.

Without a reference S2 invents a new speaker for every request, so a reply of several segments
would change voice between sentences. The sidecar therefore registers this clip as the persona
`default` (unless one of that name exists): the project's synthetic Joe voice, the same
recording as `examples/personas/joe.wav` (Piper en_US-joe-medium, CC0 data), stored losslessly
as FLAC. Register your own persona named `default` to replace it.
"""

from __future__ import annotations

from pathlib import Path

from s2_plugin.protocol import DEFAULT_VOICE
from s2_sidecar.store import PersonaStore, StoredPersona

CLIP = Path(__file__).with_name("default.flac")
TRANSCRIPT = (
    "Hi, I'm Joe, the preview voice of this project. I read this short passage so that the "
    "sidecar has a clip to learn from. It runs on a plain laptop, with no graphics card, and "
    "it never leaves your machine. Thanks for listening, and enjoy the demo."
)


def ensure_default(store: PersonaStore) -> StoredPersona:
    """The persona `default`: the store's own if it has one, else the bundled voice."""
    return (
        store.find(DEFAULT_VOICE) or store.register(DEFAULT_VOICE, CLIP.read_bytes(), TRANSCRIPT)[0]
    )
