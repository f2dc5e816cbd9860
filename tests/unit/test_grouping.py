"""The group writer: concurrent calls share a write; one bad call does not fail the others."""

from __future__ import annotations

import asyncio

import pytest

from imagedrop.ledger._grouping import GroupWriter


class Recorder:
    """A `write` that records each group, refuses the item "bad", and waits on a gate."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()

    async def write(self, items: list[str]) -> list[str]:
        self.groups.append(list(items))
        await self.gate.wait()
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]


class TestGroupWriter:
    """Results go back to their own callers, in order."""

    async def test_waiting_calls_share_one_write(self):
        rec = Recorder()
        writer = GroupWriter(rec.write)
        first = asyncio.create_task(writer.submit(["a"]))
        await asyncio.sleep(0)  # the first group is being written
        rest = [asyncio.create_task(writer.submit([x, x + "2"])) for x in "bcd"]
        await asyncio.sleep(0)
        rec.gate.set()
        assert await first == ["A"]
        assert [await t for t in rest] == [["B", "B2"], ["C", "C2"], ["D", "D2"]]
        assert rec.groups == [["a"], ["b", "b2", "c", "c2", "d", "d2"]]

    async def test_a_bad_call_fails_alone(self):
        rec = Recorder()
        writer = GroupWriter(rec.write)
        blocker = asyncio.create_task(writer.submit(["x"]))
        await asyncio.sleep(0)
        good = asyncio.create_task(writer.submit(["ok"]))
        bad = asyncio.create_task(writer.submit(["bad"]))
        await asyncio.sleep(0)
        rec.gate.set()
        assert await blocker == ["X"]
        assert await good == ["OK"]
        with pytest.raises(ValueError, match="bad item"):
            await bad

    async def test_group_size_is_bounded(self):
        rec = Recorder()
        rec.gate.set()
        writer = GroupWriter(rec.write, max_items=3)
        await asyncio.gather(*(writer.submit([str(i)]) for i in range(7)))
        assert all(len(group) <= 3 for group in rec.groups)
        assert sorted(x for g in rec.groups for x in g) == sorted(str(i) for i in range(7))
