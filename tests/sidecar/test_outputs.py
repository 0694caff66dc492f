"""The CLI's output files: each suffix gives the format it names, with every sample in it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from s2_sidecar import outputs
from support.signals import speechlike

from s2_plugin.audio import SAMPLE_RATE, float_to_pcm16

CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "mp3", ".ogg": "opus", ".opus": "opus"}


@pytest.mark.parametrize("suffix", [*CODECS, ".aac"])
def test_each_suffix_writes_its_format_chunk_by_chunk(tmp_path: Path, suffix: str) -> None:
    pcm = float_to_pcm16(speechlike(2.0, SAMPLE_RATE))
    path = tmp_path / f"out{suffix.upper()}"  # the suffix's case does not matter
    with outputs.SoundWriter(path) as out:
        for start in range(0, len(pcm), 8820):  # 100 ms chunks, as a stream brings them
            out.write(pcm[start : start + 8820])
    with av.open(str(path)) as container:
        codec = container.streams.audio[0].codec_context.name
        seconds = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    assert codec.startswith(CODECS.get(suffix, "aac"))  # mp3 decodes as "mp3float"
    assert abs(seconds - 2.0) < 0.1  # an encoder's frame of padding at most
    if suffix in (".wav", ".flac"):  # lossless: the very samples
        assert np.array_equal(sf.read(path, dtype="int16")[0], np.frombuffer(pcm, "<i2"))


def test_a_suffix_with_no_format_is_refused_with_the_ones_there_are(tmp_path: Path) -> None:
    refused = r"cannot write \.aiff; name the output \*\.wav, \*\.flac, .* or \*\.aac$"
    with pytest.raises(ValueError, match=refused):
        outputs.SoundWriter(tmp_path / "x.aiff")
    assert not (tmp_path / "x.aiff").exists()
