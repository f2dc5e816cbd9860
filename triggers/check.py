#!/usr/bin/env python3
"""Check, from your own machine, what a notification setup can be checked for before the store
is wired: imagedrop answers, accepts each producer's notification shape with your intake token,
answers MinIO's HEAD probe, and refuses a notification without the token.

Standard library only, so it runs anywhere Python 3.11 does:

    python3 triggers/check.py --url https://imagedrop.example.com --token "$IMAGEDROP_INTAKE_TOKEN"

The notifications name `imagedrop-check/probe.txt` by default: not an image, so imagedrop
acknowledges it and starts nothing. Pass `--key` with an image in a governed folder (and its
`--etag`) to check the whole path; every producer after the first is then a harmless duplicate.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import quote, quote_plus, urlencode

TIME = "2026-11-20T09:14:03.120Z"
Request = tuple[dict[str, str], bytes, dict[str, str]]  # headers, body, query


# -- what each producer sends (shapes as in tests/samples/events/) ------------------------------

def _s3_record(source: str, bucket: str, key: str, etag: str, size: int, *,
               event_name: str, encode: bool) -> dict[str, object]:
    """One S3-style record; AWS and MinIO form-encode the key, Ceph sends it raw."""
    return {
        "eventVersion": "2.1", "eventSource": source, "awsRegion": "", "eventTime": TIME,
        "eventName": event_name, "userIdentity": {"principalId": "imagedrop-check"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "IMAGEDROPCHECK01", "x-amz-id-2": "check"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "imagedrop",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/") if encode else key,
                       "size": size if encode else str(size), "eTag": etag,
                       "sequencer": "0055AED6DCD90281E5"},
        },
    }


def code_engine(bucket: str, key: str, etag: str, size: int, token: str) -> Request:
    """IBM Code Engine COS subscription: CloudEvents binary mode, token as `ce-token`."""
    headers = {
        "Content-Type": "application/json", "ce-specversion": "1.0",
        "ce-id": "imagedrop-check-0001", "ce-time": TIME, "ce-subject": key,
        "ce-type": "com.ibm.cloud.cos.document.write",
        "ce-source": f"https://cloud.ibm.com/catalog/services/cloud-object-storage/{bucket}",
    }
    if token:
        headers["ce-token"] = token
    body = {"bucket": bucket, "endpoint": "", "key": key, "operation": "Object:Write",
            "notification": {
                "bucket_name": bucket, "content_type": "application/octet-stream",
                "event_type": "Object:Write", "format": "2.0", "object_etag": etag,
                "object_length": str(size), "object_name": key,
                "request_id": "imagedrop-check-0001", "request_time": TIME}}
    return headers, json.dumps(body).encode(), {}


def minio(bucket: str, key: str, etag: str, size: int, token: str) -> Request:
    """MinIO webhook target: `auth_token` arrives as `Authorization: Bearer`."""
    record = _s3_record("minio:s3", bucket, key, etag, size, event_name="s3:ObjectCreated:Put",
                        encode=True)
    body = {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [record]}
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers, json.dumps(body).encode(), {}


def ceph(bucket: str, key: str, etag: str, size: int, token: str) -> Request:
    """Ceph RGW HTTP push endpoint: raw keys, size as a string, token in the topic's URL."""
    record = _s3_record("ceph:s3", bucket, key, etag, size, event_name="ObjectCreated:Put",
                        encode=False)
    record.update(eventId="1700000000.123.imagedrop-check", opaqueData="")
    return ({"Content-Type": "application/json"}, json.dumps({"Records": [record]}).encode(),
            {"token": token} if token else {})


