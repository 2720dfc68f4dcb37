#!/usr/bin/python3
"""A stand-in for kube-apiserver, for berth's tests (kube-apiserver cannot be installed here).

NOT kube-apiserver. It serves, over HTTPS, the REST paths berthd uses, with kube-apiserver's
semantics and its Status error bodies:

  GET    /healthz /livez /readyz                      200 "ok"
  GET    /version                                     version.Info JSON (--version)
  POST   /api/v1/namespaces/{ns}/secrets              create (201, 409, 422, 400, 415, 404)
  GET    /api/v1/namespaces/{ns}/secrets              SecretList (labelSelector, fieldSelector)
  GET    /api/v1/namespaces/{ns}/secrets/{name}       200 or 404
  DELETE /api/v1/namespaces/{ns}/secrets/{name}       200 Status Success or 404
  GET    /api/v1/namespaces/kube-public/configmaps/cluster-info   (--cluster-info-kubeconfig)

Authentication: the bearer token given by --token, or a client certificate verified by
--client-ca. As in a kubeadm-built cluster, the health endpoints, /version and the
cluster-info ConfigMap may also be read without credentials; a request with a wrong bearer
token is refused (401) everywhere. Any authenticated caller may do anything (no RBAC).

Bootstrap-token Secrets are checked as the bootstrap-token authenticator reads them (the real
kube-apiserver stores a malformed one and the token then never authenticates; this stand-in
refuses it with 422 so that a test sees the mistake).

Every mutating request (POST, PUT, PATCH, DELETE) is appended to --record as one JSON line:
  {"method", "path", "code", "object"?}
where "object" is, for a created Secret, the object as stored with its data values
base64-DECODED for the tests' convenience, and for a refused Secret create whose body was
JSON, the body as sent. Request bodies and tokens never go to stdout or stderr: the log has
one line per request with method, path and status code only.
"""
import argparse
import base64
import binascii
import datetime
import hmac
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric "
                         "character (e.g. 'example.com', regex used for validation is "
                         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                  "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                  "is '[-._a-zA-Z0-9]+')")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character "
                   "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
TOKEN_ID = re.compile(r"^[a-z0-9]{6}$")
TOKEN_SECRET = re.compile(r"^[a-z0-9]{16}$")
BOOTSTRAP_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
# Go's time.Parse(time.RFC3339, ...): fractional seconds are accepted too.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"
MAX_SECRET_SIZE = 1024 * 1024
SECRET_FIELDS = {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}

SECRETS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
PUBLIC_PATHS = {"/healthz", "/livez", "/readyz", "/version", CLUSTER_INFO_PATH}


