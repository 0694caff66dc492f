"""Fish Audio S2-Pro voices for Pipecat, from a self-hosted `s2-sidecar`.

Usage: ``from pipecat_s2 import S2TTSService``.
"""

try:
    import pipecat  # noqa: F401
except ImportError as e:
    raise ImportError("pipecat_s2 needs Pipecat: pip install 's2-plugin[pipecat]'") from e

from pipecat_s2.tts import S2TTSService, S2TTSSettings, without_tags

__all__ = ["S2TTSService", "S2TTSSettings", "without_tags"]
