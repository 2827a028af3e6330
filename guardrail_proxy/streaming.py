"""Streamed completions with output moderation.

`ChunkFeed` reads the upstream stream in a background task from the moment the request arrives, so the
model can run while the input is checked (speculative mode); nothing in it reaches the client until
the relay iterates it. `StreamRelay` groups chunks into windows (windows.py), checks each window as soon
as it closes — while the next one is read — and releases a window's chunks only after its verdict.
On a violation it stops the upstream, sends one final chunk with the refusal and
finish_reason "content_filter", then [DONE]. When the client goes away, Starlette cancels the relay and
the `finally` blocks cancel the upstream read and every pending check.

A chunk is the upstream's JSON object (sse_parse.Chunk): the window reader reads the text to judge from the
very dict that is sent, and the relay's only edits are stripping logprobs, dropping a `guardrail` key the
upstream sent (only the proxy's own annotation may carry that name) and adding the annotation. Chunks the
upstream sent in one burst travel as one batch and leave in one write, as does a checked window: the cost of a
wake-up and of a socket write is paid per burst, not per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from .audit import AuditRecord
from .config import RouteConfig
from .decisions import Decision, Outcome
from .errors import GuardrailProxyError, UpstreamError
from .pipeline import Checker
from .protocol import ChatRequest
from .responses import guardrail_object, is_visible, strip_logprobs, strongest, unavailable
from .sse_parse import Chunk
from .subjects import Subject, output_subject
from .windows import Dest, Window, Windower, tail
from .wire_json import dumps

log = logging.getLogger("guardrail_proxy.streaming")
DONE = b"data: [DONE]\n\n"
END = object()


def sse(data: dict[str, Any]) -> bytes:
    """One event: compact UTF-8 JSON (wire_json.dumps)."""
    return b"data: " + dumps(data) + b"\n\n"


def internal_failure(exc: Exception) -> GuardrailProxyError:
    """A fault of the proxy's own while relaying: a fixed text for the client, the fault for the audit."""
    return GuardrailProxyError("the guardrail proxy failed while checking this stream",
                               detail=f"{type(exc).__name__}: {exc}")


def final_chunk(text: str, *, chunk_id: str, model: str, created: int, with_role: bool,
                choices: int = 1) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": text}
    if with_role:
        delta = {"role": "assistant", **delta}
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": i, "delta": delta, "finish_reason": "content_filter"} for i in range(choices)]}


def refusal_stream(text: str, request_id: str, model: str, choices: int, extra: dict[str, Any]) -> list[bytes]:
    """The whole SSE body for a request refused before any upstream text was relayed."""
    chunk = final_chunk(text, chunk_id=f"chatcmpl-{request_id}", model=model, created=int(time.time()),
                        with_role=True, choices=choices)
    return [sse({**chunk, **extra}), DONE]


class ChunkFeed:
    def __init__(self, source: AsyncIterator[Chunk]) -> None:
        self.source = source
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.first: Any = None
        self.first_at: float | None = None  # perf_counter() when the first chunk arrived
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for chunk in self.source:
                self.queue.put_nowait(chunk)
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                    # Parsing an already-buffered burst never yields on its own: let the first chunk go out
                    # before the rest of the burst is parsed. Later chunks wait for the burst (batches).
                    await asyncio.sleep(0)
            self.queue.put_nowait(END)
        except GuardrailProxyError as exc:
            self.queue.put_nowait(exc)
        except Exception as exc:  # whatever breaks the stream ends it with an error, never a hang
            self.queue.put_nowait(UpstreamError("the upstream stream failed", detail=f"{type(exc).__name__}: {exc}"))
        finally:
            with contextlib.suppress(Exception):
                await self.source.aclose()  # type: ignore[attr-defined]  # async generators have aclose

    async def opened(self, timeout_s: float) -> None:
        """Wait for the first chunk; raise the upstream's error if the stream could not start."""
        try:
            async with asyncio.timeout(timeout_s):
                self.first = await self.queue.get()
        except TimeoutError:
            raise UpstreamError("the upstream model did not start streaming in time", status_code=504,
                                code="upstream_timeout") from None
        if isinstance(self.first, GuardrailProxyError):
            raise self.first
        if self.first is END:
            raise UpstreamError("the upstream model ended the stream without sending anything")

    async def batches(self) -> AsyncIterator[list[Chunk] | GuardrailProxyError]:
        """The chunks read so far, in order, as lists of at least one: a burst the upstream sent at once is
        read, checked and relayed as one piece, so the cost of a wake-up and of a write to the client is paid
        per burst rather than per chunk. An error, if the stream fails, comes last."""
        pending = [self.first if self.first is not None else await self.queue.get()]
        while True:
            while not self.queue.empty():
                pending.append(self.queue.get_nowait())
            batch: list[Chunk] = []
            for item in pending:
                if item is END or isinstance(item, GuardrailProxyError):
                    if batch:
                        yield batch
                    if isinstance(item, GuardrailProxyError):
                        yield item
                    return
                batch.append(item)
            yield batch
            pending = [await self.queue.get()]

    def cancel(self) -> None:
        """Stop reading; the pump task closes the upstream response in its own `finally`."""
        self.task.cancel()

    async def close(self) -> None:
        self.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Checked:
    window: Window
    check: asyncio.Task[Decision]
    final: bool = False
    failure: GuardrailProxyError | None = None  # the stream failed after this window: the error follows