def status_body(code, reason="", message="", details=None):
    """A metav1.Status as kube-apiserver writes it (empty fields omitted)."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success" if code < 300 else "Failure"}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    body["code"] = code
    return body


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    if not isinstance(text, str) or not RFC3339.match(text):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.secrets = {}  # (namespace, name) -> object as stored
        self.resource_version = 1000
        self.requests = 0

    def next_version(self):
        self.resource_version += 1
        return str(self.resource_version)


class FieldError:
    def __init__(self, field, kind, message):
        self.field, self.kind, self.message = field, kind, message

    def __str__(self):
        return "%s: %s: %s" % (self.field, self.kind, self.message)

    def cause(self):
        reason = {"Invalid value": "FieldValueInvalid", "Required value": "FieldValueRequired",
                  "Too long": "FieldValueTooLong", "Unsupported value": "FieldValueNotSupported"}
        return {"reason": reason.get(self.kind.split(":")[0], "FieldValueInvalid"),
                "message": "%s: %s" % (self.kind, self.message), "field": self.field}


def invalid(field, value, msg):
    return FieldError(field, "Invalid value", "%s: %s" % (json.dumps(value), msg))


def validate_bootstrap_token(ns, name, data):
    """The bootstrap-token Secret format (k8s.io/cluster-bootstrap); returns FieldErrors.

    Values are never quoted back for token-secret: it is a secret."""
    errs = []

    def value(key):
        raw = data.get(key)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""

    if ns != "kube-system":
        errs.append(invalid("metadata.namespace", ns,
                            "bootstrap token Secrets must be in namespace kube-system"))
    token_id = value("token-id")
    if token_id is None:
        errs.append(FieldError("data[token-id]", "Required value", "bootstrap token id is required"))
    elif not TOKEN_ID.match(token_id):
        errs.append(invalid("data[token-id]", token_id, "must match ^[a-z0-9]{6}$"))
    elif name != "bootstrap-token-" + token_id:
        errs.append(invalid("metadata.name", name,
                            "must be bootstrap-token-<token-id> (bootstrap-token-%s)" % token_id))
    secret = value("token-secret")
    if secret is None:
        errs.append(FieldError("data[token-secret]", "Required value",
                               "bootstrap token secret is required"))
    elif not TOKEN_SECRET.match(secret):
        errs.append(FieldError("data[token-secret]", "Invalid value",
                               "must match ^[a-z0-9]{16}$ (value not shown)"))
    expiration = value("expiration")
    if expiration is not None and parse_rfc3339(expiration) is None:
        errs.append(invalid("data[expiration]", expiration, "must be an RFC3339 timestamp"))
    for key in sorted(data):
        if key.startswith("usage-bootstrap-") and value(key) != "true":
            errs.append(invalid("data[%s]" % key, value(key), 'must be "true" if present'))
    groups = value("auth-extra-groups")
    if groups is not None:
        for g in groups.split(","):
            if not BOOTSTRAP_GROUP.match(g):
                errs.append(invalid("data[auth-extra-groups]", g,
                                    "must match ^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$"))
    return errs


def label_selector_matches(selector, labels):
    """The equality- and existence-based subset of label selectors."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class BadSelector(Exception):
    pass


def field_selector_matches(selector, obj):
    """The fields kube-apiserver supports for Secrets: metadata.name, metadata.namespace, type."""
    fields = {"metadata.name": obj["metadata"].get("name"),
              "metadata.namespace": obj["metadata"].get("namespace"),
              "type": obj.get("type")}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            negate = True
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            negate = False
        else:
            raise BadSelector("invalid selector: '%s'; can't understand '%s'" % (selector, term))
        k, v = k.strip(), v.strip()
        if k not in fields:
            raise BadSelector('"%s" is not a known field selector: only "metadata.name", '
                              '"metadata.namespace", "type"' % k)
        if (fields[k] == v) == negate:
            return False
    return True


def validate_labels(labels):
    """metav1 label validation (keys: [prefix/]name; values: <= 63 characters)."""
    errs = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [FieldError("metadata.labels", "Invalid value", "must be a map of strings")]
    for k, v in sorted(labels.items()):
        prefix, _, name = k.rpartition("/")
        if "/" in k and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
            errs.append(invalid("metadata.labels", k, "prefix part " + DNS1123_SUBDOMAIN_MSG))
        elif len(name) > 63:
            errs.append(invalid("metadata.labels", k, "name part must be no more than 63 characters"))
        elif not LABEL_NAME.match(name):
            errs.append(invalid("metadata.labels", k, "name part " + LABEL_VALUE_MSG))
        if not isinstance(v, str):
            errs.append(invalid("metadata.labels", v, "must be a string"))
        elif len(v) > 63:
            errs.append(invalid("metadata.labels", v, "must be no more than 63 characters"))
        elif v and not LABEL_NAME.match(v):
            errs.append(invalid("metadata.labels", v, LABEL_VALUE_MSG))
    return errs


