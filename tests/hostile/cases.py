"""The hostile cases: generated requests, files, manifests and notifications, each with what a
correct imagedrop must answer (a clear 4xx JSON, or work that ends with a reason)."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.fixtures import images
from tests.hostile.harness import BUCKET, HOOK_SECRET, INTAKE_TOKEN, Answer, Target

WXO = ("/process-image-async-b64", "/process-image-async", "/batch-process-images")
JSON_ROUTES = (*WXO, "/trigger", "/replay", "/subscribers/disable")
TOKEN = {"Authorization": f"Bearer {INTAKE_TOKEN}"}


@dataclass(frozen=True)
class Case:
    """One attack and its check; `local_only` ones need the local folder."""

    id: str
    run: Callable[[Target], None]
    local_only: bool = False


def refused(answer: Answer, *statuses: int) -> dict[str, Any]:
    """A clear 4xx JSON error saying what was wrong (one of `statuses` when given)."""
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    if statuses:
        assert answer.status in statuses, (answer.status, answer.body[:300])
    assert answer.headers.get("Content-Type", "").startswith("application/json"), answer.headers
    doc = answer.json()
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    assert "/tmp/" not in doc["error"] and "Traceback" not in doc["error"], doc
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _post(route: str, body: bytes, ctype: str = "application/json",
          extra: dict[str, str] | None = None) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        refused(t.request("POST", route, body=body,
                          headers={"Content-Type": ctype, "callbackUrl": t.receiver.url,
                                   **(extra or {})}))
    return run


# -- request bodies -------------------------------------------------------------------------
BAD_BODIES: dict[str, bytes] = {
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "deep-in-field": b'{"prompt": "x", "image_base64": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not-utf8": b'{"prompt": "\xff\xfe caf\xe9"}',
    "utf16": '{"prompt": "x"}'.encode("utf-16"),
    "lone-surrogate": b'{"prompt": "\\ud800", "prefix": "a/"}',
    "surrogate-key": b'{"\\udfff": 1}',
    "nan": b'{"prompt": NaN}',
    "infinity": b'{"limit": Infinity}',
    "truncated": b'{"prompt": "x", "image_base64": "iVBO',
    "empty": b"",
    "null": b"null",
    "array": b"[1, 2, 3]",
    "string": b'"just a string"',
    "number": b"12345678901234567890123456789",
    "nul-bytes": b'{"prompt": "a\x00b"}',
    "trailing-garbage": b'{"prompt": "x"} {"prompt": "y"}',
    "wrong-types": b'{"prompt": 5, "image_base64": [], "prefix": {}, "bucket": true}',
    "huge-number": b'{"limit": 1e999999}',
}


def body_cases() -> Iterator[Case]:
    for route in JSON_ROUTES:
        for name, body in BAD_BODIES.items():
            yield Case(f"body-{name}{route.replace('/', '-')}", _post(route, body))
    for route in WXO:
        yield Case(f"content-type-xml{route.replace('/', '-')}",
                   _post(route, b"<x/>", "application/xml"))
    yield Case("events-deep", lambda t: refused(t.request(
        "POST", "/events", body=b"[" * 20_000, headers=TOKEN), 400))
    yield Case("events-not-utf8", lambda t: refused(t.request(
        "POST", "/events", body=b'{"Records": "\xff"}', headers=TOKEN), 400))
    yield Case("events-surrogate", lambda t: refused(t.request(
        "POST", "/events", body=b'{"Records": [{"s3": "\\ud800"}]}', headers=TOKEN), 400))


# -- names and keys -------------------------------------------------------------------------
BAD_PREFIXES = ["../", "../../etc/", "a//b/", "a/../../", "a/./b/", "/..", "a\x00b/", "a\nb/",
                "\x7f/", "a/" * 600, "é" * 600 + "/", "a/\udc80/"]
LOCAL_BAD_PREFIXES = [".hidden/", "a\\b/", ".imagedrop-meta/", "x/.git/"]
BAD_BUCKETS = ["..", ".", "../etc", "a/b", "a\x00b", " ", "x" * 300, ".imagedrop-meta",
               "a\\b", "\u202e"]


def _trigger(prefix: str, bucket: str | None = None) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        body: dict[str, Any] = {"prefix": prefix, "prompt": "x"}
        if bucket is not None:
            body["bucket"] = bucket
        raw = json.dumps(body).encode()
        answer = t.request("POST", "/trigger", body=raw,
                           headers={"Content-Type": "application/json"})
        if answer.status == 202:  # an odd but legal folder name (local mode): lists nothing
            _finished_empty(t, answer.json()["batch_id"])
            return
        doc = refused(answer, 400, 422)
        assert "\x00" not in doc["error"]
    return run


def _replay(t: Target, prefix: str) -> None:
    """Refused, or (a name S3 allows, e.g. a partial '..') harmlessly matching nothing."""
    answer = t.request("POST", "/replay", json_body={"prefix": prefix})
    if answer.status == 200:
        assert answer.json()["requeued"] == 0
    else:
        refused(answer, 400, 422)


def _batch(**fields: str) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        answer = t.request("POST", "/batch-process-images", json_body={"prompt": "x", **fields},
                           headers={"callbackUrl": t.receiver.url})
        if answer.status == 202:  # an odd but legal folder name (local mode): lists nothing
            _finished_empty(t, answer.json()["job_id"])
            return
        refused(answer, 400, 422)
    return run


def _finished_empty(t: Target, batch_id: str) -> None:
    doc = t.wait(lambda: _batch_done(t, batch_id), 30, f"batch {batch_id}")
    assert doc["progress"]["completed"] == 0, doc


def _batch_done(t: Target, batch_id: str) -> dict[str, Any] | None:
    answer = t.request("GET", f"/jobs/{batch_id}")
    doc = answer.json() if answer.status == 200 else None
    return doc if doc and doc["state"] == "finished" else None


def name_cases() -> Iterator[Case]:
    for i, prefix in enumerate(BAD_PREFIXES):
        yield Case(f"trigger-prefix-{i}", _trigger(prefix))
        yield Case(f"batch-prefix-{i}", _batch(prefix=prefix, output_prefix="out/"))
        yield Case(f"batch-output-prefix-{i}", _batch(prefix="in/", output_prefix=prefix))
        yield Case(f"replay-prefix-{i}", lambda t, p=prefix: _replay(t, p))
    for i, prefix in enumerate(LOCAL_BAD_PREFIXES):
        yield Case(f"trigger-local-prefix-{i}", _trigger(prefix), local_only=True)
    for i, bucket in enumerate(BAD_BUCKETS):
        yield Case(f"trigger-bucket-{i}", _trigger("a/", bucket))
        yield Case(f"batch-bucket-{i}", _batch(bucket=bucket, output_prefix="out/"))
        yield Case(f"batch-output-bucket-{i}", _batch(output_bucket=bucket, output_prefix="o/"))


FILENAMES = ["é" * 100 + ".png", "../../etc/passwd",
             "..", ".", "/abs/x.png", "a/b/../../c.png", "nul\x00.png",
             "line\nbreak.png", "C:\\Windows\\x.png", "\u202egnp.exe", "名前.png", "x" * 240,
             "x" * 240 + ".png", "é" * 200 + ".png", "x" * 5000, ".hidden.png", "%2e%2e%2f.png"]


#: Long but legal names: these must work, not fail later on a file-system limit.
MUST_WORK = {"x" * 240, "x" * 240 + ".png", "名前.png", "é" * 100 + ".png"}


def _image_job(filename: str) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        answer = t.request("POST", "/process-image-async",
                           json_body={"prompt": "x", "filename": filename,
                                      "image_base64": _b64(images.tiny_png())},
                           headers={"callbackUrl": t.receiver.url})
        if filename in MUST_WORK:
            assert answer.status == 202, answer
        if answer.status != 202:
            refused(answer, 400, 422)
            return
        job = t.wait_job(answer.json()["job_id"])
        if filename in MUST_WORK:
            assert job["state"] == "completed", job
        if job["state"] == "failed":
            assert job["error"] and "/tmp/" not in job["error"], job
    return run


def filename_cases() -> Iterator[Case]:
    for i, name in enumerate(FILENAMES):
        yield Case(f"filename-{i}", _image_job(name))


# -- headers and the HTTP layer -------------------------------------------------------------
def _raw(data: bytes, *statuses: int) -> Callable[[Target], None]:
    return lambda t: refused(t.raw(data), *statuses)



def http_cases() -> Iterator[Case]:
    get = "GET /health HTTP/1.1\r\nHost: x\r\n"
    yield Case("header-too-large", _raw((get + "X-Big: " + "a" * 20_000 + "\r\n\r\n").encode(),
                                        431))
    yield Case("header-name-too-large", _raw((get + "X" * 20_000 + ": a\r\n\r\n").encode(),
                                             431))
    yield Case("too-many-headers", _raw((get + "".join(f"X-{i}: a\r\n" for i in range(500))
                                         + "\r\n").encode(), 431))
    yield Case("url-too-long", _raw(("GET /" + "a" * 20_000 + " HTTP/1.1\r\nHost: x\r\n\r\n"
                                     ).encode(), 414))
    yield Case("garbage", _raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)))
    yield Case("bad-method", _raw(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400))
    yield Case("bad-version", _raw(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"))
    yield Case("space-in-header-name", _raw(b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n", 400))
    yield Case("nul-in-header", _raw(b"GET /health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400))
    yield Case("two-content-lengths", _raw(
        b"POST /trigger HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n"
        b"\r\n{}", 400))
    yield Case("bad-chunk-size", _raw(
        b"POST /trigger HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"
        b"0\r\n\r\n", 400))
    yield Case("cl-and-te", _raw(
        b"POST /trigger HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: "
        b"chunked\r\n\r\n0\r\n\r\n", 400))
    not_gzip = b'{"prefix": "a/"}'
    for name, body in {"not-gzip": not_gzip, "truncated-gzip": gzip.compress(not_gzip)[:12],
                       "zlib-as-gzip": zlib.compress(not_gzip)}.items():
        for route in ("/trigger", "/events", "/process-image-async-b64"):
            yield Case(f"{name}{route.replace('/', '-')}", lambda t, b=body, r=route: refused(
                t.request("POST", r, body=b, headers={
                    "Content-Type": "application/json", "Content-Encoding": "gzip",
                    "callbackUrl": t.receiver.url, **TOKEN} if r == "/events" else {
                    "Content-Type": "application/json", "Content-Encoding": "gzip",
                    "callbackUrl": t.receiver.url}), 400))
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MB of spaces in ~64 KB
    yield Case("gzip-bomb-wxo", lambda t: refused(t.request(
        "POST", "/process-image-async-b64", body=bomb, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip",
            "callbackUrl": t.receiver.url}), 400, 413))
    yield Case("gzip-bomb-events", lambda t: refused(t.request(
        "POST", "/events", body=bomb, headers={"Content-Encoding": "gzip", **TOKEN}), 400, 413))
    yield Case("body-over-limit", lambda t: refused(t.request(
        "POST", "/process-image-async-b64", body=b"x" * (5 * 1024 * 1024),
        headers={"Content-Type": "application/json", "callbackUrl": t.receiver.url}), 413))
    yield Case("request-id-hostile", lambda t: _request_id(t))


def _request_id(t: Target) -> None:
    answer = t.request("GET", "/health", headers={"X-Request-Id": "a\tb PLANTED " + "x" * 500})
    assert answer.status == 200 and "PLANTED" not in answer.headers.get("X-Request-Id", "")


# -- auth ------------------------------------------------------------------------------------
def auth_cases() -> Iterator[Case]:
    for i, value in enumerate(["", "Bearer", "Bearer ", "Bearer wrong", "Basic YTpi",
                               "Bearer " + "k" * 10_000, "Bearer ak-PLANTED-apikey-7f3a9c2",
                               "bearer\tak"]):
        yield Case(f"auth-{i}", lambda t, v=value: refused(t.request(
            "POST", "/trigger", json_body={"prefix": "a/"}, auth=False,
            headers={"Authorization": v} if v else {}), 401, 431))
    yield Case("auth-api-key-in-query", lambda t: refused(t.request(
        "GET", "/jobs?key=ak-PLANTED-apikey-7f3a9c21", auth=False), 401))
    yield Case("events-no-token", lambda t: refused(t.request(
        "POST", "/events", json_body={"Records": []}, auth=False), 401))
    yield Case("events-wrong-token-query", lambda t: refused(t.request(
        "POST", "/events?token=wrong-PLANTED", json_body={"Records": []}, auth=False), 401))
    yield Case("events-head-no-token", lambda t: _status(t.request(
        "HEAD", "/events", auth=False), 401))
    yield Case("events-head-token", lambda t: _status(t.request(
        "HEAD", "/events", auth=False, headers=TOKEN), 200))


def _status(answer: Answer, status: int) -> None:
    assert answer.status == status, answer


# -- callbacks (SSRF) ------------------------------------------------------------------------
CALLBACKS = ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
             "http://169.254.170.2/v2/credentials", "file:///etc/passwd", "gopher://x:70/_",
             "ftp://x/", "javascript:alert(1)", "http://", "http://[::ffff:169.254.169.254]/",
             "http://0xa9fea9fe/", "http://user:PLANTED@169.254.169.254/",
             "https://x.invalid/" + "a" * 10_000, "\x00http://x/", "http://x y/"]


def callback_cases() -> Iterator[Case]:
    for i, url in enumerate(CALLBACKS):
        for route in ("/process-image-async-b64", "/batch-process-images"):
            yield Case(f"callback-{i}{route.replace('/', '-')}", lambda t, u=url, r=route:
                       refused(t.request("POST", r, json_body={
                           "prompt": "x", "image_base64": _b64(images.tiny_png())},
                           headers={"callbackUrl": u} if "\x00" not in u else {
                               "callbackUrl": u.replace("\x00", "%00")})))
    yield Case("callback-redirects-to-metadata", _redirecting_callback)
    yield Case("callback-missing", lambda t: refused(t.request(
        "POST", "/process-image-async-b64",
        json_body={"prompt": "x", "image_base64": _b64(images.tiny_png())})))


def _redirecting_callback(t: Target) -> None:
    """A receiver answering 302 to the metadata address: not followed, the delivery fails."""
    answer = t.request("POST", "/process-image-async-b64",
                       json_body={"prompt": "x", "image_base64": _b64(images.tiny_png())},
                       headers={"callbackUrl": t.receiver.url + "/redirect"})
    assert answer.status == 202, answer
    job_id = answer.json()["job_id"]

    def final() -> dict[str, Any] | None:
        doc = t.request("GET", f"/jobs/{job_id}").json()
        done = doc["deliveries"] and all(d["state"] != "pending" for d in doc["deliveries"])
        return doc if done else None

    doc = t.wait(final, 30, "the callback to end")
    assert [d["state"] for d in doc["deliveries"]] == ["failed"], doc


# -- images ----------------------------------------------------------------------------------
def _polyglot() -> bytes:
    return images.tiny_png() + b"PK\x03\x04" + bytes(200)


IMAGE_INPUTS: dict[str, str] = {
    "not-base64": "!!!not base64!!!",
    "empty": "",
    "base64-of-text": _b64(b"hello world"),
    "bomb-png": _b64(images.png_header_only_huge(20000, 20000)),
    "pdf": _b64(images.NOT_IMAGES["pdf"][0]),
    "svg": _b64(images.NOT_IMAGES["svg"][0]),
    "html": _b64(images.NOT_IMAGES["html"][0]),
    "zip": _b64(images.NOT_IMAGES["zip"][0]),
    "data-url-wrong-type": "data:text/html;base64," + _b64(b"<script>"),
    "base64-with-newlines": "\n".join(_b64(b"x" * 300)[i:i + 10] for i in range(0, 400, 10)),
}
IMAGES_THAT_MAY_WORK: dict[str, str] = {
    "animated-gif": _b64(images.gif_animated()),
    "truncated-jpeg": _b64(images.truncated_jpeg()),
    "exif-jpeg": _b64(images.jpeg_with_orientation(6)),
    "polyglot": _b64(_polyglot()),
    "cmyk": _b64(images.cmyk_jpeg()),
    "data-url": "data:image/png;base64," + _b64(images.tiny_png()),
}


def _image(text: str, must_refuse: bool) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        answer = t.request("POST", "/process-image-async-b64",
                           json_body={"prompt": "x", "image_base64": text},
                           headers={"callbackUrl": t.receiver.url})
        if must_refuse or answer.status != 202:
            refused(answer)
            return
        job = t.wait_job(answer.json()["job_id"])
        assert job["state"] == "completed" or job["error"], job
    return run


def image_cases() -> Iterator[Case]:
    for name, text in IMAGE_INPUTS.items():
        yield Case(f"image-{name}", _image(text, True))
    for name, text in IMAGES_THAT_MAY_WORK.items():
        yield Case(f"image-{name}", _image(text, False))


# -- notifications ---------------------------------------------------------------------------
def _s3_event(key: str, bucket: str = BUCKET, size: Any = 10) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket},
                                "object": {"key": key, "eTag": "e1", "size": size}}}]}


EVENT_KEYS = ["..%2F..%2Fetc%2Fpasswd", "a%00b.png", "a%2F..%2F..%2Fb.png", "%2Fabs.png",
              "a//b.png", "x" * 5000 + ".png", "%C3%28.png", "%ED%A0%80.png", "a+b%0A.png",
              ".hidden.png", "a%5Cb.png", "%2E%2E"]
MALFORMED_EVENTS: dict[str, Any] = {
    "records-not-list": {"Records": "x"},
    "record-not-object": {"Records": [1]},
    "no-s3": {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]},
    "size-string": _s3_event("a.png", size="lots"),
    "size-negative": _s3_event("a.png", size=-5),
    "bucket-traversal": _s3_event("a.png", bucket=".."),
    "bucket-number": {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                   "s3": {"bucket": {"name": 5}, "object": {"key": "a"}}}]},
    "sns-message-not-json": {"Type": "Notification", "MessageId": "m", "TopicArn": "t",
                             "Message": "{not json", "Timestamp": "2026-11-26T00:00:00Z"},
    "sns-subscribe-foreign": {"Type": "SubscriptionConfirmation", "MessageId": "m",
                              "Token": "t" * 20, "TopicArn": "arn:aws:sns:us-east-1:1:x",
                              "Message": "c", "SubscribeURL": "http://169.254.169.254/",
                              "Timestamp": "2026-11-26T00:00:00Z"},
    "eventbridge-bad": {"source": "aws.s3", "detail-type": "Object Created",
                        "detail": {"bucket": "x", "object": []}},
    "cloudevent-structured-bad": {"specversion": "1.0", "type": "com.ibm.cloud.cos.document"
                                  ".write", "data_base64": "!!!"},
    "unknown-shape": {"hello": "world"},
    "huge-records": {"Records": [{"x": "y" * 100}] * 2000},
}


def _events(body: Any, ctype: str = "application/json",
            extra: dict[str, str] | None = None) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = t.request("POST", "/events", body=raw, auth=False,
                           headers={"Content-Type": ctype, **TOKEN, **(extra or {})})
        if answer.status == 200:
            doc = answer.json()
            assert doc["recorded"] == [], doc  # nothing hostile becomes a job
            for item in doc["ignored"]:
                assert "/tmp/" not in item["reason"], item
        else:
            refused(answer, 400, 413)
    return run


def event_cases() -> Iterator[Case]:
    for i, key in enumerate(EVENT_KEYS):
        yield Case(f"event-key-{i}", _events(_s3_event(key)))
    for name, body in MALFORMED_EVENTS.items():
        yield Case(f"event-{name}", _events(body))
    yield Case("event-binary-ce-bad-data", _events(
        b"{bad", "application/json", {"ce-specversion": "1.0", "ce-type":
                                      "com.ibm.cloud.cos.document.write", "ce-id": "1",
                                      "ce-source": "x"}))
    yield Case("event-ce-structured-not-json", _events(b"{", "application/cloudevents+json"))
    yield Case("event-symlinked-input", _symlinked_event, local_only=True)
    yield Case("symlinked-output-folder", _symlinked_output, local_only=True)
    yield Case("event-oversized", lambda t: refused(t.request(
        "POST", "/events", body=b" " * (65 * 1024), auth=False, headers=TOKEN), 413))
    yield Case("event-oversized-chunked", lambda t: refused(t.request(
        "POST", "/events", body=iter([b" " * 16384] * 5), auth=False, headers=TOKEN), 413))


def _symlinked_event(t: Target) -> None:
    """A notification naming a symlink to a file outside the data folder reads nothing."""
    (t.outside / "secret.png").write_bytes(images.tiny_png())
    t.put("linked/imagedrop.yaml", b"prompt: x\noutput: {prefix: linked-out/}\n")
    link = t.data_dir / BUCKET / "linked" / "in.png"
    link.unlink(missing_ok=True)
    link.symlink_to(t.outside / "secret.png")
    answer = t.request("POST", "/events", json_body=_s3_event("linked/in.png"), auth=False,
                       headers=TOKEN)
    assert answer.status == 200, answer
    for job_id in answer.json()["recorded"]:  # recorded from the event's own ETag: it fails
        job = t.wait_job(job_id)
        assert job["state"] == "failed" and "symbolic link" in job["error"], job


def _symlinked_output(t: Target) -> None:
    """A folder whose output folder is a link out of the data folder: results are not written
    through it; the job fails saying why."""
    t.put("outlink/imagedrop.yaml", b"prompt: x\noutput: {prefix: outlink-results/}\n")
    t.put("outlink/in.png", images.tiny_png())
    link = t.data_dir / BUCKET / "outlink-results"
    if not link.is_symlink():
        link.symlink_to(t.outside)
    answer = t.request("POST", "/trigger", json_body={"prefix": "outlink/", "bucket": BUCKET})
    assert answer.status == 202, answer
    jobs = t.wait(lambda: _batch_jobs_final(t, answer.json()["batch_id"]), 30, "the batch")
    assert jobs and all(j["state"] == "failed" for j in jobs), jobs
    for job in jobs:
        detail = t.request("GET", f"/jobs/{job['id']}").json()
        assert "symbolic link" in detail["error"] and "/tmp/" not in detail["error"], detail


# -- manifests -------------------------------------------------------------------------------
MANIFESTS: dict[str, bytes] = {
    "literal-secret": f"prompt: x\nsubscribers:\n  - url: https://h.example.com/\n"
                      f"    secret: {HOOK_SECRET}\n".encode(),
    "foreign-secret-name": b"prompt: x\nsubscribers:\n  - url: {receiver}\n"
                           b"    secret: env:COS_SECRET_ACCESS_KEY\n",
    "env-secret-name": b"prompt: x\nsubscribers:\n  - url: {receiver}\n"
                       b"    secret: env:OPENAI_API_KEY\n",
    "metadata-subscriber": b"prompt: x\nsubscribers:\n  - url: http://169.254.169.254/\n",
    "alias-bomb": b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                  b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                  b"prompt: *f\n",
    "deep-yaml": b"prompt: x\nextra: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "python-tag": b"prompt: !!python/object/apply:os.system ['true']\n",
    "binary": bytes(range(256)) * 4,
    "output-traversal": b"prompt: x\noutput: {prefix: ../../outside/}\n",
    "output-bucket-traversal": b"prompt: x\noutput: {bucket: '..', prefix: o/}\n",
    "template-traversal": b"prompt: x\noutput: {prefix: o/, name: '../../{name}'}\n",
}


def _manifest(name: str, text: bytes) -> Callable[[Target], None]:
    def run(t: Target) -> None:
        folder = f"m-{name}/"
        t.put(folder + "imagedrop.yaml", text.replace(b"{receiver}", t.receiver.url.encode()))
        sent_before = t.receiver.count
        t.put(folder + "in.png", images.tiny_png())
        answer = t.request("POST", "/trigger", json_body={"prefix": folder, "bucket": BUCKET})
        if answer.status != 202:
            refused(answer, 400, 422)
            return
        batch = answer.json()["batch_id"]
        jobs = t.wait(lambda: _batch_jobs_final(t, batch), 30, f"batch {batch}")
        for job in jobs:
            assert job["state"] == "completed" or job.get("error"), job
        if b"{receiver}" in text:  # signing with a variable not meant for it: never sent
            deliveries = t.wait(lambda: _webhooks_final(t, jobs[0]["id"]), 30, "deliveries")
            assert deliveries and all(d["state"] == "failed" and "not allowed" in
                                      (d["last_error"] or "") for d in deliveries), deliveries
            assert t.receiver.count == sent_before
    return run


def _webhooks_final(t: Target, job_id: str) -> list[dict[str, Any]] | None:
    doc = t.request("GET", f"/jobs/{job_id}").json()
    hooks = [d for d in doc["deliveries"] if d["kind"] == "webhook"]
    return hooks if hooks and all(d["state"] != "pending" for d in hooks) else None


def _batch_jobs_final(t: Target, batch: str) -> list[dict[str, Any]] | None:
    if _batch_done(t, batch) is None:
        return None
    answer = t.request("GET", f"/jobs?batch_id={batch}&limit=100")
    items = answer.json()["items"] if answer.status == 200 else []
    if any(i["state"] not in ("completed", "failed", "skipped") for i in items):
        return None
    return items or [{"state": "completed"}]


def manifest_cases() -> Iterator[Case]:
    for name, text in MANIFESTS.items():
        yield Case(f"manifest-{name}", _manifest(name, text))


# -- signed links ----------------------------------------------------------------------------
def files_cases() -> Iterator[Case]:
    paths = ["/files/imagedrop-test/a.png?expires=9999999999&sig=00",
             "/files/imagedrop-test/a.png?expires=1&sig=" + "0" * 64,
             "/files/imagedrop-test/a.png?expires=-1&sig=x",
             "/files/imagedrop-test/a.png?expires=99999999999999999999999&sig=x",
             "/files/imagedrop-test/a.png?expires=9999999999&sig=%C3%A9",
             "/files/imagedrop-test/../../etc/passwd?expires=9999999999&sig=x",
             "/files/..%2F..%2Fetc/passwd?expires=9999999999&sig=x",
             "/files/imagedrop-test/%00.png?expires=9999999999&sig=x",
             "/files/imagedrop-test/a.png"]
    for i, path in enumerate(paths):
        yield Case(f"files-{i}", lambda t, p=path: refused(t.request("GET", p, auth=False),
                                                            400, 401, 403, 404))
    yield Case("files-upper-case-sig", _upper_sig, local_only=True)


def _upper_sig(t: Target) -> None:
    """The right signature opens the link; the same signature upper-cased does not."""
    from imagedrop.storage.urlsign import sign_download

    key = (t.data_dir / ".imagedrop-url-key").read_text().strip().encode()
    t.put("signed/a.png", images.tiny_png())
    sig = sign_download(key, BUCKET, "signed/a.png", 9999999999)
    path = f"/files/{BUCKET}/signed/a.png?expires=9999999999&sig="
    assert t.request("GET", path + sig, auth=False).status == 200
    refused(t.request("GET", path + sig.upper(), auth=False), 403)


def all_cases() -> list[Case]:
    return [*body_cases(), *name_cases(), *filename_cases(), *http_cases(), *auth_cases(),
            *callback_cases(), *image_cases(), *event_cases(), *manifest_cases(),
            *files_cases()]
