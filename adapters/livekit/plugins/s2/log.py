import logging

logger = logging.getLogger("livekit.plugins.s2")
