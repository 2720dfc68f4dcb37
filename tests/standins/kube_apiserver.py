#!/usr/bin/python3
"""A stand-in for kube-apiserver, for berth's tests (kube-apiserver cannot be installed here).

It serves, over HTTPS, the REST paths berthd uses with the real semantics and error bodies:
Secrets in a namespace (create, get, list, delete) with kube-apiserver's validation of
bootstrap-token Secrets, the cluster-info ConfigMap, /version, /healthz and /readyz.
Authentication: a bearer token, or a client certificate verified by --client-ca.

Every mutating request is appended to --record as one JSON line, with the Secret as stored
(data base64-decoded for the tests' convenience). Request bodies and tokens are never logged.
"""
import argparse
import base64
import datetime
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import urllib.parse
import uuid

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
TOKEN_ID = re.compile(r"^[a-z0-9]{6}$")
TOKEN_SECRET = re.compile(r"^[a-z0-9]{16}$")
BOOTSTRAP_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
SECRETS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


def status_body(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.secrets = {}  # (namespace, name) -> object
        self.resource_version = 1000

    def next_version(self):
        self.resource_version += 1
        return str(self.resource_version)


def validate_bootstrap_token(ns, name, data):
    """kube-apiserver's bootstrap token validation; returns a message or None."""
    def value(key):
        raw = data.get(key)
        return None if raw is None else base64.b64decode(raw).decode()
    if ns != "kube-system":
        return "bootstrap token secrets must be in namespace kube-system"
    token_id, secret = value("token-id"), value("token-secret")
    if token_id is None or not TOKEN_ID.match(token_id):
        return "data[token-id]: Invalid value: must match [a-z0-9]{6}"
    if name != "bootstrap-token-" + token_id:
        return "metadata.name: Invalid value: %r: must be bootstrap-token-<token-id>" % name
    if secret is None or not TOKEN_SECRET.match(secret):
        return "data[token-secret]: Invalid value: must match [a-z0-9]{16}"
    expiration = value("expiration")
    if expiration is not None:
        try:
            datetime.datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return "data[expiration]: Invalid value: %r: not RFC3339" % expiration
    for key in data:
        if key.startswith("usage-bootstrap-") and value(key) != "true":
            return "data[%s]: Invalid value: must be \"true\"" % key
    groups = value("auth-extra-groups")
    if groups is not None:
        for g in groups.split(","):
            if not BOOTSTRAP_GROUP.match(g):
                return "data[auth-extra-groups]: Invalid value: %r" % g
    return None


def make_handler(args, store, counters):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kube-apiserver-standin"

        def log_message(self, fmt, *a):  # method, path and code only; never bodies
            pass

        def reply(self, code, body, content_type="application/json"):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            sys.stderr.write("%s %s -> %d\n" % (self.command, self.path.split("?")[0], code))
            sys.stderr.flush()

        def record(self, entry):
            if args.record:
                with store.lock, open(args.record, "a") as f:
                    f.write(json.dumps(entry) + "\n")

        def authorised(self):
            auth = self.headers.get("Authorization", "")
            if args.token and auth == "Bearer " + args.token:
                return True
            cert = self.connection.getpeercert() if args.client_ca else None
            return bool(cert)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with store.lock:
                counters["requests"] += 1
                failing = counters["requests"] <= args.fail_first
            url = urllib.parse.urlparse(self.path)
            if url.path in ("/healthz", "/readyz", "/livez"):
                return self.reply(200, b"ok", "text/plain")
            if failing:
                return self.reply(503, status_body(503, "ServiceUnavailable",
                                                   "the server is currently unable to handle the request"))
            if not self.authorised():
                return self.reply(401, status_body(401, "Unauthorized", "Unauthorized"))
            if url.path == "/version" and self.command == "GET":
                major, minor = args.version.lstrip("v").split(".")[:2]
                return self.reply(200, {"major": major, "minor": minor, "gitVersion": args.version,
                                        "platform": "linux/amd64"})
            if url.path == CLUSTER_INFO_PATH and self.command == "GET":
                if not args.cluster_info_kubeconfig:
                    return self.reply(404, status_body(404, "NotFound", 'configmaps "cluster-info" not found'))
                with open(args.cluster_info_kubeconfig) as f:
                    kubeconfig = f.read()
                return self.reply(200, {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                                        "data": {"kubeconfig": kubeconfig}})
            m = SECRETS_PATH.match(url.path)
            if not m:
                return self.reply(404, status_body(404, "NotFound", "the server could not find the requested resource"))
            ns, name = m.group(1), m.group(2)
            if self.command == "POST" and name is None:
                return self.create_secret(ns, body)
            if self.command == "GET" and name is None:
                return self.list_secrets(ns, urllib.parse.parse_qs(url.query))
            if self.command == "GET":
                with store.lock:
                    obj = store.secrets.get((ns, name))
                if obj is None:
                    return self.reply(404, status_body(404, "NotFound", 'secrets "%s" not found' % name,
                                                       {"name": name, "kind": "secrets"}))
                return self.reply(200, obj)
            if self.command == "DELETE":
                with store.lock:
                    obj = store.secrets.pop((ns, name), None)
                if obj is None:
                    return self.reply(404, status_body(404, "NotFound", 'secrets "%s" not found' % name,
                                                       {"name": name, "kind": "secrets"}))
                self.record({"method": "DELETE", "path": url.path})
                return self.reply(200, status_body(200, "", "", {"name": name, "kind": "secrets"}))
            return self.reply(405, status_body(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"))

        def create_secret(self, ns, body):
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                return self.reply(415, status_body(415, "UnsupportedMediaType", "the body of the request was in an unknown format"))
            try:
                obj = json.loads(body)
                assert isinstance(obj, dict)
            except (ValueError, AssertionError):
                return self.reply(400, status_body(400, "BadRequest", "the body of the request could not be decoded as JSON"))
            meta = obj.get("metadata") or {}
            name = meta.get("name", "")
            def invalid(msg):
                return self.reply(422, status_body(422, "Invalid", 'Secret "%s" is invalid: %s' % (name, msg),
                                                   {"name": name, "kind": "Secret"}))
            if obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret":
                return self.reply(400, status_body(400, "BadRequest", "expected apiVersion v1, kind Secret"))
            if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
                return invalid("metadata.name: Invalid value: %r: must be a DNS-1123 subdomain" % name)
            if meta.get("namespace", ns) != ns:
                return self.reply(400, status_body(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"))
            data = dict(obj.get("data") or {})
            for k, v in data.items():
                try:
                    base64.b64decode(v, validate=True)
                except Exception:
                    return invalid("data[%s]: Invalid value: not base64" % k)
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
            if obj.get("type") == "bootstrap.kubernetes.io/token":
                problem = validate_bootstrap_token(ns, name, data)
                if problem:
                    return invalid(problem)
            with store.lock:
                if (ns, name) in store.secrets:
                    conflict = True
                else:
                    conflict = False
                    meta["namespace"] = ns
                    meta["uid"] = str(uuid.uuid4())
                    meta["resourceVersion"] = store.next_version()
                    meta["creationTimestamp"] = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
                    obj["metadata"] = meta
                    store.secrets[(ns, name)] = obj
            if conflict:
                return self.reply(409, status_body(409, "AlreadyExists", 'secrets "%s" already exists' % name,
                                                   {"name": name, "kind": "secrets"}))
            decoded = json.loads(json.dumps(obj))
            decoded["data"] = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            self.record({"method": "POST", "path": "/api/v1/namespaces/%s/secrets" % ns, "object": decoded})
            return self.reply(201, obj)

        def list_secrets(self, ns, query):
            items = [o for (n, _), o in sorted(store.secrets.items()) if n == ns]
            for sel in query.get("labelSelector", []):
                for term in sel.split(","):
                    k, _, v = term.partition("=")
                    items = [o for o in items if (o["metadata"].get("labels") or {}).get(k) == v]
            for sel in query.get("fieldSelector", []):
                for term in sel.split(","):
                    k, _, v = term.partition("=")
                    if k == "type":
                        items = [o for o in items if o.get("type") == v]
            return self.reply(200, {"apiVersion": "v1", "kind": "SecretList",
                                    "metadata": {"resourceVersion": str(store.resource_version)},
                                    "items": items})

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token", help="accepted bearer token")
    p.add_argument("--client-ca", help="accept client certificates from this CA")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--record")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--cluster-info-kubeconfig")
    p.add_argument("--version", default="v1.31.0")
    args = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    server = http.server.ThreadingHTTPServer((args.listen, args.port),
                                              make_handler(args, Store(), {"requests": 0}))
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stderr.write("kube-apiserver stand-in listening on %s:%d\n" % server.server_address[:2])
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
