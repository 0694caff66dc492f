"""The persona store: atomic writes, idempotence, recovery from an interrupted write."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from s2_sidecar.errors import Conflict, InsufficientStorage, NotFound
from s2_sidecar.store import PersonaStore
from support import raw_http
from support.sidecar import PERSONAS_TOML
from support.signals import speechlike

from s2_plugin.audio import float_to_pcm16, wav_bytes

CLIP = wav_bytes(float_to_pcm16(speechlike(12, 22050)), 22050)


def test_register_persist_reload(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path)
    store.load()
    persona, changed = store.register("ava", CLIP, " Hello there. ", "warm")
    assert changed and persona.info.transcript == "Hello there."
    again = PersonaStore(tmp_path)
    again.load()
    assert again.get("ava") == persona
    assert {p.name for p in tmp_path.iterdir()} == {
        "ava.json",
        f"ava.{persona.info.sha256[:16]}.wav",
    }


def test_same_content_is_a_no_op_and_other_content_needs_replace(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path)
    first, _ = store.register("ava", CLIP, "Hello.")
    assert store.register("ava", CLIP, "Hello.") == (first, False)
    with pytest.raises(Conflict):
        store.register("ava", CLIP, "Goodbye.")
    second, changed = store.register("ava", CLIP, "Goodbye.", replace=True)
    assert changed and second.info.sha256 != first.info.sha256
    assert len(list(tmp_path.glob("ava.*.wav"))) == 1  # the old clip is gone


def test_a_crash_mid_replace_keeps_the_old_persona(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PersonaStore(tmp_path)
    old, _ = store.register("ava", CLIP, "Hello.")
    real_replace = os.replace

    def crash_on_metadata(src: str, dst: Path) -> None:
        if str(dst).endswith(".json"):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_metadata)
    with pytest.raises(OSError):
        store.register("ava", CLIP, "Goodbye.", replace=True)
    monkeypatch.undo()
    (tmp_path / ".tmp-halfwritten").write_bytes(b"partial")
    reloaded = PersonaStore(tmp_path)
    reloaded.load()
    assert reloaded.get("ava") == old
    assert {p.name for p in tmp_path.iterdir()} == {
        "ava.json",
        f"ava.{old.info.sha256[:16]}.wav",
    }


def test_delete(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path)
    store.register("ava", CLIP, "Hello.")
    store.delete("ava")
    with pytest.raises(NotFound):
        store.get("ava")
    assert list(tmp_path.iterdir()) == []


def test_clips_are_read_from_disk_when_used_not_kept(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path)
    persona, _ = store.register("ava", CLIP, "Hello.")
    reloaded = PersonaStore(tmp_path)
    reloaded.load()
    for held in (persona, reloaded.get("ava")):
        assert held.data is None
        assert held.wav == held.path.read_bytes()
    loaded = persona.loaded()
    store.delete("ava")  # a request that loaded it keeps its clip
    assert loaded.wav[:4] == b"RIFF"
    with pytest.raises(NotFound):
        persona.loaded()


def test_a_full_store_refuses_more_with_a_507(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path, max_personas=2)
    store.register("ava", CLIP, "Hello.")
    store.register("ben", CLIP, "Hello.")
    with pytest.raises(InsufficientStorage) as e:
        store.register("cy", CLIP, "Hello.")
    assert (e.value.status, e.value.code) == (507, "store_full")
    assert "--max-personas" in e.value.message
    store.register("ben", CLIP, "Goodbye.", replace=True)  # a replacement needs no more room
    store.delete("ava")
    store.register("cy", CLIP, "Hello.")

    size = store.get("cy").path.stat().st_size
    small = PersonaStore(tmp_path / "small", max_bytes=size + size // 2)
    small.register("ava", CLIP, "Hello.")
    with pytest.raises(InsufficientStorage, match="--max-store-bytes"):
        small.register("ben", CLIP, "Hello.")
    assert [p.name for p in small.list()] == ["ava"]


def test_the_sidecar_answers_a_full_store_with_a_507(make_sidecar: Any) -> None:
    process = make_sidecar(personas=PERSONAS_TOML, args=["--max-personas", "1"])
    status, body = raw_http.upload(
        process.port, {"name": "ava", "transcript": "Hi.", "audio": CLIP}
    )
    assert (status, body["error"]["code"]) == (507, "store_full")
    assert "--max-personas" in body["error"]["message"]
