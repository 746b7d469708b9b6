#!/usr/bin/env python3
"""A tiny webhook receiver for lti2 (standard library only).

    python3 examples/webhook_receiver.py PORT SHARED_SECRET

Prints one line per message and whether its signature verifies: X-Lti2-Signature is
"v1=" + hex HMAC-SHA256(shared secret, X-Lti2-Timestamp + "." + body). Answers 200.
"""
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, SECRET = int(sys.argv[1]), sys.argv[2].encode()


def verified(headers, body: bytes, max_age: int = 300) -> bool:
    ts = headers.get("X-Lti2-Timestamp", "")
    mac = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) <= max_age
    return fresh and hmac.compare_digest("v1=" + mac, headers.get("X-Lti2-Signature", ""))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        msg = json.loads(body)
        print(msg["metadata"]["event_name"], "event", self.headers.get("X-Lti2-Event-Id"),
              "submission", msg["body"].get("submission_id"), "attempt", msg["body"].get("attempt"),
              "signature", "ok" if verified(self.headers, body) else "BAD", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
