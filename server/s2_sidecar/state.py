"""What the sidecar's routes share: the app keys and the state of the speech in progress."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from s2_sidecar.admission import Admission
from s2_sidecar.engines.base import Engine
from s2_sidecar.metrics import Metrics
from s2_sidecar.pronunciations import Pronunciations
from s2_sidecar.settings import Settings
from s2_sidecar.store import PersonaStore
from s2_sidecar.tasks import Background


@dataclass
class Streams:
    draining: bool = False
    started: dict[str, float] = field(default_factory=dict)
    """Request id -> start time of every speech response in progress."""


ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", PersonaStore)
METRICS = web.AppKey("metrics", Metrics)
SETTINGS = web.AppKey("settings", Settings)
ALIASES = web.AppKey("aliases", dict[str, str])
"""Voice names (OpenAI's, say) that stand for personas: {"alloy": "joe"}."""
ADMISSION = web.AppKey("admission", Admission)
BACKGROUND = web.AppKey("background", Background)
REGISTER_LOCK = web.AppKey("register_lock", asyncio.Lock)
STREAMS = web.AppKey("streams", Streams)
PRONUNCIATIONS = web.AppKey("pronunciations", Pronunciations)
