#!/usr/bin/env python3
"""Writes the case list that berth's driver and every peer's driver read (tests/bench/peers/).

The real artefacts of ../shared/testdata/attestation/ (BERTH_TESTDATA) are read in place: base
cases point at them. Mutated cases (a seeded, deterministic generator) are written under
--out, one file per mutated artefact, and point at those.

One case per line, space-separated fields, the first the case's id:

  ID kind=quote expect=E mut=M ak=PEM akpub=TPMT_PUBLIC|- quote=F sig=F pcrs=F pcrblob=F
      bank=sha256 nonce=HEX
  ID kind=eventlog expect=E mut=M log=F pcrs=F bank=sha256
  ID kind=snp expect=E mut=M report=F vcek=DER ask=DER ark=DER at=UNIX
  ID kind=akcert expect=E mut=M leaf=DER inter=DER[,DER...] root=DER ak=PEM akpub=TPMT_PUBLIC|- at=UNIX

E is valid, invalid, or ? (a mutation whose right verdict is not known in advance: the
drivers' verdicts are compared with each other). `pcrs` files are `BANK INDEX HEX` lines;
`pcrblob` is the same values in tpm2-tools' pcrs file layout (tpm2_quote -o), which Keylime
and tpm2_checkquote read; `nonce` is the expected extraData in hex (empty: none). Stdlib
only.
"""
import argparse
import base64
import os
import random
import struct
import sys

BANKS = {"sha1": (0x0004, 20), "sha256": (0x000B, 32), "sha384": (0x000C, 48), "sha512": (0x000D, 64)}
# 2025-01-01T00:00:00Z: inside every SNP certificate's validity (the README's fixed time).
SNP_AT = 1735689600


def read(path):
    with open(path, "rb") as f:
        return f.read()


def pem_to_der(data):
    text = data.decode()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


