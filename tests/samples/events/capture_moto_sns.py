"""Record what moto's S3 → SNS → HTTP chain really POSTs, into tests/samples/events/sns/.

Run by hand (`.venv/bin/python tests/samples/events/capture_moto_sns.py`); the tests only read the
files it writes. Everything runs on loopback with free ports and is stopped before exiting.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import boto3
from moto.server import ThreadedMotoServer

OUT = Path(__file__).parent / "sns"
BUCKET = "imagedrop-photos"
# Keys chosen to exercise encoding: a space, a literal plus, a non-ASCII letter, a folder.
KEYS = ["photos/food/burger.jpg", "photos/food/red burger+fries é.jpg"]
# Headers whose values change on every run or only describe the connection.
_VOLATILE = {"host", "content-length", "connection", "accept-encoding"}


def _receiver(inbox: queue.Queue) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            inbox.put((self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the console quiet
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _save(case: str, path: str, headers: dict[str, str], body: bytes) -> None:
    kept = {k: v for k, v in headers.items() if k.lower() not in _VOLATILE}
    (OUT / f"{case}.json").write_bytes(body)
    (OUT / f"{case}.headers.json").write_text(json.dumps(kept, indent=2) + "\n")
    query = dict(parse_qsl(urlsplit(path).query))
    (OUT / f"{case}.query.json").write_text(json.dumps(query, indent=2) + "\n")
    print(f"wrote {case}: {len(body)} bytes")


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    inbox: queue.Queue = queue.Queue()
    receiver = _receiver(inbox)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test",
                 "region_name": "us-east-1", "endpoint_url": endpoint}
        sns = boto3.client("sns", **creds)
        s3 = boto3.client("s3", **creds)
        topic = sns.create_topic(Name="imagedrop-events")["TopicArn"]
        target = f"http://127.0.0.1:{receiver.server_address[1]}/events?token=sample-intake-token"
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=target)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={"TopicConfigurations": [{
                "Id": "imagedrop-photos", "TopicArn": topic, "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "photos/"}]}},
            }]},
        )
        _save("s3-test-event", *inbox.get(timeout=10))
        for index, key in enumerate(KEYS):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"not really a jpeg %d" % index)
            _save(f"notification-put-{index + 1}", *inbox.get(timeout=10))
    finally:
        moto.stop()
        receiver.shutdown()
        receiver.server_close()
        thread.join(timeout=5)


if __name__ == "__main__":
    main()
