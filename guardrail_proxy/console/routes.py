"""The console's endpoints under /console: the gate (access.py) first, then the question to the store (in a
worker thread, store.py), then a page (page_*.py) sent with a strict Content-Security-Policy.

Every answer is an HTML page, errors included: a refusal says why, a store that cannot answer (or not within
its time limit) gives a 503 page with the reason, input with a NUL character a 400, a mark the store refuses
is shown again with the error next to its field. Marks use Post/Redirect/Get, so reloading a page never stores
a mark twice. The export's file is built in the store's thread (download.py); this module only sends it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..audit_reviews import Review, ReviewError, make_review, run_add
from ..errors import GuardrailProxyError
from ..loader import LoadedConfig
from ..ops import on_ops_listener
from ..review_export import run_reviewed
from ..settings import Settings
from .access import COOKIE, PREFIX, Access, admit, cookie_header, key_matches, next_path, same_origin, session_token
from .assets import CSS, JS
from .download import file_name as download_name
from .download import run_download
from .forms import (
    MAX_FORM_BYTES,
    PER_PAGE,
    FilterForm,
    filter_form,
    label_error,
    mark_form,
    nul_field,
    posted,
    window_of,
)
from .glance import bounds, run_glance
from .html import login_page, message_page
from .page_decision import Labels, Posted, decision_page
from .page_decisions import Choices, decisions_page
from .page_export import export_page
from .page_overview import overview_page
from .page_shadow import shadow_page
from .queries import run_detail, run_marks, run_page
from .shadow import Candidate, ShadowCheck, run_disagreements, run_summary
from .store import ConsoleStore

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "same-origin", "cache-control": "no-store"}
PREVIEW_LIMIT = 1000
EXPORT_LIMIT_S = 60.0  # the download's time limit in the store's thread: up to download.EXPORT_LIMIT rows
REFUSALS = {404: "Not found", 403: "Review console off", 421: "Unexpected host", 503: "Not ready"}

Handler = Callable[[Request, Access, LoadedConfig], Awaitable[Response]]


def page(html: str, status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={**SECURITY, **(headers or {})})


def see_other(location: str, headers: Mapping[str, str] | None = None) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers={**SECURITY, **(headers or {})})


def labels_of(config: LoadedConfig) -> dict[str, list[tuple[str, str]]]:
    """policy -> its label codes and names; a binary policy's are 0 and 1; a JSON policy's are free text."""
    found: dict[str, list[tuple[str, str]]] = {}
    for policy in config.policies.values():
        if policy.format == "label":
            found[policy.id] = list(policy.labels.items())
        elif policy.format == "binary":
            found[policy.id] = [("0", "no violation"), ("1", "violation")]
    return found


def choices_of(config: LoadedConfig) -> Choices:
    labels = sorted({code for codes in labels_of(config).values() for code, _ in codes if len(code) > 1})
    return Choices([r.name for r in config.routes], list(config.policies), labels)


def titles_of(config: LoadedConfig) -> dict[str, str]:
    return {p.id: p.title for p in config.policies.values()}


class Console:
    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    @classmethod
    def build(cls, config: LoadedConfig, settings: Settings) -> Console:
        """Nothing is opened here: the store connects at the first question."""
        return cls(ConsoleStore(config.proxy.audit, settings, str(config.path)))

    async def close(self) -> None:
        await self.store.close()

    def routes(self) -> list[BaseRoute]:
        inner = [
            Route("/", self.guarded(self.overview), methods=["GET"]),
            Route("/decisions", self.guarded(self.decisions), methods=["GET"]),
            Route("/decisions/{request_id:path}/review", self.guarded(self.review), methods=["POST"]),
            Route("/decisions/{request_id:path}", self.guarded(self.decision), methods=["GET"]),
            Route("/shadow", self.guarded(self.shadow), methods=["GET"]),
            Route("/export", self.guarded(self.export), methods=["GET"]),
            Route("/export.jsonl", self.guarded(self.download), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/assets/console.css", self.asset(CSS, "text/css"), methods=["GET"]),
            Route("/assets/console.js", self.asset(JS, "text/javascript"), methods=["GET"]),
        ]
        return [Route(PREFIX, self.to_root, methods=["GET"]), Mount(PREFIX, routes=inner)]

    # -- the gate ------------------------------------------------------------------------------------------------

    def check(self, request: Request) -> tuple[Access, LoadedConfig | None, str | None]:
        """(access, the serving config, the ops key); a proxy that has not started is a 503."""
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return Access(503, "The proxy is starting or stopping."), None, None
        key: str | None = runtime.ops_key
        access = admit(runtime.config.proxy.server, key, on_ops_listener(request.scope),
                       request.headers.get("authorization"), request.cookies.get(COOKIE), time.time(),
                       request.headers.get("host"))
        return access, runtime.config, key

    def refused(self, request: Request, access: Access) -> Response:
        if access.needs_login:
            if request.method == "GET":
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return page(login_page(next_path(wanted)), 401)
            return page(message_page("Sign in first", access.reason), 401)
        return page(message_page(REFUSALS.get(access.status, "Refused"), access.reason), access.status)

    def guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            access, config, _ = self.check(request)
            if not access.allowed or config is None:
                return self.refused(request, access)
            signed_in = access.via == "cookie"
            if self.store.problem:
                return page(message_page("The console needs a database", self.store.problem, signed_in=signed_in), 501)
            if request.method == "POST" and access.via != "bearer" and not from_console(request):
                return page(message_page("Refused", "This form was not sent from a console page of this host "
                                         "(Origin check).", signed_in=signed_in), 403)
            nul = nul_field([*request.query_params.multi_items(), *request.path_params.items()])
            if nul is not None:
                return page(message_page("Bad request", f"The field {nul!r} holds a NUL character.",
                                         signed_in=signed_in), 400)
            try:
                return await handler(request, access, config)
            except GuardrailProxyError as exc:
                status = exc.status_code if 400 <= exc.status_code < 600 else 500
                return page(message_page("The audit store could not answer" if status == 503 else "Error",
                                         exc.message, signed_in=signed_in), status)

        return endpoint

    # -- pages ---------------------------------------------------------------------------------------------------

    async def to_root(self, request: Request) -> Response:
        access, _, _ = self.check(request)
        return see_other(PREFIX + "/") if access.allowed or access.needs_login else self.refused(request, access)

    async def overview(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        window, now = window_of(request.query_params), time.time()
        glance = await self.store.run(lambda db: run_glance(db, window, now))
        return page(overview_page(glance, list(config.policies), titles_of(config),
                                  signed_in=access.via == "cookie"))

    async def decisions(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        form = filter_form(request.query_params, time.time())
        found = None
        if not form.errors:
            found = await self.store.run(lambda db: run_page(db, form.filters, form.reviewed, form.page, PER_PAGE))
        html = decisions_page(form, found, choices_of(config), signed_in=access.via == "cookie")
        return page(html, 400 if form.errors else 200)

    async def decision(self, request: Request, access: Access, config: LoadedConfig,
                       posted_mark: Posted | None = None) -> Response:
        request_id = request.path_params["request_id"]
        detail = await self.store.run(lambda db: run_detail(db, request_id))
        if detail is None:
            return page(message_page("No such decision", f"The audit store holds no request {request_id!r} (it may "
                                     "have been pruned).", signed_in=access.via == "cookie"), 404)
        route = config.route(detail.row.route)
        labels: Labels = labels_of(config)
        html = decision_page(detail, labels, route.audit_content if route else None, posted_mark,
                             signed_in=access.via == "cookie")
        return page(html, 400 if posted_mark else 200)

    async def review(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        request_id = request.path_params["request_id"]
        signed_in = access.via == "cookie"
        body = await bounded_body(request)
        if body is None:
            return page(message_page("Too large", f"A mark is at most {MAX_FORM_BYTES:,} bytes.",
                                     signed_in=signed_in), 413)
        fields = posted(body)
        nul = nul_field(fields.items())
        if nul is not None:
            return page(message_page("Bad request", f"The field {nul!r} holds a NUL character.",
                                     signed_in=signed_in), 400)
        form = mark_form(fields)
        detail = await self.store.run(lambda db: run_detail(db, request_id))
        if detail is None:
            return page(message_page("No such decision", f"The audit store holds no request {request_id!r}.",
                                     signed_in=signed_in), 404)
        group = next((g for g in detail.groups if (g.phase, g.policy) == (form.phase, form.policy)), None)
        if group is None:
            return await self.decision(request, access, config, Posted(form, {
                "policy": f"this request has no verdict of policy {form.policy!r} in phase {form.phase!r}"}))
        codes = [code for code, _ in labels_of(config).get(form.policy, ())]
        wrong_label = label_error(form, codes or None)
        if wrong_label is not None:
            return await self.decision(request, access, config, Posted(form, {"label": wrong_label}))
        try:
            mark = make_review(request_id=request_id, phase=form.phase, policy=form.policy,
                               verdict_label=group.verdict_label, correct=form.correct, label=form.label or None,
                               note=form.note, reviewer=form.reviewer, ts=time.time())
        except ReviewError as exc:
            return await self.decision(request, access, config, Posted(form, {exc.field: exc.reason}))
        await self.store.run(lambda db: run_add(db, mark))
        anchor = quote(f"mark-{form.phase}-{form.policy}", safe="-_.")
        return see_other(f"{PREFIX}/decisions/{quote(request_id, safe='')}#{anchor}")

    async def shadow(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        window, policy = window_of(request.query_params), (request.query_params.get("policy") or "")[:200]
        since, until = bounds(window, time.time())

        def ask(db: Any) -> tuple[list[Candidate], list[ShadowCheck], dict[str, tuple[Review, ...]]]:
            differences = run_disagreements(db, since, until, policy or None)
            marks = run_marks(db, sorted({d.request_id for d in differences}))
            return run_summary(db, since, until, policy or None), differences, marks

        candidates, differences, marks = await self.store.run(ask)
        return page(shadow_page(window, policy, candidates, differences, marks, list(config.policies),
                                titles_of(config), signed_in=access.via == "cookie"))

    async def export(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        form = filter_form(request.query_params, time.time())
        rows = None
        if not form.errors:
            rows = await self.store.run(lambda db: run_reviewed(db, form.filters, form.filters.policy, PREVIEW_LIMIT))
        html = export_page(form, rows, PREVIEW_LIMIT, choices_of(config), signed_in=access.via == "cookie")
        return page(html, 400 if form.errors else 200)

    async def download(self, request: Request, access: Access, config: LoadedConfig) -> Response:
        now = time.time()
        form: FilterForm = filter_form(request.query_params, now)
        if form.errors:
            return page(message_page("Bad filter", "; ".join(f"{k}: {v}" for k, v in form.errors.items()),
                                     signed_in=access.via == "cookie"), 400)
        made = await self.store.run(lambda db: run_download(db, form.filters, form.filters.policy), EXPORT_LIMIT_S)
        name = download_name(form.filters.policy, now, made.truncated)
        return Response(made.body, media_type="application/x-ndjson",
                        headers={**SECURITY, "content-disposition": f'attachment; filename="{name}"'})

    # -- signing in ----------------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        access, _, key = self.check(request)
        if access.status in REFUSALS:
            return self.refused(request, access)
        if key is None or access.allowed:
            return see_other(next_path(request.query_params.get("next")))
        return page(login_page(next_path(request.query_params.get("next"))))

    async def login(self, request: Request) -> Response:
        access, _, key = self.check(request)
        if access.status in REFUSALS:
            return self.refused(request, access)
        if not from_console(request):
            return page(message_page("Refused", "This form was not sent from a console page of this host."), 403)
        body = await bounded_body(request)
        if body is None:
            return page(message_page("Too large", f"A sign-in form is at most {MAX_FORM_BYTES:,} bytes."), 413)
        fields = posted(body)
        goto = next_path(fields.get("next"))
        if key is None:
            return see_other(goto)
        if not key_matches(fields.get("key", ""), key):
            return page(login_page(goto, "That is not the ops key."), 401)
        cookie = cookie_header(session_token(key, time.time()), request.url.scheme == "https")
        return see_other(goto, {"set-cookie": cookie})

    async def logout(self, request: Request) -> Response:
        access, _, _ = self.check(request)
        if access.status in REFUSALS:
            return self.refused(request, access)
        if not from_console(request):
            return page(message_page("Refused", "This form was not sent from a console page of this host."), 403)
        return see_other(f"{PREFIX}/login", {"set-cookie": cookie_header("", request.url.scheme == "https", 0)})

    def asset(self, text: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            access, _, _ = self.check(request)
            if access.status == 404:
                return self.refused(request, access)
            return Response(text, media_type=media_type, headers={**SECURITY, "cache-control": "max-age=3600"})

        return serve


def from_console(request: Request) -> bool:
    """Was this POST sent by a page of this host (access.same_origin)?"""
    headers = request.headers
    return same_origin(headers.get("origin"), headers.get("referer"), headers.get("host"),
                       headers.get("sec-fetch-site"))


async def bounded_body(request: Request, limit: int = MAX_FORM_BYTES) -> bytes | None:
    """The request body, or None when it is larger than `limit` (read no further)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body