def der_to_pem(der, label):
    b = base64.b64encode(der).decode()
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return ("-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)).encode()


def pem_key_der(data):
    text = data.decode()
    body = text.split("-----BEGIN PUBLIC KEY-----")[1].split("-----END PUBLIC KEY-----")[0]
    return base64.b64decode("".join(body.split()))


def parse_pcrs(path, bank=None):
    """{bank: {index: bytes}} from `INDEX HEX` (bank given) or `BANK INDEX HEX` lines."""
    out = {}
    for line in read(path).decode().splitlines():
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if len(f) == 2:
            b, i, h = bank, f[0], f[1]
        else:
            b, i, h = f
        out.setdefault(b, {})[int(i)] = bytes.fromhex(h)
    return out


def pcr_text(pcrs):
    lines = []
    for b in sorted(pcrs):
        for i in sorted(pcrs[b]):
            lines.append("%s %d %s" % (b, i, pcrs[b][i].hex()))
    return ("\n".join(lines) + "\n").encode()


def pcr_blob(values, bank):
    """tpm2-tools' pcrs file: TPML_PCR_SELECTION then TPML_DIGESTs, as C structs in memory
    (little endian, TPMS_PCR_SELECTION padded to 8 bytes, TPM2B_DIGEST to 66)."""
    alg = BANKS[bank][0]
    mask = 0
    for i in values:
        mask |= 1 << i
    sel = struct.pack("<I", 1)
    entries = [struct.pack("<HB", alg, 3) + mask.to_bytes(3, "little") + b"\0\0"]
    entries += [b"\0" * 8] * 15
    sel += b"".join(entries)
    digests = [values[i] for i in sorted(values)]
    chunks = [digests[i:i + 8] for i in range(0, len(digests), 8)]
    out = sel + struct.pack("<I", len(chunks))
    for c in chunks:
        out += struct.pack("<I", len(c))
        for k in range(8):
            d = c[k] if k < len(c) else b""
            out += struct.pack("<H", len(d)) + d + b"\0" * (64 - len(d))
    return out


class Writer:
    def __init__(self, out):
        self.out = out
        self.lines = []
        self.n = 0

    def file(self, name, data):
        path = os.path.join(self.out, "files", name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def case(self, cid, fields):
        self.lines.append(cid + " " + " ".join("%s=%s" % (k, v) for k, v in fields.items()))


def flip(data, rng, lo=0, hi=None):
    hi = len(data) if hi is None else hi
    i = rng.randrange(lo, hi)
    b = bytearray(data)
    b[i] ^= 1 << rng.randrange(8)
    return bytes(b), i


def quote_bases(td):
    bases = []
    for d, nonce, tag in (("tpm-gce-cos85-nonce9009", "9009", "gce9009"),
                          ("tpm-gce-cos85-no-nonce", "", "gcenonone")):
        for bank in ("sha1", "sha256", "sha384"):
            bases.append(dict(id="q-%s-%s" % (tag, bank), ak=f"{td}/{d}/ak_pub.pem",
                              akpub=f"{td}/{d}/ak_pub.tpmt_public",
                              quote=f"{td}/{d}/quote_{bank}.tpms_attest",
                              sig=f"{td}/{d}/quote_{bank}.tpmt_signature",
                              pcrs=parse_pcrs(f"{td}/{d}/pcrs_{bank}.txt", bank), bank=bank,
                              nonce=nonce, expect="valid"))
    for vm in ("tdx", "amd"):
        d = f"{td}/tpm-gcp-ecc-ak-vaportpm"
        bases.append(dict(id="q-vaportpm-" + vm, ak=f"{d}/{vm}_ak_pub.pem", akpub="-",
                          quote=f"{d}/{vm}_quote.tpms_attest", sig=f"{d}/{vm}_quote.tpmt_signature",
                          pcrs=parse_pcrs(f"{d}/{vm}_pcrs_sha256.txt", "sha256"), bank="sha256",
                          nonce=read(f"{d}/{vm}_nonce.hex").decode().strip(), expect="valid"))
    d = f"{td}/tpm-keylime-swtpm-checkquote"
    bases.append(dict(id="q-keylime-swtpm", ak=f"{d}/ak_pub.pem", akpub="-",
                      quote=f"{d}/quote.tpms_attest", sig=f"{d}/quote.tpmt_signature",
                      pcrs=parse_pcrs(f"{d}/pcrs_sha256.txt", "sha256"), bank="sha256",
                      nonce=read(f"{d}/nonce.txt").strip().hex(), expect="valid"))
    return bases


def emit_quote(w, b, mut="-", expect=None, **over):
    c = dict(b)
    c.update(over)
    cid = c["id"] if mut == "-" else "%s~%s" % (c["id"], mut)
    pcrs = c["pcrs"]
    bank = c["bank"]
    if mut == "-" or "pcrs" in over or "pcrs_file" not in c:
        c["pcrs_file"] = w.file(cid + ".pcrs", pcr_text(pcrs))
        c["pcrblob_file"] = w.file(cid + ".pcrblob", pcr_blob(pcrs.get(bank, {}), bank))
    for k in ("quote", "sig", "ak"):
        if isinstance(c[k], bytes):
            c[k] = w.file("%s.%s" % (cid, k), c[k])
    w.case(cid, dict(kind="quote", expect=expect or c["expect"], mut=mut, ak=c["ak"],
                     akpub=c["akpub"], quote=c["quote"], sig=c["sig"], pcrs=c["pcrs_file"],
                     pcrblob=c["pcrblob_file"], bank=bank, nonce=c["nonce"]))
    return c


def gen_quote(w, td, rng, per_base):
    bases = quote_bases(td)
    base_files = {}
    for b in bases:
        base_files[b["id"]] = emit_quote(w, b)
    # Known-invalid cases from the README.
    b = next(x for x in bases if x["id"] == "q-gcenonone-sha256")
    emit_quote(w, base_files[b["id"]], "need-nonce", "invalid", nonce="9009")
    b = base_files["q-keylime-swtpm"]
    q = bytearray(read(b["quote"]))
    q[5] ^= 0x01
    emit_quote(w, b, "readme-byte5", "invalid", quote=bytes(q))
    emit_quote(w, b, "readme-nonce", "invalid", nonce=b"Ai5M5SjYjnkyv4P7itH2".hex())
    p = {k: dict(v) for k, v in b["pcrs"].items()}
    p["sha256"][16] = bytes(32)
    emit_quote(w, b, "readme-pcr16", "invalid", pcrs=p)

    kinds = ["attest-flip", "attest-trunc", "attest-extend", "sig-flip-header", "sig-flip-body",
             "sig-trunc", "sig-extend", "pcr-flip", "pcr-missing", "pcr-extra", "nonce-flip",
             "nonce-extend", "nonce-empty", "ak-swap", "ak-flip"]
    for b in bases:
        bf = base_files[b["id"]]
        attest, sig, ak = read(b["quote"]), read(b["sig"]), read(b["ak"])
        for n in range(per_base):
            k = kinds[n % len(kinds)]
            tag = "%s-%d" % (k, n)
            if k == "attest-flip":
                data, i = flip(attest, rng)
                emit_quote(w, bf, "%s@%d" % (tag, i), "?", quote=data)
            elif k == "attest-trunc":
                emit_quote(w, bf, tag, "?", quote=attest[:rng.randrange(len(attest))])
            elif k == "attest-extend":
                emit_quote(w, bf, tag, "?", quote=attest + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5))))
            elif k == "sig-flip-header":
                data, i = flip(sig, rng, 0, 6)
                emit_quote(w, bf, "%s@%d" % (tag, i), "?", sig=data)
            elif k == "sig-flip-body":
                data, i = flip(sig, rng, 6)
                emit_quote(w, bf, "%s@%d" % (tag, i), "?", sig=data)
            elif k == "sig-trunc":
                emit_quote(w, bf, tag, "?", sig=sig[:rng.randrange(len(sig))])
            elif k == "sig-extend":
                emit_quote(w, bf, tag, "?", sig=sig + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5))))
            elif k in ("pcr-flip", "pcr-missing", "pcr-extra"):
                p = {bk: dict(v) for bk, v in b["pcrs"].items()}
                bank = p[b["bank"]]
                idx = rng.choice(sorted(bank))
                if k == "pcr-flip":
                    bank[idx], j = flip(bank[idx], rng)
                    tag += "@pcr%d" % idx
                elif k == "pcr-missing":
                    del bank[idx]
                    tag += "@pcr%d" % idx
                else:
                    free = [i for i in range(24) if i not in bank]
                    if not free:  # every PCR is quoted: a value in another bank instead
                        other = "sha512"
                        p[other] = {idx: bytes(rng.randrange(256) for _ in range(64))}
                        tag += "@%s:%d" % (other, idx)
                    else:
                        i = rng.choice(free)
                        bank[i] = bytes(rng.randrange(256) for _ in range(BANKS[b["bank"]][1]))
                        tag += "@pcr%d" % i
                emit_quote(w, bf, tag, "?", pcrs=p)
            elif k == "nonce-flip":
                nb = bytes.fromhex(b["nonce"])
                if not nb:
                    nb = b"\x00"
                else:
                    nb, _ = flip(nb, rng)
                emit_quote(w, bf, tag, "?", nonce=nb.hex())
            elif k == "nonce-extend":
                emit_quote(w, bf, tag, "?", nonce=b["nonce"] + "%02x" % rng.randrange(256))
            elif k == "nonce-empty":
                if not b["nonce"]:
                    emit_quote(w, bf, tag, "?", nonce="9009")
                else:
                    emit_quote(w, bf, tag, "?", nonce=b["nonce"][:-2])
            elif k == "ak-swap":
                other = rng.choice([x for x in bases if x["ak"] != b["ak"]])
                emit_quote(w, bf, tag + "@" + other["id"], "?", ak=other["ak"], akpub=other["akpub"])
            elif k == "ak-flip":
                der = pem_key_der(ak)
                data, i = flip(der, rng)
                emit_quote(w, bf, "%s@%d" % (tag, i), "?", ak=der_to_pem(data, "PUBLIC KEY"), akpub="-")


