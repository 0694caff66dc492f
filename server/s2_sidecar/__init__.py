"""The s2-plugin sidecar: S2-Pro voices over HTTP, personas kept warm, a CPU preview engine."""
