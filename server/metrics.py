"""Prometheus metrics of one server, in their own registry (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Per-round compute of one batch step, in seconds: buckets around a 21.3 ms hop.
COMPUTE_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Gauge("bandmate_sessions", "Sessions open", registry=self.registry)
        self.streams = Gauge("bandmate_streams", "WebSockets streaming", registry=self.registry)
        self.frame_compute = Histogram(
            "bandmate_frame_compute_seconds",
            "Compute of one batched step (encode + generate + decode) of all ready sessions",
            buckets=COMPUTE_BUCKETS,
            registry=self.registry,
        )
        self.misses = Counter(
            "bandmate_deadline_misses",
            "Blocks whose accompaniment was ready more than one hop after they arrived",
            registry=self.registry,
        )
        self.dropped = Counter(
            "bandmate_dropped_messages",
            "Messages dropped under back-pressure: input the model could not keep up with, "
            "or output a client did not read in time",
            ["direction"],
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "bandmate_protocol_errors",
            "Client messages answered with an error, by code",
            ["code"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
