"""Frozen, strict models of the config files.

`config/proxy.yaml` holds the server, classifier endpoints, upstream models, where policies live and where
the route files are; each `config/routes/*.yaml` holds one route. Every model forbids unknown keys, so a
typo fails start-up instead of being silently ignored. Loading and cross-file checks are in loader.py.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Action(StrEnum):
    """What a route does with a violation, strongest first in `ACTION_STRENGTH`."""

    BLOCK = "block"
    REWRITE = "rewrite"
    ANNOTATE = "annotate"
    LOG = "log"


def refuse_repeats(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} listed twice: {', '.join(dupes)}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    max_body_bytes: int = Field(1_048_576, gt=0, description="requests with a larger body get a 413")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    client_keys_env: str | None = Field(
        None, description="environment variable with comma-separated keys clients must send as Bearer tokens")
    ops_port: int | None = Field(
        None, ge=0, le=65535, description="serve /metrics, /readyz and /admin/* on this port only (not on `port`)")
    ops_host: str | None = Field(None, description="the ops port's address; unset: `host`")
    ops_key_env: str | None = Field(
        None, description="environment variable with the key /metrics, /readyz and /admin/* require (Bearer); "
                          "the admin endpoints are refused without one")
    drain_s: float = Field(
        5.0, ge=0, le=600, description="on SIGTERM: seconds /readyz answers 503 while requests are still served, "
                                       "so load balancers stop sending before the listener closes")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="then: seconds requests and streams in flight get to finish")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto: uvloop where it is installed (Linux, macOS), else asyncio's own loop")

    @model_validator(mode="after")
    def _ops_port_apart(self) -> ServerConfig:
        if self.ops_port is not None and self.ops_port != 0 and self.ops_port == self.port:
            raise ValueError("ops_port must differ from port")
        return self


class ClassifierConfig(Frozen):
    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str = "openai/gpt-oss-safeguard-20b"
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    transport: Literal["openai", "aiohttp"] = Field(
        "aiohttp", description="aiohttp: a raw pooled HTTP client (the default; its CPU cost per call is a fraction of "
                               "the SDK's); openai: the official SDK")
    reasoning_effort: Literal["low", "medium", "high"] = "low"
    timeout_s: float = Field(20.0, gt=0, description="deadline for one check's calls, retries included; waiting for "
                                                     "a free slot (max_concurrency) has a budget of its own")
    attempt_timeout_s: float | None = Field(None, gt=0, description="deadline for one HTTP attempt")
    retries: int = Field(2, ge=0, le=10)
    max_tokens: int | None = Field(
        None, ge=256, description="leave unset: a tight cap cuts the reasoning and empties the verdict")
    max_concurrency: int = Field(64, ge=1, description="classifier calls in flight at once")
    max_queue: int = Field(
        512, ge=0, description="calls allowed to wait behind max_concurrency; beyond it requests get a 503 "
                               "guardrail_overloaded with Retry-After (never a fail-open pass)")
    max_input_chars: int = Field(
        24_000, ge=1000, description="longest text sent in one call; longer texts are split into overlapping "
                                     "segments, each classified, so every character is covered")
    cache_entries: int = Field(10_000, ge=0, description="answers kept in memory per process; 0 turns it off")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class UpstreamConfig(Frozen):
    provider: Literal["litellm", "openai"] = Field(
        "litellm", description="litellm: any provider string litellm knows; openai: direct OpenAI-compatible")
    model: str = Field(description="e.g. openai/gpt-4o-mini, hosted_vllm/my-model, ollama/llama3")
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _openai_needs_base(self) -> UpstreamConfig:
        if self.provider == "openai" and not self.api_base:
            raise ValueError("provider 'openai' needs api_base")
        return self


class PoliciesConfig(Frozen):
    dirs: tuple[str, ...] = Field((), description="directories of <slug>/policy.md or *.md policy files")
    files: tuple[str, ...] = ()
    official_pack: str | None = Field(
        None, description="a checkout of the official teen-safety pack (example_policies/<slug>/policy.md)")


class AuditConfig(Frozen):
    """Where each request's record goes, and what a request waits for. See audit_writer.py."""

    store: Literal["sqlite", "postgres", "jsonl", "log"] = Field(
        "sqlite", description="sqlite: a local database the `audit` command queries; postgres: one database for "
                              "several replicas (dsn_env); jsonl: one JSON line per request in a file; log: the "
                              "same lines on the log stream, for log shippers")
    dsn_env: str | None = Field(None, description="postgres: the environment variable holding the connection "
                                                  "string (postgresql://user:password@host/db)")
    path: str | None = Field(None, description="sqlite: the database file (default guardrail-audit.db in the "
                                               "working directory); jsonl: the file (required)")
    durability: Literal["batch", "sync"] = Field(
        "batch", description="batch: commit at most every batch_ms, a crash may lose that window; sync: a reply "
                             "(a stream's last event) is sent only after its record is committed")
    batch_ms: int = Field(50, ge=1, le=60_000, description="longest wait before a group of records is committed")
    max_pending: int = Field(10_000, ge=1, description="records not yet committed before new requests are held")
    when_full: Literal["wait", "refuse"] = Field(
        "wait", description="with max_pending records waiting: new requests wait for room, or get a 503")
    retention_days: float | None = Field(30, gt=0, description="`audit prune` deletes older records; null: keep all")

    @model_validator(mode="after")
    def _jsonl_needs_path(self) -> AuditConfig:
        if self.store == "jsonl" and not self.path:
            raise ValueError("store 'jsonl' needs path")
        if self.store == "log" and self.path:
            raise ValueError("store 'log' writes to the log stream and takes no path")
        if self.store == "postgres" and not self.dsn_env:
            raise ValueError("store 'postgres' needs dsn_env, the variable holding its connection string")
        return self


