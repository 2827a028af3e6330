"""Streamed completions with output moderation.

`ChunkFeed` reads the upstream stream in a background task from the moment the request arrives, so the
model can run while the input is checked (speculative mode); nothing in it reaches the client until
the relay iterates it. `StreamRelay` groups chunks into windows (windows.py), checks each window as soon
as it closes — while the next one is read — and releases a window's chunks only after its verdict.
On a violation it stops the upstream, sends one final chunk with the refusal and
finish_reason "content_filter", then [DONE]. When the client goes away, Starlette cancels the relay and
the `finally` blocks cancel the upstream read and every pending check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from openai.types.chat import ChatCompletionChunk

from .audit import AuditRecord
from .config import RouteConfig
from .decisions import Decision, Outcome
from .errors import GuardrailProxyError, UpstreamError
from .pipeline import Checker
from .protocol import ChatRequest
from .responses import guardrail_object, is_visible, strip_logprobs, strongest, unavailable
from .subjects import Subject, output_subject
from .windows import Dest, Window, Windower, tail

log = logging.getLogger("guardrail_proxy.streaming")
DONE = b"data: [DONE]\n\n"
END = object()


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def chunk_json(chunk: ChatCompletionChunk) -> dict[str, Any]:
    return chunk.model_dump(mode="json", exclude_unset=True, warnings=False)


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
    def __init__(self, source: AsyncIterator[ChatCompletionChunk]) -> None:
        self.source = source
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.first: Any = None
        self.first_at: float | None = None  # perf_counter() when the first chunk arrived
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for chunk in self.source:
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                self.queue.put_nowait(chunk)
                # Parsing an already-buffered burst never yields on its own; without this the first chunk
                # waits until the whole burst is parsed.
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

    async def chunks(self) -> AsyncIterator[ChatCompletionChunk | GuardrailProxyError]:
        item = self.first if self.first is not None else await self.queue.get()
        while item is not END:
            yield item
            if isinstance(item, GuardrailProxyError):
                return
            item = await self.queue.get()

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


@dataclass
class Passed:
    chunk: ChatCompletionChunk


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
        async for item in self.feed.chunks():
            if isinstance(item, GuardrailProxyError):
                self.items.put_nowait(item)
                return
            if self.mode == "off":
                self.items.put_nowait(Passed(item))
                continue
            if self.mode == "post" and item.choices and not any(c.finish_reason for c in item.choices):
                windower.add(item)  # one window: its text is checked at the end
                windower.current.chunks.pop()  # this chunk is relayed now, not with the window
                self.items.put_nowait(Passed(item))
                continue
            window = windower.add(item)
            if window is not None:
                self.items.put_nowait(self._start_check(window))
        if self.mode != "off":
            self.items.put_nowait(self._start_check(windower.finish(), final=True))
        self.items.put_nowait(END)

    def _start_check(self, window: Window, *, final: bool = False) -> Checked:
        subjects = [self._subject(window, dest, text) for dest, text in sorted(window.texts.items())]
        task = asyncio.create_task(self.checker.check("output", subjects, self.route))
        self.pending.append(task)
        return Checked(window, task, final)

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
                yield self._emit(item.chunk, annotate=self.mode == "off" and not self.sent_any)
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
            for position, chunk in enumerate(item.window.chunks):
                yield self._emit(chunk, annotate=item.final and position == last)
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

    def _emit(self, chunk: ChatCompletionChunk, *, annotate: bool) -> bytes:
        data = chunk_json(chunk)
        if self.route.output.logprobs == "strip" or self.mode == "off":
            strip_logprobs(data)
        self.last = {"id": chunk.id, "model": chunk.model, "created": chunk.created}
        self.sent_role = self.sent_role or any(c.delta.role for c in chunk.choices)
        self.sent_any = True
        if self.route.audit_content != "none":  # what the client saw, for the audit record
            self.record.released += [c.delta.content for c in chunk.choices if c.delta.content]
        if annotate:
            data.update(self._annotation())
        return sse(data)

    def _annotation(self) -> dict[str, Any]:
        decisions = self.record.decisions
        if not is_visible(decisions):
            return {}
        return {"guardrail": guardrail_object(self.record.request_id, self.route.name, decisions,
                                              self.route.reveal_reasoning)}
