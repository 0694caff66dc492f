"""The sidecar's pronunciation lexicon: one for every voice and one per persona.

Every request's text goes through it before it is cut into generations, so every client,
an OpenAI SDK's included, says the same words right. A persona's entry wins over the
global one for the same word; in a cast, each speaker's turns use that member's entries.

Entries are CMU Arpabet or IPA (`s2_plugin.lexicon`), kept in the store
(`lexicon/pronunciations.json`, beside the personas) so they outlive a restart. They come
from a TOML file at start (`s2-sidecar serve --pronunciations FILE`, the source of truth
for what it lists, like `--personas`) and from the API:

- `GET /v1/pronunciations`: `{"pronunciations": {...}, "personas": {"joe": {...}}}`
- `PUT /v1/pronunciations`: `{"pronunciations": {"Metformin": "mɛtˈfɔɹmɪn"}}` replaces the
  global entries (`{}` clears them); a bad entry is a 400 that names it.
- `PUT /v1/pronunciations/{persona}`: the same for one persona's entries.

```toml
[pronunciations]             # every voice
Metformin = "mɛtˈfɔɹmɪn"

[personas.joe]               # only joe, winning over the above
Niamh = "N IY1 V"
```
"""

# ruff: noqa: RUF002  (IPA is written in IPA letters)

from __future__ import annotations

import json
import re
import threading
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from s2_plugin.lexicon import Lexicon
from s2_plugin.phonemes import PhonemeError
from s2_sidecar.files import write_atomic

_SPEAKER_SPLIT = re.compile(r"(<\|speaker:\d{1,2}\|>)")


class Pronunciations:
    """The lexicons, in memory and on disk under the store's `root`; thread-safe."""

    def __init__(self, root: Path) -> None:
        self._path = root / "lexicon" / "pronunciations.json"
        self._lock = threading.Lock()
        self._global: dict[str, str] = {}
        self._personas: dict[str, dict[str, str]] = {}
        self._lexicons: dict[str | None, Lexicon] = {None: Lexicon()}
        if self._path.exists():
            saved = json.loads(self._path.read_text())
            self._set(saved.get("pronunciations", {}), saved.get("personas", {}))

    def load_file(self, path: Path) -> None:
        """Take the entries a TOML file lists (see the module docstring), replacing those."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PhonemeError(f"cannot read the pronunciations file {path}: {e}") from e
        personas = data.get("personas", {})
        if not isinstance(personas, dict):
            raise PhonemeError(f"{path}: [personas.NAME] tables hold a persona's entries")
        with self._lock:
            self._set(
                {**self._global, **data.get("pronunciations", {})},
                {**self._personas, **{name.lower(): v for name, v in personas.items()}},
            )

    def entries(self) -> dict[str, Any]:
        with self._lock:
            return {"pronunciations": dict(self._global), "personas": dict(self._personas)}

    def replace(self, entries: Mapping[str, str], persona: str | None = None) -> None:
        """Replace the global entries, or one persona's; `PhonemeError` for a bad one."""
        with self._lock:
            if persona is None:
                self._set(dict(entries), self._personas)
            else:
                others = {k: v for k, v in self._personas.items() if k != persona.lower()}
                mine = {persona.lower(): dict(entries)} if entries else {}
                self._set(self._global, {**others, **mine})

    def _set(self, global_: dict[str, str], personas: dict[str, dict[str, str]]) -> None:
        base = Lexicon(global_)
        lexicons: dict[str | None, Lexicon] = {None: base}
        for name, entries in personas.items():
            if not isinstance(entries, dict):
                raise PhonemeError(f"persona {name!r}: its pronunciations must be a table")
            try:
                lexicons[name] = base | Lexicon(entries)
            except PhonemeError as e:
                raise PhonemeError(f"persona {name!r}: {e}") from None
        saved = {"pronunciations": global_, "personas": personas}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._path, json.dumps(saved, ensure_ascii=False, indent=1).encode())
        self._global, self._personas, self._lexicons = global_, personas, lexicons

    def apply(self, text: str, voices: Sequence[str]) -> str:
        """`text` with the words of each turn's voice (`voices[N]` speaks speaker N's turns)
        as phoneme markup that keeps the word."""
        lexicons = self._lexicons
        pieces = _SPEAKER_SPLIT.split(text)  # text, tag, text, tag, ...
        out: list[str] = []
        speaker = 0
        for i, piece in enumerate(pieces):
            if i % 2:
                speaker = int(piece[len("<|speaker:") : -2])
                out.append(piece)
                continue
            voice = voices[speaker].lower() if speaker < len(voices) else None
            out.append(lexicons.get(voice, lexicons[None]).apply(piece))
        return "".join(out)
