// The Go peers' driver for tests/bench/peers: the same case list as berth's driver
// (gen_cases.py), the same output line (RESULT, tab-separated: driver, case, kind, verdict,
// ops/s, iterations, reason).
//
//	peer-go -peer go-attestation|go-tpm-tools|go-sev-guest CASES [-seconds S] [-iters N] [-kind K] [-case ID]
//
// go-attestation: quote = attest.ParseAKPublic (TPMT_PUBLIC, else the PEM key) and
// AKPublic.Verify; eventlog = attest.ParseEventLog and EventLog.Verify (replay against the
// PCRs). go-tpm-tools: quote = quote.Verify, the function server.VerifyAttestation calls on
// each quote (the AK from TPMT_PUBLIC via tpm2.DecodePublic, else the PEM key). go-sev-guest:
// snp = verify.SnpAttestation with the case's VCEK/ASK/ARK as the attestation's certificate
// chain, certificate fetching off, Now = the case's time, the library's embedded AMD roots.
// go-tpm-tools also: akcert = server.VerifyAKCert and the certificate's key equal to the AK.
// Each iteration does all the work from the case's bytes, read once.
package main

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	tpmquote "github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
)

type tcase map[string]string

func readCases(path string) ([]tcase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []tcase
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		c := tcase{"id": fields[0]}
		for _, kv := range fields[1:] {
			if k, v, ok := strings.Cut(kv, "="); ok {
				c[k] = v
			}
		}
		out = append(out, c)
	}
	return out, s.Err()
}

func readFile(c tcase, key string) ([]byte, error) {
	p := c[key]
	if p == "" || p == "-" {
		return nil, nil
	}
	return os.ReadFile(p)
}

var hashes = map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}
var tpmHashes = map[string]tpmpb.HashAlgo{"sha1": tpmpb.HashAlgo_SHA1, "sha256": tpmpb.HashAlgo_SHA256, "sha384": tpmpb.HashAlgo_SHA384, "sha512": tpmpb.HashAlgo_SHA512}

type pcrLine struct {
	bank  string
	index int
	value []byte
}

func readPcrs(c tcase) ([]pcrLine, error) {
	data, err := readFile(c, "pcrs")
	if err != nil {
		return nil, err
	}
	var out []pcrLine
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		i, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, err
		}
		v, err := hex.DecodeString(f[2])
		if err != nil {
			return nil, err
		}
		out = append(out, pcrLine{f[0], i, v})
	}
	return out, nil
}

func attestPCRs(lines []pcrLine) []attest.PCR {
	var out []attest.PCR
	for _, l := range lines {
		out = append(out, attest.PCR{Index: l.index, Digest: l.value, DigestAlg: hashes[l.bank]})
	}
	return out
}

