//! virtee's `sev` crate as a peer in tests/bench/peers: the case list of gen_cases.py (kind
//! snp), the drivers' common output line (RESULT, tab-separated: driver, case, kind, verdict,
//! ops/s, iterations, reason).
//!
//!   peer-sev CASES [--seconds S] [--iters N] [--case ID]
//!
//! One verification is the crate's own: `AttestationReport::from_bytes`, the certificates
//! with `Certificate::from_der`, then `Verifiable` for `(&Chain, &AttestationReport)`: ARK
//! self-signed, ARK -> ASK -> VCEK (`Verifiable` for `&Chain`), the report's signature with
//! the VCEK (`(&Certificate, &AttestationReport)`). The crate checks no validity period (so the
//! case's time is not used), no TCB or chip ID against the VCEK, and pins no ARK.
use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

type Case = HashMap<String, String>;

fn read_cases(path: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(path).expect("case list");
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut c = Case::new();
        c.insert("id".into(), fields.next().unwrap().into());
        for kv in fields {
            if let Some((k, v)) = kv.split_once('=') {
                c.insert(k.into(), v.into());
            }
        }
        out.push(c);
    }
    out
}

struct Inputs {
    report: Vec<u8>,
    vcek: Vec<u8>,
    ask: Vec<u8>,
    ark: Vec<u8>,
}

fn verify(i: &Inputs) -> Result<(), String> {
    let report = AttestationReport::from_bytes(&i.report).map_err(|e| format!("report: {e}"))?;
    let vcek = Certificate::from_der(&i.vcek).map_err(|e| format!("vcek: {e}"))?;
    let ask = Certificate::from_der(&i.ask).map_err(|e| format!("ask: {e}"))?;
    let ark = Certificate::from_der(&i.ark).map_err(|e| format!("ark: {e}"))?;
    let chain = Chain { ca: ca::Chain { ark, ask }, vek: vcek };
    (&chain, &report).verify().map_err(|e| format!("verify: {e}"))
}

fn safely(i: &Inputs) -> Result<(), String> {
    match std::panic::catch_unwind(|| verify(i)) {
        Ok(r) => r,
        Err(_) => Err("panic".into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: peer-sev CASES [--seconds S] [--iters N] [--case ID]");
        std::process::exit(2);
    }
    let (mut seconds, mut iters, mut only) = (0f64, 0u64, String::new());
    let mut a = 2;
    while a + 1 < args.len() {
        match args[a].as_str() {
            "--seconds" => seconds = args[a + 1].parse().unwrap(),
            "--iters" => iters = args[a + 1].parse().unwrap(),
            "--case" => only = args[a + 1].clone(),
            "--kind" => {}
            f => {
                eprintln!("peer-sev: unknown flag {f}");
                std::process::exit(2);
            }
        }
        a += 2;
    }
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::io::stdout();
    let mut out = out.lock();
    for c in read_cases(&args[1]) {
        if c["kind"] != "snp" || (!only.is_empty() && c["id"] != only) {
            continue;
        }
        let rd = |k: &str| std::fs::read(&c[k]).unwrap_or_default();
        let inputs = Inputs { report: rd("report"), vcek: rd("vcek"), ask: rd("ask"), ark: rd("ark") };
        let verdict = safely(&inputs);
        let (mut n, mut ops) = (0u64, 0f64);
        if seconds > 0.0 || iters > 0 {
            let start = Instant::now();
            let until = start + Duration::from_secs_f64(seconds);
            loop {
                let _ = safely(&inputs);
                n += 1;
                if (iters > 0 && n >= iters) || (iters == 0 && Instant::now() >= until) {
                    break;
                }
            }
            ops = n as f64 / start.elapsed().as_secs_f64();
        }
        let (v, reason) = match verdict {
            Ok(()) => ("valid", "ok".to_string()),
            Err(e) => ("invalid", e.replace(['\t', '\n'], " ")),
        };
        writeln!(out, "RESULT\tsev-crate\t{}\tsnp\t{}\t{:.1}\t{}\t{}", c["id"], v, ops, n, reason).unwrap();
        out.flush().unwrap();
    }
}
