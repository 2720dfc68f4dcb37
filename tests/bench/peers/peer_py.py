#!/usr/bin/env python3
"""Keylime's and tpm2-tools' drivers for tests/bench/peers: the case list of gen_cases.py, the
drivers' common output line (RESULT, tab-separated: driver, case, kind, verdict, ops/s,
iterations, reason).

  peer_py.py --peer keylime|tpm2_checkquote CASES [--seconds S] [--iters N] [--kind K] [--case ID]

keylime (run with .bench/peers/venv's python):
  quote    keylime.tpm.tpm_util.checkquote, the function the verifier's Tpm.check_quote calls to
           check a quote: the PEM AK, signature, nonce (extraData), pcrDigest over the PCR
           values in tpm2-tools' pcrs layout; the verifier's expected hash, sha256.
  eventlog keylime.mba.mba.bootlog_parse (its default parser, tpm2_tools_elparser, which runs
           tpm2_eventlog in a subprocess) and the comparison Tpm.check_pcrs makes between the
           log's PCR values and the quoted ones, for the PCRs it checks (config.MEASUREDBOOT_PCRS).
tpm2_checkquote (Debian's tpm2-tools): quote only, one process per verification:
  tpm2_checkquote -u AK.pem -m QUOTE -s SIG -f PCRBLOB -g sha256 [-q NONCE]
  (no -q when the expected nonce is empty: tpm2_checkquote then does not check extraData).
"""
import argparse
import base64
import os
import subprocess
import sys
import time


def read_cases(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            c = {"id": fields[0]}
            for kv in fields[1:]:
                k, _, v = kv.partition("=")
                c[k] = v
            out.append(c)
    return out


def read(c, key):
    p = c.get(key, "")
    if not p or p == "-":
        return None
    with open(p, "rb") as f:
        return f.read()


def read_pcrs(c):
    out = {}
    for line in read(c, "pcrs").decode().splitlines():
        f = line.split()
        if len(f) == 3:
            out.setdefault(f[0], {})[int(f[1])] = f[2]
    return out


# ---- keylime ----

def keylime_quote(c):
    from keylime.tpm import tpm_util

    ak, quote, sig, blob = read(c, "ak"), read(c, "quote"), read(c, "sig"), read(c, "pcrblob")
    nonce = bytes.fromhex(c["nonce"])

    def run():
        tpm_util.checkquote(ak, nonce, sig, quote, blob, "sha256")

    return run


_mba_loaded = False


def keylime_eventlog(c):
    global _mba_loaded
    from keylime import config
    from keylime.mba import mba

    if not _mba_loaded:
        mba.load_imports(skip_custom_policies=True)
        _mba_loaded = True
    log_b64 = base64.b64encode(read(c, "log")).decode()
    bank = c["bank"]
    quoted = read_pcrs(c).get(bank, {})
    checked = set(config.MEASUREDBOOT_PCRS)

    def run():
        mb_pcrs_hashes, _, _, failure = mba.bootlog_parse(log_b64, bank)
        if failure:
            raise ValueError("bootlog_parse: %s" % failure.get_event_ids())
        # Tpm.check_pcrs: the log's value (0 when the log does not extend it) against the quote's.
        for pcr in sorted(checked & set(quoted)):
            from_log = hex(mb_pcrs_hashes.get(str(pcr), 0))[2:].lstrip("0")
            if from_log != quoted[pcr].lstrip("0"):
                raise ValueError("PCR %d: the boot event log has %s, the quote %s" % (pcr, from_log, quoted[pcr]))

    return run


# ---- tpm2_checkquote ----

def tpm2_checkquote(c):
    args = ["tpm2_checkquote", "-u", c["ak"], "-m", c["quote"], "-s", c["sig"], "-f", c["pcrblob"],
            "-g", "sha256"]
    if c["nonce"]:
        args += ["-q", c["nonce"]]

    def run():
        p = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise ValueError("exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace").strip()))

    return run


LOADERS = {
    "keylime": {"quote": keylime_quote, "eventlog": keylime_eventlog},
    "tpm2_checkquote": {"quote": tpm2_checkquote},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("--peer", required=True, choices=sorted(LOADERS))
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--kind", default="")
    ap.add_argument("--case", default="")
    a = ap.parse_args()
    if a.peer == "keylime":
        # Keylime logs every failed check at ERROR with a traceback; the verdict line says why.
        import logging

        logging.disable(logging.CRITICAL)
    loaders = LOADERS[a.peer]
    for c in read_cases(a.cases):
        k = c.get("kind")
        if (a.kind and k != a.kind) or (a.case and c["id"] != a.case) or k not in loaders:
            continue
        run = None
        try:
            run = loaders[k](c)
            run()
            verdict, reason = "valid", "ok"
        except Exception as e:  # noqa: BLE001 - any exception is the peer's refusal
            cause = e.__cause__ or e.__context__
            verdict, reason = "invalid", "%s: %s%s" % (type(e).__name__, e, " (from %s: %s)" % (type(cause).__name__, cause) if cause else "")
        n, ops = 0, 0.0
        if run is not None and (a.seconds > 0 or a.iters > 0):
            start = time.perf_counter()
            until = start + a.seconds
            while True:
                try:
                    run()
                except Exception:  # noqa: BLE001
                    pass
                n += 1
                if (a.iters and n >= a.iters) or (not a.iters and time.perf_counter() >= until):
                    break
            ops = n / (time.perf_counter() - start)
        reason = reason.replace("\t", " ").replace("\n", " ")
        print("RESULT\t%s\t%s\t%s\t%s\t%.1f\t%d\t%s" % (a.peer, c["id"], k, verdict, ops, n, reason), flush=True)


if __name__ == "__main__":
    sys.exit(main())
