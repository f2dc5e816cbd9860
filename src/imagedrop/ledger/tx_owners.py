"""The ledger's transactions for lease owners and their liveness, and for sweep leadership,
written once for every database (sans-I/O generators, as in `tx_jobs`).

An owner (one process) registers a random key and holds a lock on it for its lifetime; the
dialect's `alive` condition asks whether that lock is still held. Leases stay the fallback for
owners that never registered (older versions, the tests' hand-made owners).
"""

from __future__ import annotations

from collections.abc import Sequence

from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import Tx, count, rows, run, value


def register_owner(d: Dialect, now: float, owner: str, key: int, host: str, pid: int
                   ) -> Tx[None]:
    yield run("INSERT INTO owners (owner, key, host, pid, started_at)"
              " VALUES (:owner, :key, :host, :pid, :now)",
              owner=owner, key=key, host=host, pid=pid, now=now)


def unregister_owner(d: Dialect, now: float, owner: str) -> Tx[int | None]:
    """Forget `owner`; answers its key (None if it was not registered)."""
    key = yield value("DELETE FROM owners WHERE owner = :owner RETURNING key", owner=owner)
    return None if key is None else int(key)


def dead_owners(d: Dialect, now: float, me: str) -> Tx[list[str]]:
    """Registered owners other than `me` whose lock is gone: their process died."""
    # `w.owner`: inside `alive`, a bare `owner` would name the subquery's own column.
    found = yield rows(f"SELECT w.owner FROM owners w WHERE w.owner <> :me"
                       f" AND NOT {d.alive('w.owner')} ORDER BY w.owner", me=me)
    return [str(r[0]) for r in found]


def take_over(d: Dialect, now: float, owners: Sequence[str]) -> Tx[tuple[int, list[int]]]:
    """Expire every lease the dead `owners` hold, so the next claim takes their work at once,
    and forget them; answers how many leases were freed and the forgotten owners' keys.

    Their running jobs keep their state (a claim counts the attempt, as after a lapsed lease);
    the owners are checked dead again here, in the transaction, so an owner that came back
    between the look and the takeover keeps its work.
    """
    dead = yield rows(f"SELECT w.owner, w.key FROM owners w WHERE"
                      f" {d.in_list('w.owner', 'owners')} AND NOT {d.alive('w.owner')}",
                      owners=d.list_param(owners))
    if not dead:
        return 0, []
    names = d.list_param([r[0] for r in dead])
    yield run("UPDATE version_leases SET lease_expires = 0 WHERE job_id IN (SELECT id FROM jobs"
              f" WHERE state = 'running' AND {d.in_list('lease_owner', 'names')})", names=names)
    freed = 0
    for table, live in (("jobs", "state = 'running'"), ("deliveries", "state = 'pending'"),
                        ("batches", "NOT listing_done"), ("sweep_leases", "TRUE")):
        freed += yield count(f"UPDATE {table} SET lease_expires = 0 WHERE {live}"
                             f" AND {d.in_list('lease_owner', 'names')}", names=names)
    yield run(f"DELETE FROM owners WHERE {d.in_list('owner', 'names')}", names=names)
    return freed, [int(r[1]) for r in dead]


def claim_sweep(d: Dialect, now: float, bucket: str, owner: str, lease_seconds: float
                ) -> Tx[bool]:
    """Hold (or keep holding) the sweep of `bucket` for `owner`: True while it is ours. One
    replica sweeps a bucket; another takes it only once its lease may be taken (`Dialect.free`:
    the sweeper is dead)."""
    mine = yield value(
        "INSERT INTO sweep_leases AS s (bucket, lease_owner, lease_expires)"
        " VALUES (:bucket, :owner, :expires) ON CONFLICT (bucket) DO UPDATE"
        " SET lease_owner = excluded.lease_owner, lease_expires = excluded.lease_expires"
        f" WHERE s.lease_owner = excluded.lease_owner"
        f" OR {d.free('s.lease_expires', 's.lease_owner')} RETURNING lease_owner",
        bucket=bucket, owner=owner, expires=now + lease_seconds, now=now)
    return mine is not None


def release_sweeps(d: Dialect, now: float, owner: str) -> Tx[int]:
    """Give back the sweeps `owner` holds (graceful stop): another replica takes them at once."""
    return int((yield count("DELETE FROM sweep_leases WHERE lease_owner = :owner", owner=owner)))