def aws_sns(bucket: str, key: str, etag: str, size: int, token: str) -> Request:
    """Amazon SNS HTTPS subscription: the S3 event inside the envelope's `Message`."""
    record = _s3_record("aws:s3", bucket, key, etag, size, event_name="ObjectCreated:Put",
                        encode=True)
    topic = "arn:aws:sns:us-east-1:123456789012:imagedrop"
    envelope = {
        "Type": "Notification", "MessageId": "00000000-0000-4000-8000-imagedropchk",
        "TopicArn": topic, "Subject": "Amazon S3 Notification",
        "Message": json.dumps({"Records": [record]}), "Timestamp": TIME,
        "SignatureVersion": "1", "Signature": "not-checked-by-imagedrop",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    headers = {"Content-Type": "text/plain; charset=UTF-8",
               "x-amz-sns-message-type": "Notification", "x-amz-sns-topic-arn": topic}
    return headers, json.dumps(envelope).encode(), {"token": token} if token else {}


def aws_eventbridge(bucket: str, key: str, etag: str, size: int, token: str) -> Request:
    """EventBridge API destination: its connection's API key arrives as `X-API-Key`."""
    event = {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": TIME, "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": size, "etag": etag,
                              "sequencer": "00617F08299329D189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                   "source-ip-address": "127.0.0.1", "reason": "PutObject"},
    }
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-API-Key"] = token
    return headers, json.dumps(event).encode(), {}


PRODUCERS: dict[str, Callable[[str, str, str, int, str], Request]] = {
    "code-engine": code_engine, "minio": minio, "ceph": ceph, "aws-sns": aws_sns,
    "aws-eventbridge": aws_eventbridge,
}


# -- talking to imagedrop -------------------------------------------------------------------------

@dataclass
class Check:
    """One verdict: what was checked, whether it passed, and what imagedrop said."""

    name: str
    ok: bool
    detail: str


def _send(method: str, url: str, headers: dict[str, str], body: bytes | None,
          timeout: float) -> tuple[int, bytes]:
    """(status, body); status 0 when there was no HTTP answer at all (body says why)."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:  # refused, unreachable, TLS, timeout
        return 0, str(getattr(exc, "reason", exc)).encode()


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:200]
    except (ValueError, AttributeError):  # not imagedrop's JSON error, or no answer at all
        return body[:200].decode("utf-8", "replace")


def _verdict(producer: str, status: int, body: bytes, bucket: str, key: str) -> Check:
    """Accepted means 200 and imagedrop naming our object: recorded, duplicate or ignored."""
    if status != 200:
        return Check(producer, False, f"POST /events -> {status}: {_error_text(body)}")
    try:
        answer = json.loads(body)
    except ValueError:
        return Check(producer, False, "200 but not imagedrop's JSON answer: is this imagedrop?")
    if answer.get("recorded"):
        return Check(producer, True, f"200: recorded {len(answer['recorded'])} new job(s)")
    if answer.get("duplicates"):
        return Check(producer, True, "200: a duplicate of a job already recorded (harmless)")
    wanted = f"{bucket}/{key}"
    for item in answer.get("ignored", []):
        if item.get("object") == wanted:
            return Check(producer, True, f"200: {wanted} acknowledged, {item.get('reason')}")
    return Check(producer, False, f"200 but {wanted} is not in the answer: {answer}")


def run_checks(url: str, token: str, *, bucket: str, key: str, etag: str, size: int,
               producers: list[str], timeout: float = 15.0) -> list[Check]:
    """Every check against the imagedrop at `url`, in order; never raises on HTTP errors."""
    base = url.rstrip("/")
    checks: list[Check] = []
    status, body = _send("GET", base + "/health", {}, None, timeout)
    if status == 0:  # nothing else makes sense without a service
        return [Check("health", False, f"GET /health failed: {body.decode()}")]
    checks.append(Check("health", status == 200, f"GET /health -> {status}"))

    auth = {"Authorization": f"Bearer {token}"} if token else {}
    status, _ = _send("HEAD", base + "/events", auth, None, timeout)
    checks.append(Check("minio-probe", status == 200, f"HEAD /events -> {status}"))

    for name in producers:
        headers, body, query = PRODUCERS[name](bucket, key, etag, size, token)
        target = base + "/events" + ("?" + urlencode(query) if query else "")
        status, answer = _send("POST", target, headers, body, timeout)
        checks.append(_verdict(name, status, answer, bucket, key))

    if token:  # the same notification without the token must be refused
        headers, body, _ = code_engine(bucket, key, etag, size, "")
        status, answer = _send("POST", base + "/events", headers, body, timeout)
        checks.append(Check("token-enforced", status == 401,
                            f"POST /events without the token -> {status}"
                            + ("" if status == 401 else ": set IMAGEDROP_INTAKE_TOKEN")))
    return checks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="imagedrop's base URL")
    parser.add_argument("--token", default="", help="the intake token (IMAGEDROP_INTAKE_TOKEN)")
    parser.add_argument("--bucket", default="imagedrop", help="bucket the notifications name")
    parser.add_argument("--key", default="imagedrop-check/probe.txt", help="object key")
    parser.add_argument("--etag", default="0123456789abcdef0123456789abcdef")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--producer", action="append", choices=sorted(PRODUCERS),
                        help="check only these producers (repeatable; default: all)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print one line per check; exit 0 when every check passed, 1 otherwise."""
    args = _parser().parse_args(argv)
    checks = run_checks(args.url, args.token, bucket=args.bucket, key=args.key,
                        etag=args.etag, size=args.size,
                        producers=args.producer or list(PRODUCERS))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        # Never print the token: the URL is shown without any query string.
        print(f"imagedrop at {quote(args.url.split('?')[0], safe=':/')}")
        for check in checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name:<16} {check.detail}")
        passed = sum(c.ok for c in checks)
        print(f"{passed} of {len(checks)} checks passed")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
