"""One /metrics page for several worker processes (`serve --workers N`): each worker's page, parsed with
prometheus_client's own text parser, combined, and written back in the same text format. Pure.

How each kind of metric is exported:
- counters, histograms (buckets, counts, sums), summaries and their `*_created` timestamps: one series per
  worker, the worker's own labels plus `worker="<slot>"`. A slot is stable: a worker that dies is replaced in
  the same slot, so its replacement, counting from 0, continues the same series, which Prometheus reads as an
  ordinary counter reset and rate() handles. Summing across workers here instead would make a fleet total
  that drops whenever one worker misses a scrape or is replaced, and rate() would turn each drop into a spike.
  Queries sum the label away: `sum without (worker) (rate(guardrail_requests_total[5m]))`.
- gauges: combined, since a gauge has no history to keep: summed (requests in flight, classifier calls in
  flight and queued), except those in `MIN_GAUGES`, where a worker behind the others must show:
  `guardrail_config_generation` is the oldest generation any answering worker serves, and
  `guardrail_config_last_reload_ok` is 0 if any answering worker's last reload failed.
- the merge adds series that say who answered and what each serves: `guardrail_fleet_workers` (worker slots),
  `guardrail_worker_up{worker,pid}` (1: its page is in this merge; 0: it did not answer in time, or is gone),
  and, for each answering worker, `guardrail_worker_config_generation{worker}`,
  `guardrail_worker_config_last_reload_ok{worker}` and `guardrail_worker_config_info{worker,digest}` (always 1;
  `digest` identifies the config the worker serves, so equal digests mean the same config, whatever the
  generation numbers say).

A worker that did not answer is absent from this page: its series miss one scrape (Prometheus marks them stale
until they return, and a rate() over a range spans the gap) and its gauges are missing from the sums.
The label `worker` is the merge's own: a worker's sample that had one has it replaced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

MIN_GAUGES = frozenset({"guardrail_config_generation", "guardrail_config_last_reload_ok"})
PER_WORKER = (  # (a worker's gauge, the per-worker family it is also reported as, its help)
    ("guardrail_config_generation", "guardrail_worker_config_generation",
     "The config generation this worker serves (it counts from 0 again in a replacement worker)"),
    ("guardrail_config_last_reload_ok", "guardrail_worker_config_last_reload_ok",
     "1 when this worker's last reload (or its start) applied"),
)


@dataclass(frozen=True)
class Page:
    """One worker's answer to a scrape: its slot, its pid, its metrics text (None: it did not answer) and the
    digest of the config it serves."""

    worker: int
    pid: int | None
    text: str | None
    digest: str | None = None


def rule(family: Metric) -> str:
    """How a family's samples combine across workers: 'worker' (one series per worker), 'sum' or 'min'."""
    if family.type != "gauge" or family.name.endswith("_created"):
        return "worker"
    return "min" if family.name in MIN_GAUGES else "sum"


def parse(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


Key = tuple[str, tuple[tuple[str, str], ...]]


def merge_families(pages: Sequence[tuple[int, Sequence[Metric]]]) -> list[Metric]:
    """The families of several workers' pages (slot, families), combined by `rule`, in the order they first
    appear; per-worker series in slot order."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[Key, float]] = {}
    for slot, families in sorted(pages, key=lambda p: p[0]):
        for family in families:
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            how, into = rule(family), values[family.name]
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(slot)} if how == "worker" else sample.labels
                key = (sample.name, tuple(sorted(labels.items())))
                if key not in into:
                    into[key] = sample.value
                else:
                    into[key] = min(into[key], sample.value) if how == "min" else into[key] + sample.value
    for name, family in merged.items():
        family.samples = [Sample(sample, dict(labels), value) for (sample, labels), value in values[name].items()]
    return list(merged.values())


def worker_families(pages: Sequence[Page], parsed: dict[int, list[Metric]]) -> list[Metric]:
    """The fleet's own series: who answered, and each answering worker's generation, reload result and config."""
    slots = Metric("guardrail_fleet_workers", "Worker processes this proxy runs (serve --workers)", "gauge")
    slots.add_sample("guardrail_fleet_workers", {}, float(len(pages)))
    up = Metric("guardrail_worker_up", "1 when the worker's metrics are in this page, 0 when it did not answer "
                                       "in time (or is gone)", "gauge")
    per_worker = {source: Metric(name, help_, "gauge") for source, name, help_ in PER_WORKER}
    info = Metric("guardrail_worker_config_info", "The config this worker serves: equal digests, equal config "
                                                  "(proxy.yaml, routes and policy texts)", "gauge")
    for page in sorted(pages, key=lambda p: p.worker):
        worker = str(page.worker)
        up.add_sample("guardrail_worker_up", {"worker": worker, "pid": str(page.pid or "")},
                      0.0 if page.text is None else 1.0)
        families = parsed.get(page.worker)
        if families is None:
            continue
        if page.digest is not None:
            info.add_sample("guardrail_worker_config_info", {"worker": worker, "digest": page.digest}, 1.0)
        for family in families:
            if family.name in per_worker:
                for sample in family.samples:
                    per_worker[family.name].add_sample(per_worker[family.name].name, {"worker": worker},
                                                       sample.value)
    return [slots, up, *per_worker.values(), info]


def merge(pages: Sequence[Page]) -> str:
    """The fleet's /metrics text from every worker's page (answered or not). Pages that do not parse count as
    not answered: one worker's garbled page never breaks the whole scrape."""
    parsed: dict[int, list[Metric]] = {}
    answered: list[Page] = []
    for page in pages:
        if page.text is not None:
            try:
                parsed[page.worker] = parse(page.text)
            except ValueError:
                page = Page(page.worker, page.pid, None)
        answered.append(page)
    families = merge_families(list(parsed.items()))
    return render([*families, *worker_families(answered, parsed)])


class Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(families: list[Metric]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(families))
    return generate_latest(registry).decode()
