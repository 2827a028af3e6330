"""One generation of served config (served.py): a build that fails leaves nothing open."""

from __future__ import annotations

import gc
import warnings

from conftest import write_config

from guardrail_proxy.errors import ConfigError
from guardrail_proxy.loader import load_config
from guardrail_proxy.served import Served
from guardrail_proxy.settings import Settings

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "ALL_PROXY", "REQUEST_METHOD")


async def test_a_bad_proxy_variable_stops_the_build_before_any_client_is_built(tmp_path, monkeypatch, safeguard,
                                                                             upstream):
    """NO_PROXY exempts the classifier, so only the upstream, built after it, would use the bad proxy: the
    classifier's session was left open when the upstream's client raised."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "socks5://proxy.test:1080")
    monkeypatch.setenv("NO_PROXY", f"127.0.0.1:{safeguard[1].port}")
    config = load_config(write_config(tmp_path, {}, safeguard[1].url, upstream[1].url,
                                      classifier={"transport": "aiohttp"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Served.build(config, Settings.from_environ(), lambda _outcome: None)
        except ConfigError as exc:
            field = exc.field
        gc.collect()  # a session left open is reported as it is collected
    assert field == "HTTP_PROXY"
    assert [str(w.message) for w in caught if str(w.message).startswith("Unclosed client session")] == []
