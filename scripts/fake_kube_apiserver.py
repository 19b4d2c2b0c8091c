#!/usr/bin/env python3
"""An HTTP server shaped like the Kubernetes API server, for the `kubernetes` discovery tests.

No kube-apiserver can run on these machines (no registry ships one), so the tests talk to
this instead. It serves exactly what pod discovery uses, in the apiserver's shapes:

- `GET /api/v1/namespaces/{ns}/pods?labelSelector=...&limit=...&continue=...`: a `PodList`
  (paged with `continue` tokens, `metadata.resourceVersion` set);
- the same with `watch=true&resourceVersion=N`: a chunked stream of watch events (`ADDED`,
  `MODIFIED`, `DELETED`, `BOOKMARK`) one JSON object per line, held open until
  `timeoutSeconds`;
- `GET /api`, `/apis`, `/api/v1`: legacy discovery documents, so `kubectl get pods` (a second,
  independent client) can read the same lists;
- `403` `Status` objects (reason `Forbidden`, the apiserver's wording) for namespaces the test
  marks forbidden, and deliberately broken JSON for namespaces marked `garbage`.

Every object served (pods, lists, statuses) is validated against the real Kubernetes schemas
with `kubernetes-validate --strict` when the test adds it; an invalid fixture is refused with
400, so the tests cannot drift from what an apiserver sends.

Test control (JSON bodies): `POST /_test/pods` adds or replaces a pod (`ADDED`/`MODIFIED`),
`DELETE /_test/pods/{ns}/{name}` removes one (`DELETED`), `POST /_test/drop-watches` ends
every open watch, `POST /_test/mode`
`{"namespace": ns, "mode": "ok"|"forbidden"|"garbage"}`, `GET /_test/requests` the
request log. Bound to the address given on the command line (loopback in tests); prints
`listening on HOST:PORT` once ready.
"""

import argparse
import os
import sys
import json
import queue
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

K8S_VERSION = kubernetes_validate.latest_version()

lock = threading.Lock()
pods = {}  # (namespace, name) -> pod
modes = {}  # namespace -> mode
resource_version = 1
watchers = []  # (namespace, selector, queue)
history = []  # (resourceVersion, event type, pod): what a watch from an older version replays
requests_seen = []


def validate(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def validate_meta(obj, name):
    """Objects of the meta API group (`Status`, `WatchEvent`) carry `apiVersion: v1` but their
    schemas are filed under `meta`, which `kubernetes_validate.validate` does not look up: the
    same strict schemas, applied the same way."""
    version = [v for v in kv_utils.all_versions()
               if kv_utils.major_minor(v) <= kv_utils.major_minor(K8S_VERSION)][-1]
    folder = "kubernetes-json-schema/v%s-local-strict" % version
    schema = kv_utils.schema_contents("%s/%s-meta-v1.json" % (folder, name), K8S_VERSION)
    defs = kv_utils.schema_contents("%s/_definitions.json" % folder, K8S_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.validators.Draft202012Validator(schema, registry=registry).validate(obj)


def parse_selector(text):
    """Equality-based selectors (`a=b`, `a==b`, `a!=b`) and existence (`a`, `!a`)."""
    terms = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", part)
        if m:
            terms.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
        elif part.startswith("!"):
            terms.append((part[1:], "absent", None))
        else:
            terms.append((part, "exists", None))
    return terms


def matches(pod, terms):
    labels = pod["metadata"].get("labels") or {}
    for key, op, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "absent" and key in labels:
            return False
    return True


def forbidden(namespace):
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            'pods is forbidden: User "system:serviceaccount:%s:shoal" cannot list resource '
            '"pods" in API group "" in the namespace "%s"' % (namespace, namespace)
        ),
        "reason": "Forbidden",
        "details": {"kind": "pods"},
        "code": 403,
    }
    validate_meta(status, "status")
    return status