def gen_eventlog(w, td, rng, per_base):
    bases = []
    d = f"{td}/eventlogs-gotpmtools"
    for name in ("arch-linux-workstation", "glinux-alex", "debian-10", "rhel8-uefi", "gdc-host",
                 "ubuntu-2404-amd-sevsnp"):
        pcrs = parse_pcrs(f"{d}/{name}.expected_pcrs.txt")
        bank = "sha256" if "sha256" in pcrs else "sha1"
        bases.append(dict(id="e-" + name, log=f"{d}/{name}.bin", pcrs={bank: pcrs[bank]}, bank=bank))
    for tag, g in (("e-gce-cos85", "tpm-gce-cos85-nonce9009"),):
        pcrs = parse_pcrs(f"{td}/{g}/pcrs_sha256.txt", "sha256")
        # The log extends PCR 0-9 (README); the quote's other PCRs are not the log's.
        bases.append(dict(id=tag, log=f"{td}/{g}/event_log.bin",
                          pcrs={"sha256": {i: v for i, v in pcrs["sha256"].items() if i <= 9}},
                          bank="sha256"))

    def emit(b, mut="-", expect="valid", log=None, pcrs=None):
        cid = b["id"] if mut == "-" else "%s~%s" % (b["id"], mut)
        logp = w.file(cid + ".log", log) if log is not None else b["log"]
        pf = w.file(cid + ".pcrs", pcr_text(pcrs if pcrs is not None else b["pcrs"]))
        w.case(cid, dict(kind="eventlog", expect=expect, mut=mut, log=logp, pcrs=pf, bank=b["bank"]))

    kinds = ["log-flip", "log-flip", "log-flip", "log-trunc", "log-extend", "pcr-flip"]
    for b in bases:
        emit(b)
        log = read(b["log"])
        for n in range(per_base):
            k = kinds[n % len(kinds)]
            tag = "%s-%d" % (k, n)
            if k == "log-flip":
                data, i = flip(log, rng)
                emit(b, "%s@%d" % (tag, i), "?", log=data)
            elif k == "log-trunc":
                emit(b, tag, "?", log=log[:rng.randrange(len(log))])
            elif k == "log-extend":
                emit(b, tag, "?", log=log + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
            else:
                p = {bk: dict(v) for bk, v in b["pcrs"].items()}
                idx = rng.choice(sorted(p[b["bank"]]))
                p[b["bank"]][idx], _ = flip(p[b["bank"]][idx], rng)
                emit(b, "%s@pcr%d" % (tag, idx), "?", pcrs=p)


# SEV-SNP report regions (AMD SEV-SNP ABI, table "ATTESTATION_REPORT").
SNP_REGIONS = [
    ("version", 0x000, 0x004), ("guest_svn", 0x004, 0x008), ("policy", 0x008, 0x010),
    ("family_image_id", 0x010, 0x030), ("vmpl", 0x030, 0x034), ("signature_algo", 0x034, 0x038),
    ("current_tcb", 0x038, 0x040), ("platform_info", 0x040, 0x048), ("signer_info", 0x048, 0x04C),
    ("reserved0", 0x04C, 0x050), ("report_data", 0x050, 0x090), ("measurement", 0x090, 0x0C0),
    ("host_data", 0x0C0, 0x0E0), ("id_key_digest", 0x0E0, 0x110), ("author_key_digest", 0x110, 0x140),
    ("report_id", 0x140, 0x160), ("report_id_ma", 0x160, 0x180), ("reported_tcb", 0x180, 0x188),
    ("cpuid_reserved", 0x188, 0x1A0), ("chip_id", 0x1A0, 0x1E0), ("committed_tcb", 0x1E0, 0x1E8),
    ("current_version", 0x1E8, 0x1EC), ("committed_version", 0x1EC, 0x1F0),
    ("launch_tcb", 0x1F0, 0x1F8), ("reserved2", 0x1F8, 0x2A0),
    ("sig_r", 0x2A0, 0x2D0), ("sig_r_pad", 0x2D0, 0x2E8), ("sig_s", 0x2E8, 0x318),
    ("sig_s_pad", 0x318, 0x330), ("sig_reserved", 0x330, 0x4A0),
]


def gen_snp(w, td, rng, per_base):
    bases = []
    d = f"{td}/snp-virtee-milan"
    bases.append(dict(id="s-virtee-milan", report=f"{d}/report_milan.bin", vcek=read(f"{d}/vcek_milan.der"),
                      ask=pem_to_der(read(f"{d}/ask_milan.pem")), ark=pem_to_der(read(f"{d}/ark_milan.pem"))))
    d = f"{td}/snp-cmc-milan"
    bases.append(dict(id="s-cmc-milan", report=f"{d}/report.bin", vcek=pem_to_der(read(f"{d}/vcek.pem")),
                      ask=pem_to_der(read(f"{d}/ask_milan.pem")), ark=pem_to_der(read(f"{d}/ark_milan.pem"))))
    files = {}
    for b in bases:
        for k in ("vcek", "ask", "ark"):
            files[(b["id"], k)] = w.file("%s.%s.der" % (b["id"], k), b[k])

    def emit(b, mut="-", expect="valid", report=None, at=SNP_AT, **certs):
        cid = b["id"] if mut == "-" else "%s~%s" % (b["id"], mut)
        rp = w.file(cid + ".report", report) if report is not None else b["report"]
        fields = dict(kind="snp", expect=expect, mut=mut, report=rp)
        for k in ("vcek", "ask", "ark"):
            fields[k] = w.file("%s.%s.der" % (cid, k), certs[k]) if k in certs else files[(b["id"], k)]
        fields["at"] = str(at)
        w.case(cid, fields)

    v, c = bases
    emit(v)
    emit(c)
    # The README's invalid cases.
    r = bytearray(read(v["report"]))
    r[21] ^= 0x80
    emit(v, "readme-report21", "invalid", report=bytes(r))
    vc = bytearray(v["vcek"])
    vc[40] ^= 0xFF
    emit(v, "readme-vcek40", "invalid", vcek=bytes(vc))
    emit(c, "readme-badsig", "invalid", report=read(f"{td}/snp-cmc-milan/report_INVALID_SIGNATURE.bin"))
    emit(c, "readme-badvcek", "invalid", vcek=pem_to_der(read(f"{td}/snp-cmc-milan/vcek_INVALID.pem")))
    emit(v, "vcek-swap", "invalid", vcek=c["vcek"])
    emit(c, "vcek-swap", "invalid", vcek=v["vcek"])
    emit(v, "at-2020", "invalid", at=1577836800)   # before the VCEK's notBefore
    emit(v, "at-2031", "invalid", at=1924992000)   # after the VCEK's notAfter
    genoa_ark = pem_to_der(read(f"{td}/amd-roots/ark_genoa.pem"))
    genoa_ask = pem_to_der(read(f"{td}/amd-roots/ask_genoa.pem"))
    emit(v, "genoa-roots", "invalid", ask=genoa_ask, ark=genoa_ark)

    kinds = ["report-region", "report-region", "report-region", "report-region", "report-trunc",
             "report-extend", "vcek-flip", "vcek-flip", "ask-flip", "ark-flip", "vcek-trunc"]
    for b in bases:
        report = read(b["report"])
        for n in range(per_base):
            k = kinds[n % len(kinds)]
            tag = "%s-%d" % (k, n)
            if k == "report-region":
                name, lo, hi = SNP_REGIONS[(n // len(kinds) * 4 + n % len(kinds)) % len(SNP_REGIONS)]
                data, i = flip(report, rng, lo, hi)
                emit(b, "%s-%s@%#x" % (tag, name, i), "?", report=data)
            elif k == "report-trunc":
                emit(b, tag, "?", report=report[:rng.randrange(len(report))])
            elif k == "report-extend":
                emit(b, tag, "?", report=report + bytes(rng.randrange(1, 64)))
            elif k == "vcek-trunc":
                emit(b, tag, "?", vcek=b["vcek"][:rng.randrange(len(b["vcek"]))])
            else:
                which = k.split("-")[0]
                data, i = flip(b[which], rng)
                emit(b, "%s@%d" % (tag, i), "?", **{which: data})


def pem_certs(data):
    text = data.decode()
    out = []
    for part in text.split("-----BEGIN CERTIFICATE-----")[1:]:
        body = part.split("-----END CERTIFICATE-----")[0]
        out.append(base64.b64decode("".join(body.split())))
    return out


def any_cert(data):
    return pem_to_der(data) if data.startswith(b"-----BEGIN") else data


def gen_akcert(w, td, rng, per_base):
    """AK certificates: the leaf through its intermediate to a trusted root, at a time, and the
    leaf's key equal to the AK."""
    g = f"{td}/tpm-gce-cos85-nonce9009"
    bases = [dict(id="a-gce-cos85", leaf=read(f"{g}/ak_cert.der"),
                  inter=[any_cert(read(f"{g}/tpm_ek_intermediate_2.crt"))],
                  root=any_cert(read(f"{g}/tpm_ek_root_1.cer")), ak=f"{g}/ak_pub.pem",
                  akpub=f"{g}/ak_pub.tpmt_public", at=1735689600)]
    v = f"{td}/tpm-gcp-ecc-ak-vaportpm"
    for vm in ("tdx", "amd"):
        leaf, inter, root = pem_certs(read(f"{v}/{vm}_ak_cert_chain.pem"))
        # The README: the chain is valid at 2026-02-04.
        bases.append(dict(id="a-vaportpm-" + vm, leaf=leaf, inter=[inter], root=root,
                          ak=f"{v}/{vm}_ak_pub.pem", akpub="-", at=1770163200))

    def emit(b, mut="-", expect="valid", **over):
        c = dict(b)
        c.update(over)
        cid = b["id"] if mut == "-" else "%s~%s" % (b["id"], mut)
        f = dict(kind="akcert", expect=expect, mut=mut)
        f["leaf"] = w.file(cid + ".leaf.der", c["leaf"])
        f["inter"] = ",".join(w.file("%s.inter%d.der" % (cid, i), d) for i, d in enumerate(c["inter"]))
        f["root"] = w.file(cid + ".root.der", c["root"])
        f["ak"] = c["ak"] if isinstance(c["ak"], str) else w.file(cid + ".ak.pem", c["ak"])
        f["akpub"] = c["akpub"]
        f["at"] = str(c["at"])
        w.case(cid, f)

    for b in bases:
        emit(b)
    g0, t0, a0 = bases
    emit(t0, "leaf-swap", "invalid", leaf=a0["leaf"])
    emit(t0, "ak-swap", "invalid", ak=a0["ak"])
    emit(g0, "no-intermediate", "invalid", inter=[])
    emit(g0, "root-as-leaf-issuer", "invalid", root=t0["root"])
    emit(t0, "at-2020", "invalid", at=1577836800)
    emit(t0, "at-2100", "invalid", at=4102444800)
    kinds = ["leaf-flip", "leaf-flip", "leaf-flip", "inter-flip", "root-flip", "leaf-trunc", "leaf-extend"]
    for b in bases:
        for n in range(per_base):
            k = kinds[n % len(kinds)]
            tag = "%s-%d" % (k, n)
            if k == "leaf-flip":
                data, i = flip(b["leaf"], rng)
                emit(b, "%s@%d" % (tag, i), "?", leaf=data)
            elif k == "inter-flip":
                data, i = flip(b["inter"][0], rng)
                emit(b, "%s@%d" % (tag, i), "?", inter=[data])
            elif k == "root-flip":
                data, i = flip(b["root"], rng)
                emit(b, "%s@%d" % (tag, i), "?", root=data)
            elif k == "leaf-trunc":
                emit(b, tag, "?", leaf=b["leaf"][:rng.randrange(len(b["leaf"]))])
            else:
                emit(b, tag, "?", leaf=b["leaf"] + bytes(rng.randrange(1, 8)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--per-base", type=int, default=60,
                    help="mutations per base case and kind (quote: 10 bases, eventlog: 7, snp: 2 x 4)")
    ap.add_argument("--testdata", default=os.environ.get("BERTH_TESTDATA"))
    a = ap.parse_args()
    td = a.testdata
    if not td:
        td = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/testdata/attestation")
    td = os.path.abspath(td)
    a.out = os.path.abspath(a.out)
    if not os.path.isdir(td):
        sys.exit("gen_cases: no testdata at %s (set BERTH_TESTDATA)" % td)
    os.makedirs(os.path.join(a.out, "files"), exist_ok=True)
    w = Writer(a.out)
    rng = random.Random(a.seed)
    gen_quote(w, td, rng, a.per_base)
    gen_eventlog(w, td, rng, a.per_base)
    gen_snp(w, td, rng, a.per_base * 4)
    gen_akcert(w, td, rng, a.per_base * 2)
    with open(os.path.join(a.out, "cases.txt"), "w") as f:
        f.write("\n".join(w.lines) + "\n")
    with open(os.path.join(a.out, "valid.txt"), "w") as f:
        f.write("\n".join(l for l in w.lines if " expect=valid " in l) + "\n")
    counts = {}
    for l in w.lines:
        k = l.split(" kind=")[1].split()[0]
        counts[k] = counts.get(k, 0) + 1
    print("gen_cases: seed %d, %s in %s" % (a.seed, ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())), a.out))


if __name__ == "__main__":
    main()