class RateLimit(Frozen):
    """A token bucket per client key (per proxy process): `requests` per `per_s` seconds, bursts up to `burst`."""

    requests: int = Field(gt=0, description="requests allowed per period")
    per_s: float = Field(60.0, gt=0, description="the period in seconds")
    burst: int | None = Field(None, gt=0, description="most requests at once after a quiet spell; unset: requests")


class ClientConfig(Frozen):
    """One client key, known only by its SHA-256 (`guardrail-proxy keys new` prints a key and its line)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                      description="what the audit records and metrics show instead of the key")
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    key_sha256_env: str | None = Field(None, description="an environment variable holding that hex SHA-256")
    routes: tuple[str, ...] = Field(min_length=1, description="route names this key may use; ['*']: all routes")
    default_route: str | None = Field(None, description="the route when the request names none (before the model)")
    rate_limit: RateLimit | None = None

    @model_validator(mode="after")
    def _one_key(self) -> ClientConfig:
        if (self.key_sha256 is None) == (self.key_sha256_env is None):
            raise ValueError("set exactly one of key_sha256, key_sha256_env")
        if "*" in self.routes and len(self.routes) > 1:
            raise ValueError("routes: '*' already means every route; list names or '*' alone")
        if self.default_route and "*" not in self.routes and self.default_route not in self.routes:
            raise ValueError(f"default_route '{self.default_route}' is not among this key's routes")
        return self


class TracingConfig(Frozen):
    """OpenTelemetry traces (the optional `otel` extra): a span per request, classifier call and upstream call."""

    enabled: bool = Field(False, description="off by default; on needs `pip install guardrail-proxy[otel]`")
    endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; unset: the "
                          "exporter's own default (OTEL_EXPORTER_OTLP_* variables, then localhost:4318)")
    service_name: str = "guardrail-proxy"
    sample_ratio: float = Field(1.0, ge=0, le=1, description="share of requests traced (parent-based)")


class ProxyConfig(Frozen):
    server: ServerConfig = ServerConfig()
    classifiers: dict[str, ClassifierConfig]
    upstreams: dict[str, UpstreamConfig]
    policies: PoliciesConfig = PoliciesConfig()
    audit: AuditConfig = AuditConfig()
    clients: tuple[ClientConfig, ...] = Field(
        (), description="named client keys, each with its routes; set (or server.client_keys_env): every request "
                        "needs a key")
    tracing: TracingConfig = TracingConfig()
    routes_dir: str = Field("routes", description="directory of route files, relative to this file")

    @field_validator("clients")
    @classmethod
    def _unique_clients(cls, value: tuple[ClientConfig, ...]) -> tuple[ClientConfig, ...]:
        refuse_repeats("client names", [c.name for c in value])
        return value

    @field_validator("classifiers", "upstreams")
    @classmethod
    def _not_empty(cls, value: dict[str, object]) -> dict[str, object]:
        if not value:
            raise ValueError("at least one entry is required")
        return value


class PolicyRule(Frozen):
    """How one route applies one policy."""

    id: str
    action: Action | None = Field(None, description="unset: the policy's default_action")
    levels: dict[int, Action] = Field(
        default_factory=dict, description="severity level -> action, overrides `action` for that level")
    phases: tuple[Literal["input", "output"], ...] = ("input", "output")
    refusal: str | None = Field(None, description="message for a block; unset: the policy's, then the route's")
    safe_text: str | None = Field(None, description="replacement text for rewrite; unset: the policy's")

    @field_validator("levels")
    @classmethod
    def _levels_are_violations(cls, value: dict[int, Action]) -> dict[int, Action]:
        bad = [level for level in value if level < 1]
        if bad:
            raise ValueError(f"levels are violation severities (1 or more); got {bad}")
        return value

    @field_validator("phases")
    @classmethod
    def _phases_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one of input, output")
        return value


class InputCheck(Frozen):
    enabled: bool = True
    speculative: bool = Field(
        True, description="start the model call while the input is checked; nothing is relayed before the "
                          "verdict, and a blocked input cancels the call")
    scope: Literal["latest", "all_user", "all"] = Field(
        "latest", description="latest: the newest user message; all_user: every user message; all: every "
                              "message of any role (system, developer, assistant, tool), so forged turns are checked")
    context_turns: int = Field(2, ge=0, le=50, description="earlier turns shown to the classifier")
    trust_relayed: bool = Field(
        True, description="an assistant turn byte-identical to a reply this proxy relayed after its output check "
                          "found nothing is not judged again by the same policies and classifier (relayed.py); "
                          "false: judge it again, whole, as history (a second look at a reply judged in windows)")


class OutputCheck(Frozen):
    enabled: bool = True
    context_turns: int = Field(1, ge=0, le=50, description="conversation turns shown with the completion")
    stream_mode: Literal["window", "buffer", "post"] = Field(
        "window", description="window: release text only after a verdict covered it; buffer: hold the whole "
                              "completion; post: stream through, check at the end (annotate/log only)")
    window_chars: int = Field(800, ge=1, description="window mode: the largest window, in characters (windows grow "
                                                     "to it from first_window_chars)")
    first_window_chars: int = Field(
        48, ge=1, description="window mode: characters of the first window, so the first text is released about "
                              "one classifier latency after the model starts (at least window_chars: fixed windows)")
    window_growth: int = Field(
        4, ge=1, le=16, description="window mode: each window is this many times the previous one, up to "
                                    "window_chars: released text stays far ahead of a reader, and a 1,500-"
                                    "character reply costs as many calls as fixed windows of 400 (a short one a "
                                    "call more) (1: fixed windows)")
    window_context_chars: int = Field(
        200, ge=0, description="window mode: characters of the previous window judged again with each window, "
                               "so a phrase split by a window boundary is judged whole")
    logprobs: Literal["strip", "check"] = Field(
        "strip", description="strip: replies carry logprobs: null (an alternative token can hold any text); "
                             "check: the tokens and top_logprobs alternatives are classified like other text")

    @model_validator(mode="after")
    def _first_window_fits(self) -> OutputCheck:
        both = {"first_window_chars", "window_chars"} <= self.model_fields_set
        if both and self.first_window_chars > self.window_chars:
            raise ValueError(f"first_window_chars ({self.first_window_chars}) is larger than window_chars "
                             f"({self.window_chars}); windows grow from the first to window_chars")
        return self


class ShadowPolicy(Frozen):
    """A candidate version of one of the route's policies, judged beside the enforced one on a sample of live
    traffic and stored apart (shadow.py); it never decides anything."""

    policy: str = Field(description="the id of a policy this route enforces")
    candidate: str = Field(description="the candidate's policy file, relative to proxy.yaml (like policies.files), "
                                       "outside policies.dirs; its id is the policy's own")
    sample: float = Field(gt=0, le=1, description="share of requests whose checks of the policy are also asked of "
                                                  "the candidate (decided once per request)")
    max_in_flight: int = Field(
        4, ge=1, le=1024, description="candidate calls of this entry in flight at once; beyond it, and whenever the "
                                      "classifier has no free slot, a candidate call is dropped (and counted), never "
                                      "queued ahead of enforced calls")


class RouteConfig(Frozen):
    name: str
    models: tuple[str, ...] = Field(min_length=1, description="model names clients send for this route")
    upstream: str
    classifier: str = "default"
    fail_mode: Literal["closed", "open"] = "closed"
    block_style: Literal["error", "completion"] = "error"
    refusal: str = "Sorry, I can't help with that."
    rewrite_input: Literal["replace", "drop"] = "replace"
    reveal_reasoning: bool = Field(False, description="return the classifier's reasoning to the client")
    allow_unchecked_media: bool = Field(
        False, description="forward image/audio parts the classifier cannot read (they stay unchecked)")
    allow_prompt_template: bool = Field(
        False, description="forward chat_template / chat_template_kwargs, which let a client replace the prompt "
                           "template a vLLM upstream builds (refused with a 400 otherwise)")
    audit_content: Literal["none", "flagged", "all"] = Field(
        "none", description="what the audit store keeps of the conversation: none; flagged (requests that were "
                            "not plainly allowed: a violation, a failed check, a refusal); all")
    max_checks: int = Field(
        64, ge=1, le=10_000, description="distinct classifier calls one phase of a request may need (texts x "
                                         "policies x segments); a request needing more gets a 413, unchecked "
                                         "parts are never skipped")
    combine_policies: bool = Field(
        False, description="judge all of a phase's policies against one text in a single classifier call, one "
                           "answer line per policy: fewer calls and tokens, at an accuracy cost to measure first "
                           "with `guardrail-proxy eval --combine`")
    input: InputCheck = InputCheck()
    output: OutputCheck = OutputCheck()
    policies: tuple[PolicyRule, ...] = Field(min_length=1)
    shadow: tuple[ShadowPolicy, ...] = Field(
        (), description="candidate policy versions judged beside the enforced ones, never deciding (shadow.py)")

    @field_validator("policies")
    @classmethod
    def _unique_policies(cls, value: tuple[PolicyRule, ...]) -> tuple[PolicyRule, ...]:
        refuse_repeats("policies", [rule.id for rule in value])
        return value

    @field_validator("shadow")
    @classmethod
    def _one_candidate_per_policy(cls, value: tuple[ShadowPolicy, ...]) -> tuple[ShadowPolicy, ...]:
        refuse_repeats("shadowed policies", [entry.policy for entry in value])
        return value
