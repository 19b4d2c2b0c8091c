#!/usr/bin/env python3
"""A Consul agent stand-in for the `consul` discovery tests.

No Consul server installs on these machines (it is in no registry they reach), so the tests
use this fixture, built from the Consul HTTP API reference (agent service register and
deregister, TTL check pass, health service listing). It serves only those endpoints, with the
documented request and response shapes:

- `PUT /v1/agent/service/register`: body with `ID`, `Name`, `Address`, `Port`, `Meta` and a
  `Check` with `CheckID`, `TTL` and `DeregisterCriticalServiceAfter` (unknown top-level fields
  are refused with 400, as the agent does); 200 with an empty body.
- `PUT /v1/agent/check/pass/{check_id}`: 200; `404 Unknown check ID "..."` for a check the
  agent does not know.
- `GET /v1/health/service/{name}?passing=true&filter=Service.Meta.cluster == "x"`:
  `[{"Node": {...}, "Service": {...}, "Checks": [...]}]`, only instances whose checks are
  passing (and, with the filter, whose `Meta.cluster` matches); a TTL check not passed within
  its TTL turns critical.
- `PUT /v1/agent/service/deregister/{id}`: 200.
- With `--token T`, requests without `X-Consul-Token: T` get `403 Permission denied` (the
  wording of an ACL refusal).

Test control: `POST /_test/forget` drops every registration (an agent restart),
`GET /_test/services` lists what is registered. Prints `listening on HOST:PORT` when ready.
"""

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
services = {}  # id -> {"service": {...}, "check": {...}, "passed_at": float}
TOKEN = None

REGISTER_FIELDS = {"ID", "Name", "Tags", "Address", "Port", "Meta", "Check", "Checks",
                   "EnableTagOverride", "Weights", "TaggedAddresses", "Kind", "Namespace"}
CHECK_FIELDS = {"CheckID", "Name", "TTL", "DeregisterCriticalServiceAfter", "Status", "Notes"}


def ttl_seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text or "")
    if not m:
        raise ValueError("invalid TTL %r" % text)
    value, unit = int(m.group(1)), m.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def status_of(entry):
    return "passing" if time.time() - entry["passed_at"] <= entry["ttl"] else "critical"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", content_type="text/plain; charset=utf-8"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            content_type = "application/json"
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def allowed(self):
        if TOKEN is not None and self.headers.get("X-Consul-Token") != TOKEN:
            self.reply(403, b"Permission denied")
            return False
        return True

    def do_PUT(self):
        raw = self.read_body()
        if not self.allowed():
            return
        path = urlparse(self.path).path
        if path == "/v1/agent/service/register":
            try:
                body = json.loads(raw)
            except ValueError as e:
                return self.reply(400, ("Request decode failed: %s" % e).encode())
            extra = set(body) - REGISTER_FIELDS
            if extra:
                return self.reply(400, ("Request decode failed: unknown field %r" % sorted(extra)[0]).encode())
            check = body.get("Check") or {}
            if set(check) - CHECK_FIELDS:
                return self.reply(400, b"Request decode failed: unknown check field")
            if not body.get("Name"):
                return self.reply(400, b"Missing service name")
            try:
                ttl = ttl_seconds(check.get("TTL"))
            except ValueError as e:
                return self.reply(400, str(e).encode())
            service_id = body.get("ID") or body["Name"]
            with lock:
                services[service_id] = {
                    "service": body, "check": check, "ttl": ttl,
                    "passed_at": time.time() if check.get("Status") == "passing" else 0,
                }
            return self.reply(200)
        m = re.fullmatch(r"/v1/agent/check/pass/(.+)", path)
        if m:
            with lock:
                for entry in services.values():
                    if entry["check"].get("CheckID") == m.group(1):
                        entry["passed_at"] = time.time()
                        return self.reply(200)
            return self.reply(404, ('Unknown check ID "%s"' % m.group(1)).encode())
        m = re.fullmatch(r"/v1/agent/service/deregister/(.+)", path)
        if m:
            with lock:
                if services.pop(m.group(1), None) is None:
                    return self.reply(404, ('Unknown service ID "%s"' % m.group(1)).encode())
            return self.reply(200)
        self.reply(404, b"not found")

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_test/services":
            with lock:
                return self.reply(200, {k: {"status": status_of(v), **v["service"]}
                                        for k, v in services.items()})
        if not self.allowed():
            return
        m = re.fullmatch(r"/v1/health/service/([^/]+)", url.path)
        if not m:
            return self.reply(404, b"not found")
        query = parse_qs(url.query, keep_blank_values=True)
        passing_only = query.get("passing", ["false"])[-1] in ("true", "1", "")
        # The one filter shape Shoal sends: Service.Meta.<key> == "<value>".
        meta_filter = None
        if "filter" in query:
            fm = re.fullmatch(r'\s*Service\.Meta\.(\w+)\s*==\s*"([^"]*)"\s*', query["filter"][-1])
            if not fm:
                return self.reply(400, b"Failed to create boolexpr evaluator")
            meta_filter = (fm.group(1), fm.group(2))
        out = []
        with lock:
            for service_id, entry in sorted(services.items()):
                svc = entry["service"]
                if svc["Name"] != m.group(1):
                    continue
                status = status_of(entry)
                if passing_only and status != "passing":
                    continue
                if meta_filter and (svc.get("Meta") or {}).get(meta_filter[0]) != meta_filter[1]:
                    continue
                out.append({
                    "Node": {"ID": "fixture-node", "Node": "fixture", "Address": "127.0.0.1",
                             "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}},
                    "Service": {"ID": service_id, "Service": svc["Name"],
                                "Tags": svc.get("Tags") or [], "Address": svc.get("Address", ""),
                                "Meta": svc.get("Meta") or {}, "Port": svc.get("Port", 0),
                                "Weights": {"Passing": 1, "Warning": 1}},
                    "Checks": [{"Node": "fixture", "CheckID": entry["check"].get("CheckID"),
                                "Name": entry["check"].get("Name", ""), "Status": status,
                                "ServiceID": service_id, "ServiceName": svc["Name"],
                                "Type": "ttl"}],
                })
        self.reply(200, out)

    def do_POST(self):
        self.read_body()
        if urlparse(self.path).path == "/_test/forget":
            with lock:
                services.clear()
            return self.reply(200, {})
        self.reply(404, b"not found")


def main():
    global TOKEN
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args()
    TOKEN = args.token
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("listening on %s:%d" % server.server_address[:2], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