func pemKey(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

type verification func() error

// go-attestation: AKPublic.Verify.
func loadGoAttestationQuote(c tcase) (verification, error) {
	akPEM, err := readFile(c, "ak")
	if err != nil {
		return nil, err
	}
	akPub, err := readFile(c, "akpub")
	if err != nil {
		return nil, err
	}
	q, err := readFile(c, "quote")
	if err != nil {
		return nil, err
	}
	sig, err := readFile(c, "sig")
	if err != nil {
		return nil, err
	}
	lines, err := readPcrs(c)
	if err != nil {
		return nil, err
	}
	nonce, err := hex.DecodeString(c["nonce"])
	if err != nil {
		return nil, err
	}
	return func() error {
		var ak *attest.AKPublic
		if akPub != nil {
			ak, err = attest.ParseAKPublic(akPub)
			if err != nil {
				return err
			}
		} else {
			// A PEM key carries no signing scheme: the AK's hash is SHA-256, as on every AK here.
			k, err := pemKey(akPEM)
			if err != nil {
				return err
			}
			ak = &attest.AKPublic{Public: k, Hash: crypto.SHA256}
		}
		return ak.Verify(attest.Quote{Quote: q, Signature: sig}, attestPCRs(lines), nonce)
	}, nil
}

// go-attestation: ParseEventLog, then EventLog.Verify (replay, with its workarounds).
func loadGoAttestationEventLog(c tcase) (verification, error) {
	log, err := readFile(c, "log")
	if err != nil {
		return nil, err
	}
	lines, err := readPcrs(c)
	if err != nil {
		return nil, err
	}
	return func() error {
		el, err := attest.ParseEventLog(log)
		if err != nil {
			return err
		}
		_, err = el.Verify(attestPCRs(lines))
		return err
	}, nil
}

// go-tpm-tools: quote.Verify on a pb.Quote (what server.VerifyAttestation does per quote).
func loadGoTpmToolsQuote(c tcase) (verification, error) {
	akPEM, err := readFile(c, "ak")
	if err != nil {
		return nil, err
	}
	akPub, err := readFile(c, "akpub")
	if err != nil {
		return nil, err
	}
	q, err := readFile(c, "quote")
	if err != nil {
		return nil, err
	}
	sig, err := readFile(c, "sig")
	if err != nil {
		return nil, err
	}
	lines, err := readPcrs(c)
	if err != nil {
		return nil, err
	}
	nonce, err := hex.DecodeString(c["nonce"])
	if err != nil {
		return nil, err
	}
	pcrs := &tpmpb.PCRs{Hash: tpmHashes[c["bank"]], Pcrs: map[uint32][]byte{}}
	for _, l := range lines {
		if l.bank == c["bank"] {
			pcrs.Pcrs[uint32(l.index)] = l.value
		}
	}
	return func() error {
		var key crypto.PublicKey
		if akPub != nil {
			pub, err := tpm2.DecodePublic(akPub)
			if err != nil {
				return err
			}
			if key, err = pub.Key(); err != nil {
				return err
			}
		} else if key, err = pemKey(akPEM); err != nil {
			return err
		}
		return tpmquote.Verify(&tpmpb.Quote{Quote: q, RawSig: sig, Pcrs: pcrs}, key, nonce)
	}, nil
}

// go-tpm-tools: server.VerifyAKCert (the leaf through the intermediates to the root, with
// x509's clock: it takes no verification time) and the leaf's key equal to the AK.
func loadGoTpmToolsAKCert(c tcase) (verification, error) {
	leaf, err := readFile(c, "leaf")
	if err != nil {
		return nil, err
	}
	root, err := readFile(c, "root")
	if err != nil {
		return nil, err
	}
	var inters [][]byte
	for _, p := range strings.Split(c["inter"], ",") {
		if p == "" {
			continue
		}
		d, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		inters = append(inters, d)
	}
	akPEM, err := readFile(c, "ak")
	if err != nil {
		return nil, err
	}
	return func() error {
		l, err := x509.ParseCertificate(leaf)
		if err != nil {
			return err
		}
		r, err := x509.ParseCertificate(root)
		if err != nil {
			return err
		}
		var is []*x509.Certificate
		for _, d := range inters {
			i, err := x509.ParseCertificate(d)
			if err != nil {
				return err
			}
			is = append(is, i)
		}
		if err := server.VerifyAKCert(l, []*x509.Certificate{r}, is); err != nil {
			return err
		}
		ak, err := pemKey(akPEM)
		if err != nil {
			return err
		}
		if k, ok := l.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(ak) {
			return errors.New("the AK certificate's key is not the AK")
		}
		return nil
	}, nil
}

// go-sev-guest: verify.SnpAttestation.
func loadGoSevGuest(c tcase) (verification, error) {
	report, err := readFile(c, "report")
	if err != nil {
		return nil, err
	}
	vcek, err := readFile(c, "vcek")
	if err != nil {
		return nil, err
	}
	ask, err := readFile(c, "ask")
	if err != nil {
		return nil, err
	}
	ark, err := readFile(c, "ark")
	if err != nil {
		return nil, err
	}
	at, err := strconv.ParseInt(c["at"], 10, 64)
	if err != nil {
		return nil, err
	}
	now := time.Unix(at, 0)
	return func() error {
		r, err := abi.ReportToProto(report)
		if err != nil {
			return err
		}
		att := &spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{
			VcekCert: vcek, AskCert: ask, ArkCert: ark}}
		return verify.SnpAttestation(att, &verify.Options{DisableCertFetching: true, Now: now})
	}, nil
}

func main() {
	peer := flag.String("peer", "", "go-attestation, go-tpm-tools or go-sev-guest")
	seconds := flag.Float64("seconds", 0, "benchmark each case for this long")
	iters := flag.Int("iters", 0, "benchmark each case for this many iterations")
	kind := flag.String("kind", "", "only this kind")
	only := flag.String("case", "", "only this case")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: peer-go -peer NAME CASES [-seconds S] [-iters N]")
		os.Exit(2)
	}
	loaders := map[string]map[string]func(tcase) (verification, error){
		"go-attestation": {"quote": loadGoAttestationQuote, "eventlog": loadGoAttestationEventLog},
		"go-tpm-tools":   {"quote": loadGoTpmToolsQuote, "akcert": loadGoTpmToolsAKCert},
		"go-sev-guest":   {"snp": loadGoSevGuest},
	}[*peer]
	if loaders == nil {
		fmt.Fprintln(os.Stderr, "peer-go: unknown -peer", *peer)
		os.Exit(2)
	}
	cases, err := readCases(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer-go:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, c := range cases {
		k := c["kind"]
		if (*kind != "" && k != *kind) || (*only != "" && c["id"] != *only) {
			continue
		}
		load, ok := loaders[k]
		if !ok {
			continue // this peer does not verify this kind
		}
		v, err := load(c)
		if err == nil {
			err = safely(v)
		}
		verdict, reason := "valid", "ok"
		if err != nil {
			verdict, reason = "invalid", strings.NewReplacer("\t", " ", "\n", " ").Replace(err.Error())
		}
		ops, n := 0.0, 0
		if v != nil && (*seconds > 0 || *iters > 0) {
			start := time.Now()
			until := start.Add(time.Duration(*seconds * float64(time.Second)))
			for {
				_ = safely(v)
				n++
				if (*iters > 0 && n >= *iters) || (*iters == 0 && !time.Now().Before(until)) {
					break
				}
			}
			ops = float64(n) / time.Since(start).Seconds()
		}
		fmt.Fprintf(w, "RESULT\t%s\t%s\t%s\t%s\t%.1f\t%d\t%s\n", *peer, c["id"], k, verdict, ops, n, reason)
		w.Flush()
	}
}

// A panic in a peer on malformed input is its verdict "invalid", named as a panic.
func safely(v verification) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return v()
}
