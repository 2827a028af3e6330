"""What `check`, `eval` and `export` share: the classifier endpoint flags and one way to fail.

Exit codes: 0 done; 1 the classifier is unreachable or failed on every item; 2 a usage, config, policy or
dataset error, reported naming the file and line; 130 interrupted (answers so far stay cached).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .dataset_rows import RowError
from .errors import ClassifierError, ConfigError
from .evaluation.endpoint import EndpointFlags


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("classifier endpoint (flags override the config's classifier)")
    group.add_argument("--config", help="proxy.yaml (default: $GUARDRAIL_PROXY_CONFIG or config/proxy.yaml)")
    group.add_argument("--classifier", help="classifier name in the config (default: the route's, else default)")
    group.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--model", help="model name at the endpoint")
    group.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    group.add_argument("--reasoning-effort", choices=("low", "medium", "high"))
    group.add_argument("--timeout-s", type=float, help="deadline per classification, retries included")
    group.add_argument("--transport", choices=("openai", "aiohttp"),
                       help="HTTP client: openai (the SDK) or aiohttp (several times less CPU per call)")


def endpoint_flags(args: argparse.Namespace, classifier: str | None = None) -> EndpointFlags:
    return EndpointFlags(args.config, args.classifier or classifier or "default", args.base_url, args.model,
                         args.api_key_env, args.reasoning_effort, args.timeout_s, args.transport)


def guarded(action: Callable[[], int]) -> int:
    """Expected failures become a message on stderr and an exit code; an interrupt keeps what is cached."""
    try:
        return action()
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RowError as exc:  # a dataset row or label read outside `load_dataset`, which names file and line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClassifierError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: answers so far are cached; run the same command again to resume", file=sys.stderr)
        return 130