@dataclass
class Passed:
    chunks: list[Chunk]


class StreamRelay:
    def __init__(self, feed: ChunkFeed, checker: Checker, route: RouteConfig, chat: ChatRequest,
                 record: AuditRecord, on_done: Callable[[], None]) -> None:
        self.feed, self.checker, self.route, self.chat = feed, checker, route, chat
        self.record, self.on_done = record, on_done
        self.mode = route.output.stream_mode if route.output.enabled else "off"
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.pending: list[asyncio.Task[Decision]] = []
        self.windower = Windower(None)  # replaced by the reader's own
        self.sent_role = False
        self.sent_any = False
        self.finished = False  # the relay reached its end (as opposed to a hang-up or a body never started)
        self.last: dict[str, Any] = {"id": f"chatcmpl-{record.request_id}", "model": chat.model,
                                     "created": int(time.time())}

    async def events(self) -> AsyncIterator[bytes]:
        reader = asyncio.create_task(self._read())
        try:
            async for event in self._relay():
                yield event
            self.finished = True
        finally:
            self.abandon()
            # Synchronous first: when the client hangs up, the server's cancel scope may cancel every
            # await in here again, and the upstream must be closed and the record written regardless.
            reader.cancel()
            for task in self.pending:
                task.cancel()
            self.feed.cancel()
            self.on_done()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(reader, *self.pending, self.feed.task, return_exceptions=True)

    async def close(self) -> None:
        """Run by the response however the stream ended, even when its body never started: stop the model
        and run the end hooks (both are no-ops after a stream that ran to its end)."""
        self.abandon()
        self.on_done()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self.feed.task, return_exceptions=True)

    def abandon(self) -> None:
        """A stream that did not reach its end: the client left (or never got a byte); stop the model."""
        if self.finished:
            return
        if self.record.status == 200:
            self.record.status, self.record.error = 499, "the client closed the stream"
        self.stop_upstream()

    def stop_upstream(self) -> None:
        """Stop reading the model; the audit says so when its stream was still running."""
        if not self.feed.task.done():
            self.record.upstream_cancelled = True
        self.feed.cancel()

    async def _read(self) -> None:
        """Group chunks into windows and start their checks. Whatever goes wrong here ends the stream with
        an error event: the relay waits on this queue, so a crash must never leave it waiting."""
        try:
            await self._read_windows()
        except Exception as exc:
            log.exception("the stream reader failed")
            self.items.put_nowait(internal_failure(exc))

    async def _read_windows(self) -> None:
        output = self.route.output
        windower = self.windower = Windower(None if self.mode in ("buffer", "post") else output.window_chars,
                                            read_logprobs=output.logprobs == "check", first=output.first_window_chars,
                                            growth=output.window_growth)
        async for batch in self.feed.batches():
            if isinstance(batch, GuardrailProxyError):
                if self.mode == "post":
                    # The text relayed so far went out unchecked: judge it, so the audit and the metrics
                    # record the verdict, before the error ends the stream.
                    self.items.put_nowait(self._start_check(windower.finish(), final=True, failure=batch))
                else:
                    self.items.put_nowait(batch)
                return
            if self.mode == "off":
                self.items.put_nowait(Passed(batch))
                continue
            passed: list[Chunk] = []  # chunks relayed before their check (post mode), in order
            for chunk in batch:
                if self.mode == "post" and chunk["choices"] and not any(c.get("finish_reason")
                                                                        for c in chunk["choices"]):
                    windower.add(chunk)  # one window: its text is checked at the end
                    windower.current.chunks.pop()  # this chunk is relayed now, not with the window
                    passed.append(chunk)
                    continue
                window = windower.add(chunk)
                if window is not None:
                    if passed:
                        self.items.put_nowait(Passed(passed))
                        passed = []
                    self.items.put_nowait(self._start_check(window))
            if passed:
                self.items.put_nowait(Passed(passed))
        if self.mode != "off":
            self.items.put_nowait(self._start_check(windower.finish(), final=True))
        self.items.put_nowait(END)

    def _start_check(self, window: Window, *, final: bool = False,
                     failure: GuardrailProxyError | None = None) -> Checked:
        subjects = [self._subject(window, dest, text) for dest, text in sorted(window.texts.items())]
        task = asyncio.create_task(self.checker.check("output", subjects, self.route,
                                                      request_id=self.record.request_id))
        self.pending.append(task)
        return Checked(window, task, final, failure)

    def _subject(self, window: Window, dest: Dest, text: str) -> Subject:
        # The judged text overlaps the destination's previous text, so a phrase cut in two by a window
        # boundary is judged whole (its first half was released, but the reply stops before the second half).
        earlier = tail(window.before.get(dest, ""), self.route.output.window_context_chars)
        return output_subject(earlier + text, self.chat.messages, self.route.output, dest[0])

    async def _relay(self) -> AsyncIterator[bytes]:
        while (item := await self.items.get()) is not END:
            if isinstance(item, GuardrailProxyError):
                self.record.status, self.record.error = item.status_code, item.logged
                yield sse(item.to_body())
                return
            if isinstance(item, Passed):
                # With no output check the annotation (input verdicts) rides on the first chunk.
                yield b"".join([self._emit(chunk, annotate=self.mode == "off" and not self.sent_any)
                                for chunk in item.chunks])
                continue
            try:
                decision = await item.check
            except Exception as exc:  # a fault in the check itself, not a verdict: the stream stops here
                log.exception("an output check failed")
                error = internal_failure(exc)
                self.record.status, self.record.error = error.status_code, error.logged
                yield sse(error.to_body())
                return
            if decision.outcome is Outcome.UNAVAILABLE and self.mode == "post":
                # The text is already out: nothing to stop, but the client must learn it went unchecked.
                decision = replace(decision, outcome=Outcome.ALLOW)
            self.record.decisions.append(decision)
            if item.failure is not None:
                self.record.status, self.record.error = item.failure.status_code, item.failure.logged
                yield sse(item.failure.to_body())
                return
            if decision.outcome is Outcome.UNAVAILABLE:
                error = unavailable(decision)
                self.record.status, self.record.error = error.status_code, error.logged
                yield sse(error.to_body())
                return
            if decision.outcome in (Outcome.BLOCK, Outcome.REWRITE):
                self.stop_upstream()
                trigger = strongest(decision)
                text = trigger.refusal if decision.outcome is Outcome.BLOCK else trigger.safe_text
                chunk = final_chunk(text, chunk_id=self.last["id"], model=self.last["model"],
                                    created=self.last["created"], with_role=not self.sent_role,
                                    choices=self.chat.n or 1)
                yield sse({**chunk, **self._annotation()})
                yield DONE
                return
            last = len(item.window.chunks) - 1
            if item.window.chunks:
                yield b"".join([self._emit(chunk, annotate=item.final and position == last)
                                for position, chunk in enumerate(item.window.chunks)])
            if item.final and not item.window.chunks and (annotation := self._annotation()):
                # The last text closed a window on its own: the verdicts ride on a chunk with no choices.
                yield sse({"id": self.last["id"], "object": "chat.completion.chunk", "created": self.last["created"],
                           "model": self.last["model"], "choices": [], **annotation})
        # Relayed whole and unchanged: each choice's content, when it comes back as history, need not be judged
        # again (a choice that also carried tool calls comes back as another text, and is judged).
        self.checker.relayed_clean(self.route, [text for (_, dest), text in self.windower.seen.items()
                                                if dest == "content"],
                                   [d for d in self.record.decisions if d.phase == "output"])
        yield DONE

    def _emit(self, chunk: Chunk, *, annotate: bool) -> bytes:
        """The event for a chunk the relay may send: the upstream's object itself, its text already judged
        (or the route checks none), with the proxy's edits only."""
        if self.route.output.logprobs == "strip" or self.mode == "off":
            strip_logprobs(chunk)
        chunk.pop("guardrail", None)
        self.last = {"id": chunk["id"], "model": chunk["model"], "created": chunk["created"]}
        deltas = [c.get("delta") or {} for c in chunk["choices"]]
        self.sent_role = self.sent_role or any(d.get("role") for d in deltas)
        self.sent_any = True
        if self.route.audit_content != "none":  # what the client saw, for the audit record
            self.record.released += [t for d in deltas if isinstance(t := d.get("content"), str) and t]
        if annotate:
            chunk.update(self._annotation())
        return sse(chunk)

    def _annotation(self) -> dict[str, Any]:
        decisions = self.record.decisions
        if not is_visible(decisions):
            return {}
        return {"guardrail": guardrail_object(self.record.request_id, self.route.name, decisions,
                                              self.route.reveal_reasoning)}
