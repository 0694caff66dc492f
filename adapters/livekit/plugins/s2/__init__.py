"""Self-hosted Fish Audio S2-Pro voices for LiveKit Agents, through a local `s2-sidecar`.

```python
from livekit.plugins import s2

session = AgentSession(..., tts=s2.TTS(persona="ava"), use_tts_aligned_transcript=True)
```
"""

try:
    from livekit.agents import Plugin
except ImportError as e:
    raise ImportError(
        "livekit.plugins.s2 needs LiveKit Agents: pip install 's2-plugin[livekit]'"
    ) from e

from .log import logger
from .models import TTSSampleRate
from .tts import TTS, ChunkedStream, SynthesizeStream
from .version import __version__

__all__ = ["TTS", "ChunkedStream", "SynthesizeStream", "TTSSampleRate", "__version__"]


class S2Plugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(S2Plugin())

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
