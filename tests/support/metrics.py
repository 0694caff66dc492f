"""Read a sidecar's /metrics (Prometheus text) in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Metrics:
    """Samples from one /metrics scrape; `value()` sums those matching a name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """E.g. `value("s2_requests_total", route="/v1/audio/speech", status="200")`."""
        return sum(
            v
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        )

    def __getitem__(self, name: str) -> float:
        # A Prometheus selector here would match no sample and read 0: an assert that can't fail.
        if "{" in name:
            raise KeyError(f"{name!r}: pass labels to value(name, label=...) instead")
        return self.value(name)
