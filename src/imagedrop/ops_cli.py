"""Operator commands against a running imagedrop: jobs, deliveries, replay, subscribers.

The service is `--url` (default IMAGEDROP_URL, else http://127.0.0.1:8080); the API key comes
from IMAGEDROP_API_KEY only, never from a flag (flags show up in process lists and shell
history). Tables for people, `--json` for scripts. Blocking HTTP: the CLI runs outside a loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
ENV_HELP = ("The service: --url, else IMAGEDROP_URL, else http://127.0.0.1:8080. The API key: "
            "IMAGEDROP_API_KEY (never a flag).")


class CliError(Exception):
    """A failure to report in one line; the command exits 1."""


@dataclass(frozen=True, slots=True)
class Client:
    """A running service's API, over plain blocking HTTP."""

    url: str
    api_key: str | None
    timeout: float = 60.0

    def call(self, method: str, path: str, body: Any = None,
             query: Mapping[str, str | None] | None = None) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = self.url.rstrip("/") + path + (
            "?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(target, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise CliError(f"{exc.code}: {_error_text(exc)}") from None
        except urllib.error.URLError as exc:
            # The reason, not the URL: it may carry a query string.
            raise CliError(f"cannot reach the service at {_safe(self.url)}: "
                           f"{getattr(exc.reason, 'strerror', None) or exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise CliError(f"cannot reach the service at {_safe(self.url)}: "
                           f"{exc.strerror or type(exc).__name__}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError):
        return exc.reason or "error"


def _safe(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                                    "", ""))


# -- the parser ---------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add jobs, deliveries, replay, subscribers and secret to the `imagedrop` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the service (default IMAGEDROP_URL or "
                                      "http://127.0.0.1:8080)")
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--since", help="recorded at or after: ISO 8601 or Unix seconds")
    listing.add_argument("--limit", type=int, default=50, help="rows per page (1-500)")
    listing.add_argument("--all", action="store_true", help="follow every page")

    def command(parent: Any, name: str, text: str, *parents: argparse.ArgumentParser) -> Any:
        return parent.add_parser(name, help=text, description=f"{text}. {ENV_HELP}",
                                 parents=[common, *parents])

    jobs = sub.add_parser("jobs", help="list and show jobs of a running service")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)
    jl = command(jobs_sub, "list", "List jobs, newest first", listing)
    jl.add_argument("--state", help="queued, running, completed or failed")
    jl.add_argument("--kind", help="b64, cos, batch or drop")
    jl.add_argument("--bucket", help="bucket of the input")
    jl.add_argument("--prefix", help="the input key starts with this")
    jl.add_argument("--batch", dest="batch_id", help="jobs of one batch")
    js = command(jobs_sub, "show", "Show one job or batch: state, timings, result, callbacks")
    js.add_argument("id", help="a job id or batch id")

    deliveries = sub.add_parser("deliveries", help="the callback delivery log")
    deliveries_sub = deliveries.add_subparsers(dest="action", required=True)
    dl = command(deliveries_sub, "list", "List callback deliveries with every attempt, newest "
                 "first", listing)
    dl.add_argument("--state", help="pending, delivered, failed or disabled")
    dl.add_argument("--endpoint", dest="endpoint", help="deliveries to this URL")
    dl.add_argument("--job", dest="job_id", help="deliveries of one job")

    replay = command(sub, "replay", "Run failed jobs again, or send failed callbacks again")
    replay.add_argument("--job", dest="job_ids", action="append", default=[],
                        help="a job to run again (repeatable)")
    replay.add_argument("--batch", dest="batch_id", help="the batch's failed jobs")
    replay.add_argument("--prefix", help="failed jobs of images under this folder")
    replay.add_argument("--bucket", help="with --prefix: the bucket (default: the input bucket)")
    replay.add_argument("--delivery", dest="delivery_ids", action="append", default=[],
                        help="a failed delivery to send again (repeatable)")
    replay.add_argument("--endpoint", help="every failed delivery to this URL")
    replay.add_argument("--since", help="with --endpoint: recorded since (ISO 8601 with a zone)")
    replay.add_argument("--force", action="store_true", help="with --job: re-edit completed jobs")
    replay.add_argument("--redeliver", action="store_true",
                        help="also send the selected jobs' failed callbacks again")
    replay.add_argument("--limit", type=int, default=1000, help="jobs per call (1-10000)")
    replay.add_argument("--all", action="store_true", help="call again until nothing is left")

    subs = sub.add_parser("subscribers", help="subscriber URLs: state, disable, enable, test")
    subs_sub = subs.add_subparsers(dest="action", required=True)
    command(subs_sub, "list", "List subscriber URLs with their state and latest success",
            listing)
    for name, text in (("disable", "Stop sending events to a URL"),
                       ("enable", "Send events to a disabled URL again"),
                       ("test", "Send a signed imagedrop.test event and show the answer")):
        action = command(subs_sub, name, text)
        action.add_argument("target", metavar="URL", help="the subscriber's URL")
        if name == "disable":
            action.add_argument("--reason", help="why (shown by 'subscribers list')")

    secret = sub.add_parser("secret", help="signing secrets (offline)")
    secret_sub = secret.add_subparsers(dest="action", required=True)
    secret_sub.add_parser("new", help="print a new whsec_ signing secret",
                          description="Print a new Standard Webhooks secret (whsec_ + 24 random "
                          "bytes, base64): put it in the service's environment and give the "
                          "receiver a copy. Needs no service.")


