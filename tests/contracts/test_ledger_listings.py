"""Operators' listings on every ledger backend: newest first, filtered, cursor-paginated over
several pages; deliveries with every attempt; subscribers with their state."""

from __future__ import annotations

import pytest

from imagedrop.errors import InputError
from imagedrop.ledger import (
    DeliveryFilter,
    DeliveryState,
    JobFilter,
    JobKind,
    JobState,
    Ledger,
    NewDelivery,
    NewJob,
)
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import FakeClock
from tests.contracts.test_ledger import attempt


async def every_page(fetch, limit: int) -> list[list]:  # type: ignore[no-untyped-def]
    pages, after = [], None
    while True:
        page = await fetch(after=after, limit=limit)
        pages.append(page.items)
        if page.next is None:
            return pages
        after = page.next


def new_delivery(url: str) -> NewDelivery:
    return NewDelivery(kind="webhook", url=url, body=b'{"a":1}')


class TestJobListing:
    async def test_newest_first_over_pages_with_ties(self, ledger: Ledger, clock: FakeClock):
        for i in range(7):
            await ledger.create_jobs([NewJob(kind=JobKind.B64, filename=f"{i}.png", recipe=Recipe(),
                                             input_data=b"x" * 10)])
            if i % 3 == 2:
                clock.advance(1)  # some share a created_at: the cursor must still be exact
        pages = await every_page(lambda **kw: ledger.page_jobs(JobFilter(), **kw), 3)
        assert [len(p) for p in pages] == [3, 3, 1]
        names = [job.filename for page in pages for job in page]
        assert names == [f"{i}.png" for i in reversed(range(7))]
        assert all(job.input_data is None for page in pages for job in page)

    async def test_filters(self, ledger: Ledger, clock: FakeClock):
        def drop(key: str, bucket: str = "b") -> NewJob:
            return NewJob(kind=JobKind.DROP, filename=key, recipe=Recipe(), source_bucket=bucket,
                          source_key=key)
        await ledger.create_jobs([drop("f_1/a.png"), drop("f%1/b.png"), drop("g/c.png", "o")])
        clock.advance(10)
        [(late, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="late",
                                                       recipe=Recipe())])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        await ledger.fail_job(claimed.id, "w", "boom", [])

        async def keys(**where: object) -> list[str]:
            page = await ledger.page_jobs(JobFilter(**where))  # type: ignore[arg-type]
            return sorted(job.source_key or job.filename for job in page.items)

        assert await keys(prefix="f_1/") == ["f_1/a.png"]  # literal: _ is no wildcard
        assert await keys(bucket="o") == ["g/c.png"]
        assert await keys(kind=JobKind.B64) == ["late"]
        assert claimed.source_key == "f_1/a.png"  # claims take the oldest first
        assert await keys(state=JobState.FAILED) == ["f_1/a.png"]
        assert await keys(since=clock.now) == ["late"]
        assert await keys(state=JobState.QUEUED, bucket="b") == ["f%1/b.png"]
        assert late.filename == "late"
        assert await ledger.count_jobs(JobState.QUEUED) == 3

    @pytest.mark.parametrize("cursor", ["", "x", "%%%", "WzEsMiwzXQ", "WyJhIiwxXQ",
                                        "eyJhIjoxfQ", "W3RydWUsMV0", "A" * 600])
    async def test_a_cursor_not_given_out_is_refused(self, ledger: Ledger, cursor: str):
        with pytest.raises(InputError, match="cursor"):
            await ledger.page_jobs(JobFilter(), after=cursor)