def notify(kind, pod):
    history.append((int(pod["metadata"]["resourceVersion"]), kind, pod))
    for namespace, terms, q in list(watchers):
        if pod["metadata"]["namespace"] == namespace and matches(pod, terms):
            q.put({"type": kind, "object": pod})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_KUBE_DEBUG"):
            sys.stderr.write("fake-kube: " + fmt % args + "\n")

    def send_json(self, code, obj, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with lock:
            requests_seen.append({"path": url.path, "query": query,
                                  "auth": self.headers.get("Authorization", "")})
        if url.path == "/_test/requests":
            with lock:
                return self.send_json(200, requests_seen)
        if url.path == "/api":
            host = "%s:%d" % self.server.server_address[:2]
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
            })
        if url.path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if url.path == "/api/v1":
            return self.send_json(200, {
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                "resources": [{
                    "name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                    "verbs": ["get", "list", "watch"], "shortNames": ["po"],
                    "categories": ["all"],
                }],
            })
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path)
        if not m:
            return self.send_json(404, {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "code": 404,
            })
        namespace = m.group(1)
        mode = modes.get(namespace, "ok")
        if mode == "forbidden":
            return self.send_json(403, forbidden(namespace))
        if mode == "garbage":
            return self.send_json(200, None, raw=b'{"kind": "PodList", "items": [{"metadata": ')
        terms = parse_selector(query.get("labelSelector"))
        if query.get("watch") in ("true", "1"):
            return self.watch(namespace, terms, query)
        with lock:
            items = sorted(
                (p for (ns, _), p in pods.items() if ns == namespace and matches(p, terms)),
                key=lambda p: p["metadata"]["name"],
            )
            rv = str(resource_version)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(items) or 1
        page = items[start:start + limit]
        metadata = {"resourceVersion": rv}
        if start + limit < len(items):
            metadata["continue"] = str(start + limit)
            metadata["remainingItemCount"] = len(items) - start - limit
        pod_list = {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}
        validate(pod_list)
        self.send_json(200, pod_list)

    def watch(self, namespace, terms, query):
        q = queue.Queue()
        since = int(query.get("resourceVersion") or 0)
        deadline = time.time() + min(int(query.get("timeoutSeconds") or 290), 290)
        with lock:
            if since:
                # Like the apiserver's watch cache: every change after `since`, in order.
                for rv, kind, pod in history:
                    if rv > since and pod["metadata"]["namespace"] == namespace \
                            and matches(pod, terms):
                        q.put({"type": kind, "object": pod})
            else:
                for (ns, _), pod in sorted(pods.items()):
                    if ns == namespace and matches(pod, terms):
                        q.put({"type": "ADDED", "object": pod})
            entry = (namespace, terms, q)
            watchers.append(entry)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while time.time() < deadline:
                try:
                    event = q.get(timeout=max(0.05, min(1.0, deadline - time.time())))
                    if event is None:
                        break
                except queue.Empty:
                    if query.get("allowWatchBookmarks") == "true":
                        with lock:
                            rv = str(resource_version)
                        event = {"type": "BOOKMARK", "object": {
                            "kind": "Pod", "apiVersion": "v1",
                            "metadata": {"resourceVersion": rv}}}
                    else:
                        continue
                validate_meta(event, "watchevent")
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with lock:
                watchers.remove(entry)

    def do_POST(self):
        global resource_version
        url = urlparse(self.path)
        # Read the whole body first, so the connection stays usable whatever the answer.
        body = self.body()
        if url.path == "/_test/drop-watches":
            # Ends every open watch, as an apiserver restart or a load balancer timeout does;
            # clients then list or watch again.
            with lock:
                for _, _, q in watchers:
                    q.put(None)
            return self.send_json(200, {})
        if url.path == "/_test/mode":
            with lock:
                modes[body["namespace"]] = body["mode"]
            return self.send_json(200, {})
        if url.path == "/_test/pods":
            pod = body
            with lock:
                resource_version += 1
                meta = pod.setdefault("metadata", {})
                meta["resourceVersion"] = str(resource_version)
                meta.setdefault("uid", "uid-%s-%s" % (meta.get("namespace"), meta.get("name")))
                try:
                    validate(pod)
                except Exception as e:  # noqa: BLE001 - the test sees why its fixture is bad
                    return self.send_json(400, {"error": str(e)})
                key = (meta["namespace"], meta["name"])
                kind = "MODIFIED" if key in pods else "ADDED"
                pods[key] = pod
                notify(kind, pod)
            return self.send_json(200, pod)
        self.send_json(404, {})

    def do_DELETE(self):
        global resource_version
        m = re.fullmatch(r"/_test/pods/([^/]+)/([^/]+)", urlparse(self.path).path)
        if not m:
            return self.send_json(404, {})
        with lock:
            pod = pods.pop((m.group(1), m.group(2)), None)
            if pod is None:
                return self.send_json(404, {})
            resource_version += 1
            pod = json.loads(json.dumps(pod))
            pod["metadata"]["resourceVersion"] = str(resource_version)
            notify("DELETED", pod)
        self.send_json(200, pod)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("listening on %s:%d" % server.server_address[:2], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
