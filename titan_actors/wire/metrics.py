"""The Prometheus exposition of one status round of the tree (`GET /metrics`).

Pure: from the `TreeStatus` the HTTP actor keeps (each actor's counters and
figures, as `titan status --json` shows them) to the text format, through
`prometheus_client`'s own families and writer. Names follow Prometheus'
conventions (`titan_` prefix, `_total` for counters, base units); the list
with their labels is in docs/observability.md. A counter belongs to the
actor that counts it and starts again from 0 when that actor restarts,
which Prometheus' `rate()` takes as a reset.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from titan_actors.domain.health import Health, venue_reachable
from titan_actors.messages import TreeStatus

__all__ = ["render_metrics"]

#: The plain counters of each actor's detail: key → help.
_GATEWAY_COUNTERS = {
    "requests": "FastPath requests received",
    "replies": "FastPath replies sent",
    "executions": "FastPath EXECUTION pushes sent",
    "busy": "FastPath requests answered BUSY",
    "internal": "FastPath requests answered INTERNAL",
    "refused_connections": "FastPath connections refused",
}
_RISK_COUNTERS = {"checked": "orders checked by the risk guard", "approved": "orders approved",
                  "refused": "orders refused by a risk rule"}
_VENUE_COUNTERS = {"submitted": "orders sent to the venue",
                   "rejected": "orders the venue (or the engine) rejected", "fills": "fills applied",
                   "bad_venue_data": "venue reports that could not be applied"}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) or hasattr(value, "is_finite") else 0.0


def _histogram(name: str, help_text: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, help_text, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], snapshot: dict[str, Any]) -> None:
    """`snapshot`: `runtime.histogram.Histogram.snapshot()`."""
    buckets = [("+Inf" if bound == float("inf") else repr(float(bound)), float(count))
               for bound, count in snapshot["buckets"]]
    family.add_metric(labels, buckets, float(snapshot["sum"]))


class _TreeCollector:
    def __init__(self, tree: TreeStatus | None, verdict: Health, expected: Collection[str],
                 workers: dict[str, tuple[float, int]]) -> None:
        self.tree, self.verdict, self.expected, self.workers = tree, verdict, expected, workers

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("titan_ready", "1 when the engine can take an order (GET /health is 200)")
        ready.add_metric([], 1.0 if self.verdict.ready else 0.0)
        yield ready
        component = GaugeMetricFamily("titan_health_component_ok", "1 when a part of the engine is healthy",
                                      labels=["component"])
        for name, state in sorted(self.verdict.components.items()):
            component.add_metric([name], 1.0 if state["ok"] else 0.0)
        yield component
        if self.tree is None:
            return
        actors = {a.role: a for a in self.tree.actors}
        up = GaugeMetricFamily("titan_actor_up", "1 when the actor answered its status and runs",
                               labels=["role"])
        restarts = CounterMetricFamily("titan_actor_restarts", "restarts of the actor by its supervisor",
                                       labels=["role"])
        for role in sorted(set(actors) | set(self.tree.missing) | set(self.expected)):
            actor = actors.get(role)
            up.add_metric([role], 1.0 if actor is not None and actor.state == "running" else 0.0)
            if actor is not None:
                restarts.add_metric([role], float(actor.restarts))
        yield up
        yield restarts
        cpu = CounterMetricFamily("titan_worker_cpu_seconds", "CPU time the worker process spent",
                                  labels=["worker"])
        rss = GaugeMetricFamily("titan_worker_resident_memory_bytes", "resident memory of the worker process",
                                labels=["worker"])
        for worker, (seconds, resident) in sorted(self.workers.items()):
            cpu.add_metric([worker], seconds)
            rss.add_metric([worker], float(resident))
        yield from (cpu, rss)
        yield from self._counters(actors.get("gateway"), "titan_fastpath", _GATEWAY_COUNTERS)
        yield from self._gateway(actors.get("gateway"))
        yield from self._counters(actors.get("risk"), "titan_risk", _RISK_COUNTERS)
        yield from self._refusals(actors.get("risk"))
        yield from self._venues(actors)
        yield from self._positions(actors)
        yield from self._nats(actors.get("nats"))
        yield from self._trading(actors.get("risk"))

    @staticmethod
    def _counters(actor: Any, prefix: str, names: dict[str, str]) -> Iterator[Metric]:
        if actor is None:
            return
        for key, help_text in names.items():
            family = CounterMetricFamily(f"{prefix}_{key}", help_text)
            family.add_metric([], _number(actor.detail.get(key, 0)))
            yield family

    @staticmethod
    def _gateway(actor: Any) -> Iterator[Metric]:
        if actor is None:
            return
        detail = actor.detail
        requests = CounterMetricFamily("titan_fastpath_requests_by_type", "FastPath requests by type",
                                       labels=["type"])
        for kind, count in sorted((detail.get("requests_by_type") or {}).items()):
            requests.add_metric([kind], float(count))
        replies = CounterMetricFamily("titan_fastpath_replies_by_type",
                                      "FastPath replies and pushes by type and code", labels=["type", "code"])
        for key, count in sorted((detail.get("replies_by_type") or {}).items()):
            kind, _, code = key.partition("|")
            replies.add_metric([kind, code], float(count))
        yield from (requests, replies)
        latency = detail.get("confirm_to_accepted_s")
        if latency:
            histogram = _histogram("titan_confirm_to_accepted_seconds",
                                   "from a CONFIRM's arrival to its ACCEPTED, at the gateway", [])
            _add_histogram(histogram, [], latency)
            yield histogram

    @staticmethod
    def _refusals(actor: Any) -> Iterator[Metric]:
        if actor is None:
            return
        family = CounterMetricFamily("titan_risk_refusals_by_rule",
                                     "orders refused, by the rule that refused", labels=["rule"])
        for rule, count in sorted((actor.detail.get("refusals_by_rule") or {}).items()):
            family.add_metric([rule], float(count))
        yield family

    @staticmethod
    def _venues(actors: dict[str, Any]) -> Iterator[Metric]:
        venues = {r.removeprefix("venue:"): a.detail for r, a in actors.items() if r.startswith("venue:")}
        for key, help_text in _VENUE_COUNTERS.items():
            family = CounterMetricFamily(f"titan_venue_{key}", help_text, labels=["venue"])
            for name, detail in sorted(venues.items()):
                family.add_metric([name], _number(detail.get(key, 0)))
            yield family
        live = GaugeMetricFamily("titan_orders_in_flight", "orders journaled and not final", labels=["venue"])
        healthy = GaugeMetricFamily("titan_venue_up", "1 while the venue can be reached", labels=["venue"])
        for name, detail in sorted(venues.items()):
            live.add_metric([name], _number(detail.get("live_orders", 0)))
            healthy.add_metric([name], 1.0 if venue_reachable(detail)["ok"] else 0.0)
        yield live
        yield healthy
        headroom = GaugeMetricFamily("titan_venue_rate_limit_headroom",
                                     "requests the venue's rate limit allows now", labels=["venue"])
        queued = GaugeMetricFamily("titan_venue_requests_queued", "requests waiting for the rate limit",
                                   labels=["venue"])
        stream = GaugeMetricFamily("titan_venue_private_stream",
                                   "1 for the state of the venue's private stream", labels=["venue", "state"])
        round_trip = _histogram("titan_venue_round_trip_seconds",
                                "from sending a request to the venue to handling its answer", ["venue"])
        for name, detail in sorted(venues.items()):
            limit = detail.get("rate_limit")
            if limit:
                headroom.add_metric([name], _number(limit.get("headroom", 0)))
                queued.add_metric([name], _number(limit.get("queued", 0)))
            if detail.get("stream"):
                stream.add_metric([name, str(detail["stream"])], 1.0)
            if detail.get("round_trip_s"):
                _add_histogram(round_trip, [name], detail["round_trip_s"])
        yield from (headroom, queued, stream, round_trip)

    @staticmethod
    def _positions(actors: dict[str, Any]) -> Iterator[Metric]:
        qty = GaugeMetricFamily("titan_position_quantity", "net position in the base asset (short < 0)",
                                labels=["symbol", "venue"])
        realised = GaugeMetricFamily("titan_position_realised_pnl", "realised PnL in the quote currency",
                                     labels=["symbol", "venue"])
        unrealised = GaugeMetricFamily("titan_position_unrealised_pnl",
                                       "unrealised PnL at the last mark in the quote currency",
                                       labels=["symbol", "venue"])
        fills = CounterMetricFamily("titan_position_fills", "fills applied to the position",
                                    labels=["symbol", "venue"])
        for role, actor in sorted(actors.items()):
            if not role.startswith("position:"):
                continue
            symbol = role.removeprefix("position:")
            for venue, view in sorted((actor.detail.get("venues") or {}).items()):
                qty.add_metric([symbol, venue], _number(view.get("qty")))
                realised.add_metric([symbol, venue], _number(view.get("realised_pnl")))
                unrealised.add_metric([symbol, venue], _number(view.get("unrealised_pnl")))
                fills.add_metric([symbol, venue], _number(view.get("fills")))
        yield from (qty, realised, unrealised, fills)

    @staticmethod
    def _nats(actor: Any) -> Iterator[Metric]:
        if actor is None:
            return
        detail = actor.detail
        connected = GaugeMetricFamily("titan_nats_connected", "1 while the NATS bridge is connected")
        connected.add_metric([], 1.0 if detail.get("connected") else 0.0)
        depth = GaugeMetricFamily("titan_outbox_depth", "events stored and not yet acknowledged by JetStream")
        depth.add_metric([], _number(detail.get("outbox_depth", 0)))
        oldest = GaugeMetricFamily("titan_outbox_oldest_age_seconds",
                                   "age of the oldest unacknowledged event")
        oldest.add_metric([], _number(detail.get("oldest_unsent_ms") or 0) / 1000)
        acked = CounterMetricFamily("titan_jetstream_published", "events JetStream acknowledged")
        acked.add_metric([], _number(detail.get("published", 0)))
        failed = CounterMetricFamily("titan_jetstream_publish_errors",
                                     "publishes JetStream did not acknowledge")
        failed.add_metric([], _number(detail.get("publish_errors", 0)))
        yield from (connected, depth, oldest, acked, failed)

    @staticmethod
    def _trading(actor: Any) -> Iterator[Metric]:
        if actor is None:
            return
        pnl = GaugeMetricFamily("titan_realised_pnl_today", "realised PnL of the UTC day, all symbols")
        pnl.add_metric([], _number(actor.detail.get("realised_today", 0)))
        limit = GaugeMetricFamily("titan_daily_loss_limit", "the daily loss limit (0: none)")
        limit.add_metric([], _number(actor.detail.get("daily_loss_limit", 0)))
        yield from (pnl, limit)
        state = GaugeMetricFamily("titan_trading_state", "1 for the trading state in force in a scope",
                                  labels=["scope", "state"])
        for scope, mode in sorted({"global": "ACTIVE", **(actor.detail.get("states") or {})}.items()):
            state.add_metric([scope, mode], 1.0)
        yield state


def render_metrics(tree: TreeStatus | None, verdict: Health, expected: Collection[str],
                   workers: dict[str, tuple[float, int]] | None = None) -> bytes:
    """The text exposition of `tree` (None: no status round has come back yet);
    `workers`: each worker's (CPU seconds, resident bytes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_TreeCollector(tree, verdict, expected, workers or {}))  # type: ignore[arg-type]
    return generate_latest(registry)
