"""The console's store on both backends (a SQLite file, a real PostgreSQL): questions run one at a time in the
store's own thread, never in the event loop's default pool; a question past its time limit (a slow statement,
or one still queued at its deadline) becomes a 503 and the next question is answered; close() ends the thread.

The limits here are small so that the slow questions (which would run for minutes unbounded) end at once;
nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import pytest
from console_seed import Seeded

from guardrail_proxy.config import AuditConfig
from guardrail_proxy.console.store import ConsoleStore
from guardrail_proxy.errors import GuardrailUnavailable
from guardrail_proxy.settings import Settings

SLOW = {  # a statement that runs for minutes unless it is stopped
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000) "
              "SELECT COUNT(*) FROM c",
    "postgres": "SELECT pg_sleep(600)",
}
HANG_GUARD_S = 30  # only so that a broken store fails the test instead of hanging it


@pytest.fixture(params=["sqlite", "postgres"])
def kind_and_store(request, tmp_path) -> Any:
    def make(limit_s: float = 10.0) -> ConsoleStore:
        if request.param == "sqlite":
            where = str(tmp_path / "audit.db")
            Seeded("sqlite", where).close()
            return ConsoleStore(AuditConfig(store="sqlite", path=where), Settings(), "proxy.yaml", limit_s)
        dsn = request.getfixturevalue("postgres_dsn")
        Seeded("postgres", dsn).close()
        return ConsoleStore(AuditConfig(store="postgres", dsn_env="AUDIT_DSN"),
                            Settings(MappingProxyType({"AUDIT_DSN": dsn})), "proxy.yaml", limit_s)

    return request.param, make


def one(db: Any) -> int:
    return int(db.execute("SELECT 1").fetchone()[0])


async def test_questions_run_one_at_a_time_in_the_stores_own_thread(kind_and_store) -> None:
    _, make = kind_and_store
    store = make()
    running, most, names = [0], [0], set()
    lock = threading.Lock()

    def question(db: Any) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        names.add(threading.current_thread().name)
        answer = one(db)
        with lock:
            running[0] -= 1
        return answer

    answers = await asyncio.gather(*(store.run(question) for _ in range(8)))
    assert answers == [1] * 8 and most[0] == 1
    assert len(names) == 1 and next(iter(names)).startswith("console-store")
    await store.close()
    assert store.executor is None and store.db is None


async def test_a_stalled_console_leaves_the_loops_default_pool_free(kind_and_store) -> None:
    """Console questions queued behind a stuck one hold no thread of the default pool (DNS lookups, reloads)."""
    _, make = kind_and_store
    store = make()
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(default)
    release = threading.Event()
    stuck = [asyncio.ensure_future(store.run(lambda db: release.wait(HANG_GUARD_S))) for _ in range(5)]
    try:
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), HANG_GUARD_S) == "free"
    finally:
        release.set()
        await asyncio.gather(*stuck, return_exceptions=True)
        await store.close()


async def test_a_slow_statement_is_stopped_with_a_503_and_the_store_still_answers(kind_and_store) -> None:
    kind, make = kind_and_store
    store = make(limit_s=0.3)
    with pytest.raises(GuardrailUnavailable) as caught:
        await asyncio.wait_for(store.run(lambda db: db.execute(SLOW[kind]).fetchone()), HANG_GUARD_S)
    assert caught.value.status_code == 503 and "did not answer within 0.3 s" in caught.value.message
    assert "narrow the filter" in caught.value.message
    assert await store.run(one) == 1
    await store.close()


async def test_postgres_sessions_carry_the_statement_timeout(postgres_dsn) -> None:
    Seeded("postgres", postgres_dsn).close()
    store = ConsoleStore(AuditConfig(store="postgres", dsn_env="AUDIT_DSN"),
                         Settings(MappingProxyType({"AUDIT_DSN": postgres_dsn})), "proxy.yaml", 2.5)
    assert await store.run(lambda db: db.execute("SHOW statement_timeout").fetchone()[0]) == "2500ms"
    await store.close()


async def test_a_question_still_queued_at_its_deadline_is_not_started(kind_and_store) -> None:
    _, make = kind_and_store
    store = make(limit_s=0.2)
    first_runs, release = threading.Event(), threading.Event()
    started: list[str] = []

    def blocker(db: Any) -> str:
        first_runs.set()
        release.wait(HANG_GUARD_S)
        return "first"

    def late(db: Any) -> int:
        started.append("late")
        return one(db)

    first = asyncio.ensure_future(store.run(blocker, limit_s=HANG_GUARD_S))
    await asyncio.get_running_loop().run_in_executor(None, first_runs.wait, HANG_GUARD_S)
    second = asyncio.ensure_future(store.run(late))
    await asyncio.sleep(0.4)  # past the second question's deadline, while it waits behind the first
    release.set()
    assert await first == "first"
    with pytest.raises(GuardrailUnavailable, match="did not answer within"):
        await second
    assert started == []
    await store.close()


async def test_the_deadline_is_checked_between_statements(kind_and_store) -> None:
    _, make = kind_and_store
    store = make(limit_s=0.2)
    done: list[int] = []

    def two_statements(db: Any) -> None:
        done.append(one(db))
        threading.Event().wait(0.4)  # Python work that outlives the deadline
        done.append(one(db))

    with pytest.raises(GuardrailUnavailable, match="did not answer within"):
        await store.run(two_statements)
    assert done == [1]
    await store.close()


async def test_a_store_that_cannot_be_opened_is_a_503(tmp_path) -> None:
    store = ConsoleStore(AuditConfig(store="postgres", dsn_env="NOWHERE"), Settings(), "proxy.yaml")
    with pytest.raises(GuardrailUnavailable, match=r"cannot be opened: .*NOWHERE"):
        await store.run(one)
    await store.close()
