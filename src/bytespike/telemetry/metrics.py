"""``/metrics`` in Prometheus text format, and what the road reports when a request ends.

The hot path only bumps plain integers in dicts keyed by a few bounded labels (public model id,
protocol, HTTP status, outcome, token kind: never anything a client can make up); the
``prometheus_client`` families are built when ``/metrics`` is scraped. Upstream errors and breaker
states are read from the router at scrape time, so routing pays nothing for them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from bytespike.billing import money
from bytespike.gateway.routing import Router
from bytespike.telemetry.logs import RequestLog

if TYPE_CHECKING:
    from bytespike.config import Settings
    from bytespike.gateway.call import Call

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 40.0)
NO_ANSWER = 499  # the client left before any answer was sent


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Metrics:
    """Counters of finished requests; a ``prometheus_client`` collector over them and the router."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._ttft: dict[tuple[str, str], _Histogram] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._cost: dict[str, int] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)  # type: ignore[arg-type]

    def request(self, call: Call, status: int, billed: money.Usage | None, cost: int, latency: float) -> None:
        model = call.resolved.model.id if call.resolved else ""
        outcome = call.outcome.value if call.outcome else "refused"
        key = (call.protocol, model, str(status), outcome)
        self._requests[key] = self._requests.get(key, 0) + 1
        pm = (call.protocol, model)
        _hist(self._latency, pm, LATENCY_BUCKETS).observe(latency)
        if call.stream and call.first_byte is not None:
            _hist(self._ttft, pm, TTFT_BUCKETS).observe(call.first_byte - call.started)
        if billed is not None:
            for kind, n in (("input", billed.input_tokens), ("output", billed.output_tokens),
                            ("cache_read", billed.cache_read_tokens), ("cache_write_5m", billed.cache_write_5m_tokens),
                            ("cache_write_1h", billed.cache_write_1h_tokens)):
                if n:
                    self._tokens[(model, kind)] = self._tokens.get((model, kind), 0) + n
        if cost:
            self._cost[model] = self._cost.get(model, 0) + cost

    def collect(self) -> Iterator[Metric]:
        req = CounterMetricFamily("bytespike_requests", "Finished inference requests.",
                                  labels=("protocol", "model", "status", "outcome"))
        for request_labels, n in self._requests.items():
            req.add_metric(request_labels, n)
        yield req
        for name, doc, hists in (
            ("bytespike_request_duration_seconds", "Time from request to the end of the answer.", self._latency),
            ("bytespike_time_to_first_token_seconds", "Time from request to the first streamed byte.", self._ttft),
        ):
            fam = HistogramMetricFamily(name, doc, labels=("protocol", "model"))
            for pm, h in hists.items():
                fam.add_metric(pm, h.buckets(), h.total)
            yield fam
        tok = CounterMetricFamily("bytespike_tokens", "Billed tokens.", labels=("model", "kind"))
        for model_kind, n in self._tokens.items():
            tok.add_metric(model_kind, n)
        yield tok
        cost = CounterMetricFamily("bytespike_cost_usd", "Charged to wallets, in USD.", labels=("model",))
        for model, nano in self._cost.items():
            cost.add_metric((model,), nano / money.NANO_PER_USD)
        yield cost
        yield from self._deployments()

    def _deployments(self) -> Iterator[Metric]:
        labels = ("provider", "upstream_model")
        errors = CounterMetricFamily("bytespike_upstream_errors", "Failed upstream attempts, by error type.",
                                     labels=(*labels, "type"))
        state = GaugeMetricFamily("bytespike_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                                  labels=labels)
        opened = CounterMetricFamily("bytespike_breaker_opened", "Times the circuit breaker opened.", labels=labels)
        for (provider, model), health, st in self._router.snapshot():
            for type_, n in health.errors.items():
                errors.add_metric((provider, model, type_), n)
            state.add_metric((provider, model), int(st))
            opened.add_metric((provider, model), health.opened)
        yield errors
        yield state
        yield opened

    def render(self) -> bytes:
        return generate_latest(self._registry)


def _hist(hists: dict[tuple[str, str], _Histogram], key: tuple[str, str], bounds: tuple[float, ...]) -> _Histogram:
    h = hists.get(key)
    if h is None:
        h = hists[key] = _Histogram(bounds)
    return h


class Telemetry:
    """What the road reports once per request: the ``/metrics`` counters and the request log line."""

    def __init__(self, settings: Settings, router: Router) -> None:
        self.metrics = Metrics(router)
        self.log = RequestLog(settings.log_prompts)

    def finished(self, call: Call) -> None:
        status = call.status or NO_ANSWER
        billed, cost = _billed(call)
        latency = time.perf_counter() - call.started
        self.metrics.request(call, status, billed, cost, latency)
        self.log.request(call, status, billed, cost, latency)

    def close(self) -> None:
        self.log.close()


def _billed(call: Call) -> tuple[money.Usage | None, int]:
    """The usage settlement billed (read, never re-parsed) and its charge."""
    if call.billed is None:
        return None, 0
    return call.billed, call.charge
