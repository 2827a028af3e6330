"""The console's page shell and the small pieces every page uses. Pure.

Every value that came from a request, the store or the config goes through `esc` before it becomes HTML:
content, reasoning and notes are written by whoever talks to the proxy, so they are attacker-controlled.
The shell links the stylesheet and the script by URL (assets.py) and holds no inline script or style, so
the Content-Security-Policy can allow 'self' only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from .access import PREFIX

NAV = (("overview", "/", "Overview"), ("decisions", "/decisions", "Decisions"), ("shadow", "/shadow", "Shadow"),
       ("export", "/export", "Export"))


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def url(path: str, query: str = "") -> str:
    """A console URL (escaped for an attribute); `path` is relative to the console's prefix."""
    return esc(PREFIX + path + (f"?{query}" if query else ""))


def decision_url(request_id: str, anchor: str = "") -> str:
    return url(f"/decisions/{quote(request_id, safe='')}") + (f"#{esc(anchor)}" if anchor else "")


def decision_link(request_id: str, anchor: str = "") -> str:
    return f'<a class="mono" href="{decision_url(request_id, anchor)}">{esc(request_id[:16])}</a>'


def percent(value: float | None) -> str:
    if value is None:
        return "n/a"
    shown = value * 100
    return f"{shown:.0f}%" if shown >= 10 or shown == 0 else f"{shown:.1f}%"


def when(ts: float, seconds: bool = True) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"


def short(digest: str | None) -> str:
    return (digest or "")[:12]


def badge(decision: str) -> str:
    return f'<span class="badge d-{esc(decision)}">{esc(decision)}</span>'


def field_error(errors: dict[str, str], name: str) -> str:
    message = errors.get(name)
    return f'<span class="field-error" id="error-{esc(name)}">{esc(message)}</span>' if message else ""


def options(choices: list[tuple[str, str]], selected: str) -> str:
    return "".join(f'<option value="{esc(value)}"{" selected" if value == selected else ""}>{esc(label)}</option>'
                   for value, label in choices)


def shell(title: str, active: str, body: str, *, signed_in: bool = False, bare: bool = False) -> str:
    """`bare`: no navigation (the sign-in page and refusals, where every link would lead back to them)."""
    current = ' class="active" aria-current="page"'
    links = "".join(f'<a href="{url(path)}"{current if name == active else ""}>{esc(label)}</a>'
                    for name, path, label in NAV)
    out = (f'<form method="post" action="{url("/logout")}" class="logout"><button type="submit">Sign out</button>'
           "</form>" if signed_in else "")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · guardrail-proxy review</title>"
            '<link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="{url("/assets/console.css")}">'
            f'<script src="{url("/assets/console.js")}" defer></script></head>'
            f'<body><header><span class="brand">guardrail-proxy review</span>{"" if bare else f"<nav>{links}</nav>"}'
            f"{out}</header>"
            f"<main>{body}</main></body></html>")


def message_page(title: str, message: str, *, signed_in: bool = False) -> str:
    """A page that only says something: an error, a refusal, a console that cannot work here."""
    return shell(title, "", f'<section class="message"><h1>{esc(title)}</h1><p>{esc(message)}</p></section>',
                 signed_in=signed_in, bare=not signed_in)


def login_page(next_path: str, error: str | None = None) -> str:
    problem = f'<p class="field-error" id="login-error">{esc(error)}</p>' if error else ""
    body = (f'<section class="message login"><h1>Sign in</h1><p>The review console needs the proxy\'s ops key '
            "(the value of the variable named by <code>server.ops_key_env</code>).</p>"
            f'<form method="post" action="{url("/login")}"><input type="hidden" name="next" value="{esc(next_path)}">'
            '<label>Ops key <input type="password" name="key" autocomplete="current-password" required autofocus>'
            f'</label>{problem}<button type="submit">Sign in</button></form></section>')
    return shell("Sign in", "", body, bare=True)
