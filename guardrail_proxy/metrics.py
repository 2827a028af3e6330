"""The proxy's Prometheus metrics, with prometheus-client, in a registry of the app's own (several apps in one
process, as in the tests, never share or clash). Exposed at /metrics (see app.py for the ops port and key).

Per request (from its audit record, once it ends): requests by endpoint, route, client name, status and
decision; each check by route, phase, policy, label, action and outcome (pass, violation, error, unchecked:
a failed check a fail-open route let through, overload); the proxy's added latency and a stream's time to
first token. Per classifier call, as it happens: its latency and the cache hits. Read at scrape time: the
requests in flight and, per classifier, the calls in flight and queued. Client keys appear by name only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .decisions import CheckFailure, CheckOutcome, Decision, Verdict
from .policies import Policy

if TYPE_CHECKING:
    from .audit import AuditRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ADDED_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Watched(Protocol):
    """What the scrape-time gauges read (runtime.Runtime)."""

    def load(self) -> dict[str, tuple[int, int]]: ...

    def in_flight(self) -> int: ...

    def relayed_skips(self) -> int: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("guardrail_requests", "Requests answered, by how they ended",
                                ["endpoint", "route", "client", "status", "decision"], registry=r)
        self.checks = Counter("guardrail_checks", "Checks (a policy applied to a text), by outcome",
                              ["route", "phase", "policy", "label", "action", "outcome", "error"], registry=r)
        self.cache_hits = Counter("guardrail_check_cache_hits", "Checks answered from the verdict cache",
                                  ["policy"], registry=r)
        self.classifier_seconds = Histogram("guardrail_classifier_seconds", "One classifier call, retries included",
                                            ["policy", "result"], buckets=LATENCY_BUCKETS, registry=r)
        self.added_seconds = Histogram(
            "guardrail_added_latency_seconds", "Time the proxy added: a completion's total time less the upstream "
            "call's, or a stream's first token less the upstream's", ["route", "kind"], buckets=ADDED_BUCKETS,
            registry=r)
        self.ttft_seconds = Histogram("guardrail_stream_ttft_seconds", "A stream's first event, from the request's "
                                      "arrival", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.reloads = Counter("guardrail_config_reloads", "Config reloads, by result", ["result"], registry=r)
        self.generation = Gauge("guardrail_config_generation", "The config generation serving new requests",
                                registry=r)
        self.reload_ok = Gauge("guardrail_config_last_reload_ok", "1 when the last reload (or the start) applied",
                               registry=r)
        self.named = {
            "guardrail_audit_backpressure_total": Counter(
                "guardrail_audit_backpressure", "Requests held (waited) or refused for a full audit backlog",
                ["result"], registry=r),
            "guardrail_audit_lost_total": Counter("guardrail_audit_lost", "Audit records not stored", registry=r),
            "guardrail_audit_commit_failures_total": Counter("guardrail_audit_commit_failures",
                                                             "Audit commits that failed", registry=r),
            "guardrail_audit_reduced_total": Counter(
                "guardrail_audit_reduced", "Records stored without checks and content", registry=r),
            "guardrail_audit_records_total": Counter("guardrail_audit_records", "Audit records committed",
                                                     registry=r),
            "guardrail_shadow_checks_total": Counter(
                "guardrail_shadow_checks", "Candidate policy calls on live traffic (shadow.py), by agreement with "
                "the enforced verdict: agree, disagree, error (either check failed)", ["route", "policy", "agreement"],
                registry=r),
            "guardrail_shadow_dropped_total": Counter(
                "guardrail_shadow_dropped", "Candidate policy calls or rows dropped: bound (the entry's "
                "max_in_flight), busy (no spare classifier slot), shutdown, audit_backlog (the writer's shadow queue "
                "was full), writer_stopped, store_refused (a row the store would not take), internal (a fault "
                "starting them)",
                ["route", "policy", "reason"], registry=r),
        }

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """One of the counters in `named` (the audit writer's), by its full name."""
        counter = self.named[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def watch(self, watched: Watched) -> None:
        self.registry.register(LoadCollector(watched))

    def record_check(self, outcome: CheckOutcome) -> None:
        """Each classifier call as it ends (the checker's on_outcome); the outcome counts come at the end."""
        if isinstance(outcome, Verdict) and outcome.cached:
            self.cache_hits.labels(outcome.policy_id).inc()
        elif isinstance(outcome, Verdict):
            self.classifier_seconds.labels(outcome.policy_id, "ok").observe(outcome.latency_ms / 1000)
        elif outcome.latency_ms:
            self.classifier_seconds.labels(outcome.policy_id, outcome.kind).observe(outcome.latency_ms / 1000)

    def record_request(self, endpoint: str, record: AuditRecord, policies: Mapping[str, Policy]) -> None:
        route = record.route or "none"
        self.requests.labels(endpoint, route, record.client or "none", str(record.status), record.decision).inc()
        for decision in record.decisions:
            for outcome in decision.outcomes:
                error = outcome.kind if isinstance(outcome, CheckFailure) else ""
                self.checks.labels(route, decision.phase, outcome.policy_id, label_of(outcome, policies),
                                   action_of(decision, outcome), outcome_kind(decision, outcome), error).inc()
        timing = record.timing
        if timing.first_event_s is not None:
            self.ttft_seconds.labels(route).observe(timing.first_event_s)
            if timing.upstream_first_s is not None:
                self.added_seconds.labels(route, "stream_ttft").observe(
                    max(0.0, timing.first_event_s - timing.upstream_first_s))
        elif timing.upstream_s is not None and timing.total_s is not None:
            self.added_seconds.labels(route, "completion").observe(max(0.0, timing.total_s - timing.upstream_s))

    def reloaded(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "error").inc()

    def set_generation(self, generation: int, *, ok: bool) -> None:
        self.generation.set(generation)
        self.reload_ok.set(1 if ok else 0)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


def label_of(outcome: CheckOutcome, policies: Mapping[str, Policy]) -> str:
    """A label the policy defines, else the verdict as 0/1: a JSON policy's category is the classifier's own free
    text, which a prompt aimed at the classifier could fill with anything, so it never becomes a label. Pure."""
    if not isinstance(outcome, Verdict):
        return ""
    policy = policies.get(outcome.policy_id)
    if policy is not None and outcome.label in policy.labels:
        return outcome.label
    return "1" if outcome.violation else "0"


def action_of(decision: Decision, outcome: CheckOutcome) -> str:
    return (decision.action_of(outcome) if isinstance(outcome, Verdict) else None) or "none"


def outcome_kind(decision: Decision, outcome: CheckOutcome) -> str:
    """pass | violation | overload | unchecked (a failure the route's fail-open let through) | error. Pure."""
    if isinstance(outcome, Verdict):
        return "violation" if outcome.violation else "pass"
    if outcome.kind == "overload":
        return "overload"
    return "unchecked" if decision.unchecked else "error"


class LoadCollector(Collector):
    def __init__(self, watched: Watched) -> None:
        self.watched = watched

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        flying = GaugeMetricFamily("guardrail_requests_in_flight", "Requests started and not yet ended")
        flying.add_metric([], self.watched.in_flight())
        calls = GaugeMetricFamily("guardrail_classifier_in_flight", "Classifier calls holding a slot",
                                  labels=["classifier"])
        queued = GaugeMetricFamily("guardrail_classifier_queue_depth", "Classifier calls waiting for a slot",
                                   labels=["classifier"])
        for name, (active, waiting) in sorted(self.watched.load().items()):
            calls.add_metric([name], active)
            queued.add_metric([name], waiting)
        skipped = CounterMetricFamily("guardrail_checks_skipped_relayed",
                                      "Checks not made: an assistant turn was a reply this proxy relayed clean")
        skipped.add_metric([], self.watched.relayed_skips())
        yield from (flying, calls, queued, skipped)

