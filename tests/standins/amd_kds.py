#!/usr/bin/python3
"""A stand-in for AMD's Key Distribution Service (kdsintf.amd.com), for berth's tests: the
machines that run them cannot reach the internet.

NOT AMD's KDS. It serves, over plain HTTP on loopback, the two GET paths berthd uses, with
KDS's content types and status codes:

  GET /vcek/v1/{product}/cert_chain                    PEM: ASK then ARK   (application/x-pem-file)
  GET /vlek/v1/{product}/cert_chain                    PEM: ASVK then ARK
  GET /vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..[&fmcSPL=..]
                                                       DER VCEK            (application/x-x509-ca-cert)

Answers come from --dir: the file at the request's path (without the query). When a file
"<path>.query" exists, the request's query string must equal its content (KDS keys a VCEK by
chip and TCB), else 404. Anything else is 404. --status N answers every request with N instead
(429 = KDS's rate limit). Every request is appended to --record as one JSON line
{"path", "query", "code"}.
"""
import argparse
import http.server
import json
import os
import signal
import sys
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--record")
    ap.add_argument("--status", type=int, default=0)
    args = ap.parse_args()
    root = os.path.realpath(args.dir)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            sys.stderr.write("amd_kds: %s\n" % (fmt % a))

        def record(self, path, query, code):
            if args.record:
                with open(args.record, "a") as f:
                    f.write(json.dumps({"path": path, "query": query, "code": code}) + "\n")

        def answer(self, code, body=b"", ctype="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            path, query = url.path, url.query
            if args.status:
                self.record(path, query, args.status)
                return self.answer(args.status, b"stand-in status\n")
            ok = path.startswith("/vcek/v1/") or path.startswith("/vlek/v1/")
            file = os.path.realpath(os.path.join(root, path.lstrip("/")))
            if not ok or not file.startswith(root + os.sep) or not os.path.isfile(file):
                self.record(path, query, 404)
                return self.answer(404, b"Not Found\n")
            qfile = file + ".query"
            if os.path.isfile(qfile):
                with open(qfile) as f:
                    if f.read().strip() != query:
                        self.record(path, query, 404)
                        return self.answer(404, b"Not Found\n")
            with open(file, "rb") as f:
                body = f.read()
            self.record(path, query, 200)
            if path.endswith("/cert_chain"):
                return self.answer(200, body, "application/x-pem-file")
            return self.answer(200, body, "application/x-x509-ca-cert")

    server = http.server.ThreadingHTTPServer((args.listen, args.port), Handler)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