class TestDeliveryLog:
    async def test_each_delivery_with_its_attempts(self, ledger: Ledger, clock: FakeClock):
        [(job, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a",
                                                      recipe=Recipe())])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        await ledger.complete_job(claimed.id, "w", JobResult(), [
            new_delivery(url="http://a.test/h"), new_delivery(url="http://b.test/h")])
        for delivery in await ledger.claim_deliveries("s", 2, 60):
            await ledger.record_attempt(delivery.id, "s", attempt(delivery.id, 1, clock.now),
                                        state=DeliveryState.PENDING,
                                        next_attempt_at=clock.now)
        clock.advance(1)
        for delivery in await ledger.claim_deliveries("s", 2, 60):
            ok = delivery.url.startswith("http://a")
            await ledger.record_attempt(
                delivery.id, "s", attempt(delivery.id, 2, clock.now, 200 if ok else 500),
                state=DeliveryState.DELIVERED if ok else DeliveryState.FAILED)
        pages = await every_page(
            lambda **kw: ledger.page_deliveries(DeliveryFilter(job_id=job.id), **kw), 1)
        logs = [log for page in pages for log in page]
        assert len(pages) == 2 and len(logs) == 2
        assert all([a.attempt for a in log.attempts] == [1, 2] for log in logs)
        assert all(log.delivery.body == b"" for log in logs)
        [failed] = (await ledger.page_deliveries(DeliveryFilter(state=DeliveryState.FAILED))
                    ).items
        assert failed.delivery.url == "http://b.test/h"
        assert failed.attempts[-1].status == 500
        [only] = (await ledger.page_deliveries(DeliveryFilter(url="http://a.test/h"))).items
        assert only.delivery.state is DeliveryState.DELIVERED

    async def test_redeliver_to_one_endpoint_since_a_time(self, ledger: Ledger,
                                                           clock: FakeClock):
        await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a", recipe=Recipe())])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        await ledger.complete_job(claimed.id, "w", JobResult(), [new_delivery(url="http://x.test/")
                                                        for _ in range(3)])
        for i, delivery in enumerate(await ledger.claim_deliveries("s", 3, 60)):
            clock.advance(1)
            await ledger.record_attempt(delivery.id, "s", attempt(delivery.id, 1, clock.now),
                                        state=DeliveryState.FAILED)
            assert i < 3
        page = await ledger.requeue_deliveries(url="http://x.test/", since=0, limit=2)
        assert len(page.items) == 2 and page.more
        page = await ledger.requeue_deliveries(url="http://x.test/", since=0, limit=2)
        assert len(page.items) == 1 and not page.more
        assert (await ledger.requeue_deliveries(url="http://other.test/")).items == []


class TestSubscribers:
    async def test_state_per_url(self, ledger: Ledger, clock: FakeClock):
        await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a", recipe=Recipe())])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        urls = ["http://ok.test/", "http://down.test/", "http://gone.test/"]
        await ledger.complete_job(claimed.id, "w", JobResult(), [new_delivery(url=u) for u in urls])
        outcome = {"http://ok.test/": (200, DeliveryState.DELIVERED),
                   "http://down.test/": (500, DeliveryState.FAILED),
                   "http://gone.test/": (410, DeliveryState.DISABLED)}
        for delivery in await ledger.claim_deliveries("s", 3, 60):
            status, state = outcome[delivery.url]
            await ledger.record_attempt(delivery.id, "s",
                                        attempt(delivery.id, 1, clock.now, status), state=state)
        await ledger.disable_endpoint("http://gone.test/", "410 Gone")
        await ledger.disable_endpoint("http://never.test/", "disabled by an operator")
        pages = await every_page(lambda **kw: ledger.page_subscribers(**kw), 3)
        assert [len(p) for p in pages] == [3, 1]
        states = {s.url: s for page in pages for s in page}
        assert states["http://ok.test/"].state == "active"
        assert states["http://ok.test/"].last_success == clock.now
        assert states["http://down.test/"].state == "failing"
        assert states["http://down.test/"].failed == 1
        assert states["http://gone.test/"].state == "disabled"
        assert states["http://never.test/"].disabled_reason == "disabled by an operator"


class TestDashboardQueries:
    """What the dashboard asks the ledger (every backend): the newest job of each stored object,
    and how many jobs finished recently (by finish time, not by when they were recorded)."""

    async def test_newest_job_per_object(self, ledger: Ledger, clock: FakeClock):
        def job(key: str, dedupe: str) -> NewJob:
            return NewJob(kind=JobKind.DROP, filename=key, recipe=Recipe(prompt="p"),
                          dedupe_key=dedupe, source_bucket="b", source_key=key,
                          source_etag="e", max_attempts=3)

        await ledger.create_jobs([job("f/a.png", "1"), job("f/b.png", "2")])
        clock.advance(1)
        [(newer, _)] = await ledger.create_jobs([job("f/a.png", "3")])
        found = await ledger.jobs_for_objects("b", ["f/a.png", "f/b.png", "f/none.png"])
        assert set(found) == {"f/a.png", "f/b.png"} and found["f/a.png"].id == newer.id
        assert await ledger.jobs_for_objects("other", ["f/a.png"]) == {}

    async def test_finished_recently(self, ledger: Ledger, clock: FakeClock):
        old = NewJob(kind=JobKind.B64, filename="a", recipe=Recipe(prompt="p"),
                     input_data=b"x", max_attempts=3)
        await ledger.create_jobs([old, old])  # two jobs recorded long ago
        clock.advance(3600)
        first, second = await ledger.claim_jobs("w", 2, 60)
        await ledger.complete_job(first.id, "w", JobResult(provider="local"), [])
        await ledger.fail_job(second.id, "w", "nope", [])
        since = clock.now - 60
        assert await ledger.count_finished(JobState.COMPLETED, since) == 1
        assert await ledger.count_finished(JobState.FAILED, since) == 1
        assert await ledger.count_finished(JobState.COMPLETED, clock.now + 1) == 0