# -- running them ------------------------------------------------------------------------------


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run an operator command; prints one line and returns 1 on failure."""
    if args.command == "secret":
        from imagedrop.delivery.signing import generate_secret

        print(generate_secret())
        return 0
    client = Client(args.url or environ.get("IMAGEDROP_URL") or DEFAULT_URL,
                    environ.get("IMAGEDROP_API_KEY") or None)
    try:
        return _COMMANDS[(args.command, getattr(args, "action", None))](client, args)
    except CliError as exc:
        print(f"imagedrop: {exc}", file=sys.stderr)
        return 1


def _pages(client: Client, path: str, query: dict[str, str | None], every: bool
           ) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.call("GET", path, query=query)
        items += page["items"]
        if not (every and page["next"]):
            return items
        query = {**query, "after": page["next"]}


def _jobs_list(client: Client, args: argparse.Namespace) -> int:
    query = {"state": args.state, "kind": args.kind, "bucket": args.bucket,
             "prefix": args.prefix, "batch_id": args.batch_id, "since": args.since,
             "limit": str(args.limit)}
    items = _pages(client, "/jobs", query, args.all)
    return _print(args, items, [("ID", "id"), ("STATE", "state"), ("KIND", "kind"),
                                ("INPUT", lambda j: j["key"] or j["filename"]),
                                ("TRIES", "attempts"),
                                ("CREATED", lambda j: ago(j["created_at"])),
                                ("ERROR", lambda j: j["error"] or "")])


def _jobs_show(client: Client, args: argparse.Namespace) -> int:
    job = client.call("GET", f"/jobs/{urllib.parse.quote(args.id, safe='')}")
    print(json.dumps(job, indent=None if args.json else 2, ensure_ascii=False))
    return 0


def _deliveries_list(client: Client, args: argparse.Namespace) -> int:
    query = {"state": args.state, "url": args.endpoint, "job_id": args.job_id,
             "since": args.since, "limit": str(args.limit)}
    items = _pages(client, "/deliveries", query, args.all)

    def last(d: dict[str, Any]) -> str:
        if not d["attempts"]:
            return ""
        a = d["attempts"][-1]
        return str(a["status"] or a["error"] or "")

    return _print(args, items, [("ID", "id"), ("STATE", "state"), ("KIND", "kind"),
                                ("EVENT", lambda d: d["event_type"] or ""), ("URL", "url"),
                                ("TRIES", lambda d: len(d["attempts"])), ("LAST", last)])


def _replay(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"job_ids": args.job_ids, "delivery_ids": args.delivery_ids,
                            "force": args.force, "redeliver": args.redeliver,
                            "limit": args.limit}
    for name, value in (("batch_id", args.batch_id), ("prefix", args.prefix),
                        ("bucket", args.bucket), ("url", args.endpoint), ("since", args.since)):
        if value is not None:
            body[name] = value
    requeued, deliveries = 0, 0
    while True:
        answer = client.call("POST", "/replay", body)
        requeued += answer["requeued"]
        deliveries += len(answer["deliveries"])
        if args.json:
            print(json.dumps(answer))
        if not (args.all and answer["more"]):
            break
    if not args.json:
        more = " (more remain: run again, or add --all)" if answer["more"] else ""
        print(f"queued again: {requeued} job(s), {deliveries} delivery(ies){more}")
    return 0


def _subscribers_list(client: Client, args: argparse.Namespace) -> int:
    items = _pages(client, "/subscribers", {"limit": str(args.limit)}, args.all)
    return _print(args, items, [("URL", "url"), ("STATE", "state"),
                                ("DELIVERED", "delivered"), ("FAILED", "failed"),
                                ("PENDING", "pending"),
                                ("LAST SUCCESS", lambda s: s["last_success"] or "never")])


def _subscriber_action(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.target}
    if getattr(args, "reason", None):
        body["reason"] = args.reason
    answer = client.call("POST", f"/subscribers/{args.action}", body)
    if args.json:
        print(json.dumps(answer))
    elif args.action == "test":
        said = answer["status"] or answer["error"]
        print(f"{'delivered' if answer['delivered'] else 'NOT delivered'}: {said} "
              f"in {answer['duration_ms']:.0f} ms ({'signed' if answer['signed'] else 'unsigned'})")
    else:
        print(f"{answer['url']}: {answer['state']}{'' if answer['changed'] else ' (already)'}")
    return 0 if args.action != "test" or answer["delivered"] else 1


_COMMANDS: dict[tuple[str, str | None], Callable[[Client, argparse.Namespace], int]] = {
    ("jobs", "list"): _jobs_list, ("jobs", "show"): _jobs_show,
    ("deliveries", "list"): _deliveries_list, ("replay", None): _replay,
    ("subscribers", "list"): _subscribers_list, ("subscribers", "disable"): _subscriber_action,
    ("subscribers", "enable"): _subscriber_action, ("subscribers", "test"): _subscriber_action,
}

Column = tuple[str, str | Callable[[dict[str, Any]], object]]


def _print(args: argparse.Namespace, items: list[dict[str, Any]],
           columns: Sequence[Column]) -> int:
    if args.json:
        print(json.dumps(items, ensure_ascii=False))
        return 0
    rows = [[head for head, _ in columns]]
    for item in items:
        rows.append([_cell(item[get] if isinstance(get, str) else get(item))
                     for _, get in columns])
    widths = [min(60, max(len(row[i]) for row in rows)) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True))
              .rstrip())
    if not items:
        print("(none)")
    return 0


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)  # no terminal escapes


def ago(iso: str | None, now: float | None = None) -> str:
    """`2026-11-28T10:00:00.000Z` as `5m ago` (for people)."""
    if not iso:
        return ""
    seconds = (now or time.time()) - datetime.fromisoformat(iso.replace("Z", "+00:00")
                                                            ).astimezone(UTC).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(max(0, seconds))}s ago"


def estimate(target: str, url: str | None, environ: Mapping[str, str]) -> int:
    """`imagedrop manifest check --estimate BUCKET/PREFIX`: a dry run of POST /trigger on a
    running service, printed in a few lines; 0, or 1 with the service's reason."""
    bucket, slash, prefix = target.partition("/")
    if not bucket or not slash:
        print(f"imagedrop: --estimate wants BUCKET/PREFIX (e.g. photos/summer/), not {target!r}",
              file=sys.stderr)
        return 1
    client = Client(url or environ.get("IMAGEDROP_URL") or DEFAULT_URL,
                    environ.get("IMAGEDROP_API_KEY") or None, timeout=600.0)
    try:
        est = client.call("POST", "/trigger", {"bucket": bucket, "prefix": prefix,
                                               "dry_run": True})
    except CliError as exc:
        print(f"imagedrop: {bucket}/{prefix}: {exc}", file=sys.stderr)
        return 1
    print(f"{bucket}/{prefix}: {est['images']} images: {est['to_edit']} to edit, "
          f"{est['already_done']} already done, {est['skipped']} skipped")
    unpriced = est.get("unpriced_models") or []
    note = f"; not in the price table (counted at 0): {', '.join(unpriced)}" if unpriced else ""
    print(f"estimated cost: US${est['estimated_cost_usd']:.4f} "
          f"(prices as of {est['prices_as_of']}{note})")
    return 0