def make_handler(args, store):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # reply() writes the headers and the body separately; with Nagle's algorithm on, the
        # body would wait for the client's delayed ACK (40 ms). kube-apiserver (Go) sets
        # TCP_NODELAY on every connection.
        disable_nagle_algorithm = True

        def version_string(self):
            return "kube-apiserver-standin"

        def log_message(self, fmt, *a):  # the log is written by reply(); never bodies
            pass

        def reply(self, code, body, content_type="application/json", headers=()):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            # The write is on record before its answer leaves: a client that has its answer
            # (and a test that reads the record next) never finds it missing.
            if self.entry is not None:
                self.entry["code"] = code
                self.record(self.entry)
                self.entry = None
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
            self.code = code
            sys.stderr.write("%s %s -> %d\n" % (self.command, urllib.parse.urlparse(self.path).path, code))
            sys.stderr.flush()

        def fail(self, code, reason, message, details=None):
            self.reply(code, status_body(code, reason, message, details))

        def record(self, entry):
            if args.record:
                with store.lock, open(args.record, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                    f.flush()

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def authentication(self):
            """'ok', 'anonymous' (no credentials at all) or 'bad' (wrong credentials)."""
            auth = self.headers.get("Authorization")
            if auth is not None:
                scheme, _, token = auth.partition(" ")
                if (scheme.lower() == "bearer" and args.token and
                        hmac.compare_digest(token.strip().encode(), args.token.encode())):
                    return "ok"
                return "bad"
            if args.client_ca and self.connection.getpeercert():
                return "ok"  # CERT_OPTIONAL: a presented certificate has been verified
            return "anonymous"

        def handle_any(self):
            self.code = 0
            self.entry = None
            try:
                body = self.read_body()
                url = urllib.parse.urlparse(self.path)
                if self.command in ("POST", "PUT", "PATCH", "DELETE"):
                    self.entry = {"method": self.command, "path": url.path}
                self.route(url, body, self.entry)
            except Exception as e:  # never a traceback (it could quote a body)
                sys.stderr.write("%s %s: internal error: %s\n" % (
                    self.command, urllib.parse.urlparse(self.path).path, type(e).__name__))
                if not self.code:
                    self.fail(500, "InternalError", "an error on the server has prevented the request from succeeding")
            finally:
                if self.entry is not None:  # no answer was sent
                    self.entry["code"] = self.code
                    self.record(self.entry)
                    self.entry = None

        def route(self, url, body, entry):
            with store.lock:
                store.requests += 1
                failing = store.requests <= args.fail_first
            if failing:
                return self.reply(503, status_body(503, "ServiceUnavailable",
                                                   "the server is currently unable to handle the request"),
                                  headers=[("Retry-After", "1")])
            if args.delay_ms and self.command in ("POST", "PUT", "PATCH", "DELETE"):
                sys.stderr.write("delaying %s %s by %d ms\n" % (self.command, url.path, args.delay_ms))
                sys.stderr.flush()
                time.sleep(args.delay_ms / 1000.0)  # outside the lock: requests overlap
            auth = self.authentication()
            if auth == "bad" or (auth == "anonymous" and url.path not in PUBLIC_PATHS):
                return self.fail(401, "Unauthorized", "Unauthorized")
            if url.path in ("/healthz", "/livez", "/readyz"):
                if self.command != "GET":
                    return self.method_not_allowed()
                return self.reply(200, b"ok", "text/plain; charset=utf-8")
            if url.path == "/version":
                if self.command != "GET":
                    return self.method_not_allowed()
                major, minor = args.version.lstrip("v").split(".")[:2]
                return self.reply(200, {
                    "major": major, "minor": minor, "gitVersion": args.version,
                    "gitCommit": "0" * 40, "gitTreeState": "clean",
                    "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
                    "compiler": "gc", "platform": "linux/amd64"})
            if url.path == CLUSTER_INFO_PATH:
                if self.command != "GET":
                    return self.method_not_allowed()
                return self.cluster_info()
            m = SECRETS_PATH.match(url.path)
            if not m:
                return self.fail(404, "NotFound", "the server could not find the requested resource")
            ns, name = urllib.parse.unquote(m.group(1)), m.group(2) and urllib.parse.unquote(m.group(2))
            query = urllib.parse.parse_qs(url.query)
            if name is None:
                if self.command == "POST":
                    return self.create_secret(ns, body, query, entry)
                if self.command == "GET":
                    return self.list_secrets(ns, query)
                return self.method_not_allowed()
            if self.command == "GET":
                with store.lock:
                    obj = store.secrets.get((ns, name))
                if obj is None:
                    return self.not_found(name)
                return self.reply(200, obj)
            if self.command == "DELETE":
                with store.lock:
                    obj = store.secrets.pop((ns, name), None)
                if obj is None:
                    return self.not_found(name)
                return self.reply(200, status_body(200, details={
                    "name": name, "kind": "secrets", "uid": obj["metadata"]["uid"]}))
            return self.method_not_allowed()

        def method_not_allowed(self):
            self.fail(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

        def not_found(self, name):
            self.fail(404, "NotFound", 'secrets "%s" not found' % name, {"name": name, "kind": "secrets"})

        def cluster_info(self):
            if not args.cluster_info_kubeconfig:
                return self.fail(404, "NotFound", 'configmaps "cluster-info" not found',
                                 {"name": "cluster-info", "kind": "configmaps"})
            with open(args.cluster_info_kubeconfig) as f:
                kubeconfig = f.read()
            return self.reply(200, {
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "cluster-info", "namespace": "kube-public",
                             "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "cluster-info")),
                             "resourceVersion": "1", "creationTimestamp": args.started},
                "data": {"kubeconfig": kubeconfig}})

        def create_secret(self, ns, body, query, entry):
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return self.fail(415, "UnsupportedMediaType",
                                 "the body of the request was in an unknown format - accepted media types include: application/json")
            try:
                obj = json.loads(body)
            except ValueError as e:
                # json's message names a position, never the content.
                return self.fail(400, "BadRequest", "couldn't get version/kind; json parse error: %s" % e.msg)
            if not isinstance(obj, dict):
                return self.fail(400, "BadRequest", "couldn't get version/kind; json parse error: not an object")
            entry["object"] = json.loads(json.dumps(obj))
            if not obj.get("kind"):
                return self.fail(400, "BadRequest", "Object 'Kind' is missing in the request body")
            if obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret":
                return self.fail(400, "BadRequest", 'the object provided is %s %s; expected v1 Secret'
                                 % (obj.get("apiVersion"), obj.get("kind")))
            warnings = ['299 - "unknown field \\"%s\\""' % k for k in sorted(set(obj) - SECRET_FIELDS)]
            if warnings and query.get("fieldValidation", [""])[0] == "Strict":
                return self.fail(400, "BadRequest", 'strict decoding error: unknown field "%s"'
                                 % sorted(set(obj) - SECRET_FIELDS)[0])
            for k in set(obj) - SECRET_FIELDS:
                del obj[k]
            meta = obj.get("metadata")
            if meta is None:
                meta = {}
            if not isinstance(meta, dict):
                return self.fail(400, "BadRequest", "metadata: must be an object")
            for k in ("data", "stringData"):
                if obj.get(k) is not None and not (isinstance(obj[k], dict) and
                                                   all(isinstance(v, str) for v in obj[k].values())):
                    return self.fail(400, "BadRequest", "Secret in version \"v1\" cannot be handled as a "
                                     "Secret: %s: expected a map of strings" % k)
            if meta.get("namespace", ns) != ns:
                return self.fail(400, "BadRequest", "the namespace of the provided object does not "
                                 "match the namespace sent on the request")
            data = dict(obj.get("data") or {})
            for k, v in data.items():
                try:
                    base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    return self.fail(400, "BadRequest", "Secret in version \"v1\" cannot be handled as a "
                                     "Secret: illegal base64 data in data[%s]" % k)
            if ns not in NAMESPACES:
                return self.fail(404, "NotFound", 'namespaces "%s" not found' % ns,
                                 {"name": ns, "kind": "namespaces"})
            name = meta.get("name") or ""
            if not name and meta.get("generateName"):
                name = meta["generateName"] + uuid.uuid4().hex[:5]
            errs = []
            if not name:
                errs.append(FieldError("metadata.name", "Required value", "name or generateName is required"))
            elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
                errs.append(invalid("metadata.name", name, DNS1123_SUBDOMAIN_MSG))
            errs += validate_labels(meta.get("labels"))
            for k in sorted(set(data) | set(obj.get("stringData") or {})):
                if len(k) > 253 or not CONFIG_KEY.match(k) or k in (".", "..") or k.startswith(".."):
                    errs.append(invalid("data[%s]" % k, k, CONFIG_KEY_MSG))
            # stringData is merged into data, overwriting, as the real server's conversion does.
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(v.encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
            if sum(len(base64.b64decode(v)) for v in data.values()) > MAX_SECRET_SIZE:
                errs.append(FieldError("data", "Too long", "must have at most %d bytes" % MAX_SECRET_SIZE))
            if obj["type"] == BOOTSTRAP_TOKEN_TYPE and not errs:
                errs += validate_bootstrap_token(ns, name, data)
            if errs:
                message = 'Secret "%s" is invalid: %s' % (
                    name, str(errs[0]) if len(errs) == 1 else "[" + ", ".join(map(str, errs)) + "]")
                return self.fail(422, "Invalid", message,
                                 {"name": name, "kind": "Secret", "causes": [e.cause() for e in errs]})
            with store.lock:
                conflict = (ns, name) in store.secrets
                if not conflict:
                    meta.update(name=name, namespace=ns, uid=str(uuid.uuid4()),
                                resourceVersion=store.next_version(),
                                creationTimestamp=now_rfc3339())
                    obj["metadata"] = meta
                    store.secrets[(ns, name)] = obj
            if conflict:
                return self.fail(409, "AlreadyExists", 'secrets "%s" already exists' % name,
                                 {"name": name, "kind": "secrets"})
            decoded = json.loads(json.dumps(obj))
            decoded["data"] = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            entry["object"] = decoded
            return self.reply(201, obj, headers=[("Warning", w) for w in warnings])

        def list_secrets(self, ns, query):
            with store.lock:
                items = [o for (n, _), o in sorted(store.secrets.items()) if n == ns]
                version = str(store.resource_version)
            try:
                for sel in query.get("labelSelector", []):
                    items = [o for o in items if label_selector_matches(sel, o["metadata"].get("labels") or {})]
                for sel in query.get("fieldSelector", []):
                    items = [o for o in items if field_selector_matches(sel, o)]
            except BadSelector as e:
                return self.fail(400, "BadRequest", str(e))
            # List items carry neither apiVersion nor kind, as with the real server.
            items = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items]
            return self.reply(200, {"kind": "SecretList", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": version}, "items": items})

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_any

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A failed TLS handshake or a dropped connection: one line, no traceback.
        sys.stderr.write("connection from %s:%d failed: %s\n" % (
            client_address[0], client_address[1], type(sys.exc_info()[1]).__name__))
        sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description="kube-apiserver stand-in for berth's tests (not the real server)")
    p.add_argument("--cert", required=True, help="server certificate (PEM)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--token", help="a bearer token that is accepted")
    p.add_argument("--client-ca", help="also accept client certificates verified by this CA (PEM)")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the bound port here once listening (atomically)")
    p.add_argument("--record", help="JSONL file: one line per mutating request")
    p.add_argument("--delay-ms", type=int, default=0,
                   help="answer every mutating request this much later (an API server under load)")
    p.add_argument("--fail-first", type=int, default=0, help="answer the first N requests with 503")
    p.add_argument("--cluster-info-kubeconfig", help="served as cluster-info's kubeconfig key")
    p.add_argument("--version", default="v1.31.0", help="reported by /version")
    args = p.parse_args()
    if not re.match(r"^v\d+\.\d+\.\d+", args.version):
        p.error("--version must look like v1.31.0")
    args.started = now_rfc3339()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    server = Server((args.listen, args.port), make_handler(args, Store()))
    # The handshake happens in each connection's thread, not in accept().
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    port = server.server_address[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, args.port_file)

    def stop(signum, _frame):
        sys.stderr.write("kube-apiserver stand-in: signal %d, shutting down\n" % signum)
        sys.stderr.flush()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("kube-apiserver stand-in listening on https://%s:%d\n" % (args.listen, port))
    sys.stderr.flush()
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
