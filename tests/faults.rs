//! The fault sweep: every command that moves or makes keys is run through the
//! PKCS#11 pass-through (tools/p11shim) once cleanly, to count its calls, and
//! then once per (function, call index) with that one call failing with
//! CKR_DEVICE_ERROR. After each faulted run:
//!
//! - either it succeeded and its result is complete (the fault was absorbed:
//!   a retried call, a failed clean-up of a session object): the output
//!   verifies and the token holds what a clean run leaves;
//! - or it failed with a code that names the device error (HK1401, exit 7;
//!   for the calls that open the token, any code naming CKR_DEVICE_ERROR),
//!   or with HK1403 (exit 9) when the faulted call was itself the clean-up
//!   C_DestroyObject, listing exactly what was left; and it left no file at
//!   `--out`, no temporary file, and the token's objects as they were.
//!
//! CI runs a sample of the positions; `HSMKEY_FAULT_SWEEP=full` runs all of
//! them (`scripts/faults.sh`). The sweep runs on SoftHSM only: the shim is
//! token-agnostic, and the token reset between runs copies SoftHSM's token
//! directory.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{code, Kind, ObjectRow, TestToken, KEK_VALUE};
use serde_json::Value;

const PASSWORD: &str = "Correct-Horse#42";
const DEVICE_ERROR: &str = "CKR_DEVICE_ERROR";
/// Calls whose failure means the token could not be opened: any code naming
/// the return value is accepted there.
const OPENING: &[&str] = &[
    "C_Initialize",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_OpenSession",
    "C_Login",
];

/// Calls that end an operation. A faulted one never reaches the token (the
/// shim answers it), so the operation stays active there and the next call
/// of its kind on that session gets CKR_OPERATION_ACTIVE: a failure named
/// after that later call is the shim's doing, not hsmkey's, and is accepted.
/// (cryptoki itself ignores a failing C_FindObjectsFinal.)
const FINISHING: &[&str] = &[
    "C_FindObjectsFinal",
    "C_Encrypt",
    "C_EncryptFinal",
    "C_Decrypt",
    "C_DecryptFinal",
    "C_Sign",
    "C_SignFinal",
    "C_Verify",
    "C_VerifyFinal",
    "C_Digest",
    "C_DigestFinal",
];

fn enabled() -> bool {
    common::kind() == Kind::SoftHsm
}

fn full() -> bool {
    std::env::var("HSMKEY_FAULT_SWEEP").as_deref() == Ok("full")
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn generate(t: &TestToken, label: &str, ty: &str, extra: &[&str]) {
    let mut args = vec!["key", "generate", "--label", label, "--type", ty];
    args.extend_from_slice(extra);
    t.json(&args);
}

/// The source token: a KEK, two secret keys, an RSA pair and an EC pair.
fn source() -> TestToken {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    generate(&t, "k1", "aes-256", &["--backup-policy", "any"]);
    generate(&t, "k2", "generic-256", &["--backup-policy", "any"]);
    generate(&t, "rsa", "rsa-2048", &["--backup-policy", "any"]);
    generate(&t, "ec", "ec-p256", &["--backup-policy", "any"]);
    t
}

/// A file in the token's directory.
fn file(t: &TestToken, name: &str) -> PathBuf {
    t.dir.path().join(name)
}

/// An empty directory for outputs: it must be empty again after a failure.
fn out_dir(t: &TestToken, name: &str) -> PathBuf {
    let d = t.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// SoftHSM keeps a token as files: copying the directory back resets it.
fn tokens_dir(t: &TestToken) -> PathBuf {
    t.dir.path().join("tokens")
}

fn snapshot(t: &TestToken) {
    let snap = t.dir.path().join("tokens.snapshot");
    let _ = std::fs::remove_dir_all(&snap);
    copy_dir(&tokens_dir(t), &snap);
}

fn reset(t: &TestToken) {
    let dir = tokens_dir(t);
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&t.dir.path().join("tokens.snapshot"), &dir);
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from:?} {to:?}");
}

/// Rows without the id (generated keys get random ids), and import key
/// pairs' labels without their random key id.
/// (class, key type, label, CKA_TOKEN).
type Row = (String, String, Option<String>, bool);

fn no_ids(rows: &[ObjectRow]) -> Vec<Row> {
    let label = |l: &Option<String>| {
        l.as_ref().map(|l| match l.strip_prefix("hsmkey-import-") {
            Some(rest) if rest.len() == 36 => "hsmkey-import-KEYID".to_string(),
            _ => l.clone(),
        })
    };
    let mut v: Vec<_> = rows
        .iter()
        .map(|(c, k, l, _, t)| (c.clone(), k.clone(), label(l), *t))
        .collect();
    v.sort();
    v
}

fn read_counts(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(' ')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Which call indices of a function called `n` times to fault: all of them
/// with HSMKEY_FAULT_SWEEP=full or up to 8 calls, else the first 3, the
/// last 3 and 3 evenly spaced between.
fn positions(n: u64) -> Vec<u64> {
    if full() || n <= 8 {
        return (0..n).collect();
    }
    let mut v = vec![0, 1, 2, n / 4, n / 2, 3 * n / 4, n - 3, n - 2, n - 1];
    v.sort();
    v.dedup();
    v
}

/// Fails the test with every violation of every sweep it ran.
fn finish(violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// The completeness a restore or verify run must show: a JSON report.
fn has_report(r: &Run) -> Result<(), String> {
    if r.json.is_null() {
        Err("no JSON report".into())
    } else {
        Ok(())
    }
}

struct Run {
    exit: i32,
    json: Value,
    stdout: String,
}

/// Checks that a successful run's result is complete.
type Check<'a> = Box<dyn Fn(&Run) -> Result<(), String> + 'a>;

/// One command to sweep.
struct Sweep<'a> {
    name: String,
    /// The token the command runs on (faults apply to its calls).
    token: &'a TestToken,
    args: Vec<String>,
    /// The `--out` file, if any.
    out: Option<PathBuf>,
    /// Directory that must hold what it held before after a failure.
    watch: PathBuf,
    /// Checks the result of a successful run (the output verifies).
    complete: Check<'a>,
    /// `key destroy`: a destroyed object cannot come back, so a failure
    /// (HK1401) may leave part of what a clean run removes removed.
    partial_ok: bool,
}

#[derive(Default)]
struct Tally {
    tried: usize,
    not_reached: Vec<String>,
    absorbed: Vec<String>,
    failures: BTreeMap<String, usize>,
    violations: Vec<String>,
    notes: Vec<String>,
    /// Failures with CKR_OPERATION_ACTIVE after a faulted FINISHING call.
    artifacts: usize,
}

impl Sweep<'_> {
    fn run(&self, settings: &[(&str, &str)]) -> Run {
        let out = self
            .token
            .shim_cmd(settings)
            .args(&self.args)
            .arg("--json")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Run {
            exit: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    fn clean_up_files(&self, keep: &[String]) {
        for name in listing(&self.watch) {
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(self.watch.join(name));
            }
        }
    }

    /// Run the sweep; prints the summary line; returns the violations.
    fn sweep(&self) -> Vec<String> {
        let started = Instant::now();
        let t = self.token;
        snapshot(t);
        let before = t.object_set();
        let dir_before = listing(&self.watch);
        // The clean run: what it calls, and what it leaves.
        let counts_file = t.dir.path().join("counts.txt");
        let clean = self.run(&[("HSMKEY_SHIM_COUNTS", &s(&counts_file))]);
        assert_eq!(
            clean.exit, 0,
            "{}: the clean run fails: {}",
            self.name, clean.stdout
        );
        (self.complete)(&clean).unwrap_or_else(|e| panic!("{}: clean run: {e}", self.name));
        let expected_after = no_ids(&t.object_set());
        let counts = read_counts(&counts_file);
        assert!(!counts.is_empty(), "{}: no call counts", self.name);
        self.clean_up_files(&dir_before);
        reset(t);

        let mut tally = Tally::default();
        for (func, &n) in &counts {
            for index in positions(n) {
                tally.tried += 1;
                let fault = format!("{func}:{DEVICE_ERROR}:after={index}:times=1");
                let counts_file = t.dir.path().join("counts-fault.txt");
                let _ = std::fs::remove_file(&counts_file);
                let r = self.run(&[
                    ("HSMKEY_SHIM_FAULT", &fault),
                    ("HSMKEY_SHIM_COUNTS", &s(&counts_file)),
                ]);
                let at = format!("{} {func}#{index}", self.name);
                if let Err(v) = self.judge(
                    &r,
                    func,
                    &before,
                    &dir_before,
                    &expected_after,
                    &counts_file,
                    &mut tally,
                    &at,
                ) {
                    tally.violations.push(format!("{at}: {v}"));
                }
                self.clean_up_files(&dir_before);
                reset(t);
            }
        }
        let summary = format!(
            "{}: {} positions of {} calls in {} functions, {:.1}s; failures {:?} ({} after an unfinished operation); absorbed {} {:?}; not reached {:?}; violations {}",
            self.name,
            tally.tried,
            counts.values().sum::<u64>(),
            counts.len(),
            started.elapsed().as_secs_f64(),
            tally.failures,
            tally.artifacts,
            tally.absorbed.len(),
            tally.absorbed,
            tally.not_reached,
            tally.violations.len(),
        );
        println!("SWEEP {summary}");
        for n in &tally.notes {
            println!("  note: {n}");
        }
        for v in &tally.violations {
            println!("  VIOLATION {v}");
        }
        tally.violations
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        r: &Run,
        func: &str,
        before: &[ObjectRow],
        dir_before: &[String],
        expected_after: &[Row],
        counts_file: &Path,
        tally: &mut Tally,
        at: &str,
    ) -> Result<(), String> {
        let t = self.token;
        let index: u64 = at.rsplit('#').next().unwrap().parse().unwrap();
        if r.exit == 0 {
            let reached = read_counts(counts_file).get(func).copied().unwrap_or(0) > index;
            if !reached {
                tally.not_reached.push(format!("{func}#{index}"));
                return Ok(());
            }
            tally.absorbed.push(format!("{func}#{index}"));
            if let Some(out) = &self.out {
                if !out.exists() {
                    return Err("exit 0 without the output file".into());
                }
            }
            (self.complete)(r).map_err(|e| format!("exit 0 but incomplete: {e}"))?;
            let after = no_ids(&t.object_set());
            // A complete run may report objects it could not remove and
            // that do not matter (import: the used pair's public half).
            let reported = r.json["left_behind"].as_array().map_or(0, |a| a.len());
            let extra = after.iter().filter(|x| !expected_after.contains(x)).count();
            let only_reported_extras = reported > 0
                && extra == reported
                && expected_after.iter().all(|x| after.contains(x));
            if after != expected_after && !only_reported_extras {
                return Err(format!(
                    "exit 0 but the token differs from a clean run's: {}",
                    diff(expected_after, &after)
                ));
            }
            return Ok(());
        }
        let e = &r.json;
        let c = code(e).to_string();
        *tally
            .failures
            .entry(if c.is_empty() {
                format!("exit {}", r.exit)
            } else {
                c.clone()
            })
            .or_default() += 1;
        let mut problems = Vec::new();
        let after = t.object_set();
        let mut token_ok = after == before;
        if !token_ok && self.partial_ok && c == "HK1401" && added(before, &after).is_empty() {
            // Only removals, each one a clean run makes too.
            let gone = added(&after, before);
            let clean_keeps = |row: &ObjectRow| {
                let k = no_ids(std::slice::from_ref(row));
                expected_after.contains(&k[0])
            };
            if gone.iter().all(|r| !clean_keeps(r)) {
                token_ok = true;
                tally
                    .notes
                    .push(format!("{at}: partly destroyed, {gone:?} gone"));
            }
        }
        let names_rv = r.stdout.contains(DEVICE_ERROR);
        match (r.exit, c.as_str()) {
            (7, "HK1401") => {
                let ctx = &e["context"];
                if ctx["rv"] == "CKR_OPERATION_ACTIVE" && FINISHING.contains(&func) {
                    tally.artifacts += 1;
                } else if ctx["rv"] != DEVICE_ERROR {
                    problems.push(format!("HK1401 with rv {}", ctx["rv"]));
                }
                match ctx["function"].as_str() {
                    None => problems.push("HK1401 without context.function".into()),
                    Some(f) if f != func => {
                        tally.notes.push(format!("{at}: HK1401 names function {f}"))
                    }
                    Some(_) => {}
                }
            }
            (9, "HK1403") if func == "C_DestroyObject" => {
                // Clean-up failed: exactly the leftovers, listed.
                let added = added(before, &after);
                let left = e["context"]["left"].to_string();
                if added.is_empty() || removed(before, &after) {
                    problems.push(format!(
                        "HK1403 but the token differs otherwise: {}",
                        diff(&no_ids(before), &no_ids(&after))
                    ));
                }
                for row in &added {
                    let name = row.2.clone().unwrap_or_else(|| row.3.clone());
                    if !left.contains(&name) {
                        problems.push(format!("HK1403 does not list {row:?} (left = {left})"));
                    }
                }
                token_ok = true;
            }
            _ if OPENING.contains(&func) && names_rv && !c.is_empty() => {
                if ["HK1302", "HK1107", "HK1201"].contains(&c.as_str()) {
                    problems.push(format!("{c} (exit {})", r.exit));
                }
            }
            _ => problems.push(format!("exit {} {c}: {}", r.exit, one_line(&r.stdout))),
        }
        if let Some(out) = &self.out {
            if out.exists() {
                problems.push(format!("{} left behind", out.display()));
            }
        }
        let now = listing(&self.watch);
        if now != dir_before {
            let extra: Vec<_> = now.iter().filter(|n| !dir_before.contains(n)).collect();
            problems.push(format!("files left: {extra:?}"));
        }
        if !token_ok {
            problems.push(format!(
                "token changed: {}",
                diff(&no_ids(before), &no_ids(&after))
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(300).collect()
}

fn added(before: &[ObjectRow], after: &[ObjectRow]) -> Vec<ObjectRow> {
    let mut rest = before.to_vec();
    let mut out = Vec::new();
    for row in after {
        if let Some(i) = rest.iter().position(|r| r == row) {
            rest.remove(i);
        } else {
            out.push(row.clone());
        }
    }
    out
}

fn removed(before: &[ObjectRow], after: &[ObjectRow]) -> bool {
    !added(after, before).is_empty()
}

fn diff<T: PartialEq + Clone + std::fmt::Debug>(before: &[T], after: &[T]) -> String {
    let minus = |a: &[T], b: &[T]| {
        let mut rest = b.to_vec();
        let mut out = Vec::new();
        for x in a {
            if let Some(i) = rest.iter().position(|r| r == x) {
                rest.remove(i);
            } else {
                out.push(x.clone());
            }
        }
        out
    };
    format!("+{:?} -{:?}", minus(after, before), minus(before, after))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `verify FILE --kek kek` on a token (no shim): the output is complete.
fn verifies(t: &TestToken, bundle: &Path, scheme: &[&str]) -> Result<(), String> {
    let out = t
        .cmd()
        .args(["verify", &s(bundle)])
        .args(scheme)
        .arg("--json")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "verify fails: {}",
            one_line(&String::from_utf8_lossy(&out.stdout))
        ))
    }
}

fn sessions_arg(n: usize) -> Vec<String> {
    strings(&["--sessions", &n.to_string()])
}

/// Backup with one protection scheme, on 1 and 4 sessions.
fn backup_sweep(scheme: &str) {
    if !enabled() {
        return;
    }
    let mut violations = Vec::new();
    let src = source();
    let dir = out_dir(&src, "out");
    let (protect, check): (Vec<String>, Vec<String>) = match scheme {
        "kek" => (strings(&["--kek", "kek"]), strings(&["--kek", "kek"])),
        "password" => {
            let pw = file(&src, "password.txt");
            std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
            (
                strings(&["--password-file", &s(&pw)]),
                strings(&["--password-file", &s(&pw)]),
            )
        }
        _ => {
            generate(&src, "transport", "rsa-2048", &["--usage", "unwrap"]);
            let pem = file(&src, "transport.pem");
            src.json(&["key", "public", "transport", "--out", &s(&pem)]);
            (
                strings(&["--recipient", &s(&pem)]),
                strings(&["--recipient-key", "transport"]),
            )
        }
    };
    for sessions in [1, 4] {
        let out = dir.join("b.bundle");
        let mut args = strings(&["backup", "--all", "--out", &s(&out)]);
        args.extend(protect.clone());
        args.extend(sessions_arg(sessions));
        let check: Vec<&str> = check.iter().map(String::as_str).collect();
        let out2 = out.clone();
        let srcr = &src;
        violations.extend(
            Sweep {
                name: format!("backup --{scheme} --sessions {sessions}"),
                token: &src,
                args,
                out: Some(out),
                watch: dir.clone(),
                partial_ok: false,
                complete: Box::new(move |_| verifies(srcr, &out2, &check)),
            }
            .sweep(),
        );
    }
    finish(violations);
}

#[test]
fn sweep_backup_kek() {
    backup_sweep("kek");
}

#[test]
fn sweep_backup_password() {
    backup_sweep("password");
}

#[test]
fn sweep_backup_recipient() {
    backup_sweep("recipient");
}

/// Restore and verify of a KEK bundle, into a second token holding the KEK.
#[test]
fn sweep_restore_and_verify() {
    if !enabled() {
        return;
    }
    let mut violations = Vec::new();
    let src = source();
    let bundle = file(&src, "all.bundle");
    src.json(&["backup", "--kek", "kek", "--all", "--out", &s(&bundle)]);
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    let watch = out_dir(&dst, "in");
    let b = watch.join("all.bundle");
    std::fs::copy(&bundle, &b).unwrap();
    for sessions in [1, 4] {
        let mut args = strings(&["restore", &s(&b), "--kek", "kek"]);
        args.extend(sessions_arg(sessions));
        violations.extend(
            Sweep {
                name: format!("restore --kek --sessions {sessions}"),
                token: &dst,
                args,
                out: None,
                watch: watch.clone(),
                partial_ok: false,
                complete: Box::new(has_report),
            }
            .sweep(),
        );
        let mut args = strings(&["verify", &s(&b), "--kek", "kek"]);
        args.extend(sessions_arg(sessions));
        violations.extend(
            Sweep {
                name: format!("verify --kek --sessions {sessions}"),
                token: &dst,
                args,
                out: None,
                watch: watch.clone(),
                partial_ok: false,
                complete: Box::new(has_report),
            }
            .sweep(),
        );
    }
    finish(violations);
}

/// BYOK to AWS: an AES-256 key under RSA-AES (a session AES key made, used
/// and destroyed in the token) and under direct RSA-OAEP.
#[test]
fn sweep_byok_aws() {
    if !enabled() {
        return;
    }
    let mut violations = Vec::new();
    let t = source();
    let dir = out_dir(&t, "out");
    let pem =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok/cloud-rsa-2048.pub.pem");
    for alg in ["RSA_AES_KEY_WRAP_SHA_1", "RSAES_OAEP_SHA_1"] {
        let out = dir.join("material.bin");
        let args = strings(&[
            "byok",
            "--key",
            "k1",
            "--target",
            "aws",
            "--algorithm",
            alg,
            "--wrapping-key",
            &s(&pem),
            "--out",
            &s(&out),
        ]);
        let out2 = out.clone();
        violations.extend(
            Sweep {
                name: format!("byok aws {alg}"),
                token: &t,
                args,
                out: Some(out),
                watch: dir.clone(),
                partial_ok: false,
                complete: Box::new(move |_| {
                    let n = std::fs::metadata(&out2).map(|m| m.len()).unwrap_or(0);
                    if n >= 256 {
                        Ok(())
                    } else {
                        Err(format!("material of {n} bytes"))
                    }
                }),
            }
            .sweep(),
        );
    }
    finish(violations);
}

/// import-params, then an import of an AES key wrapped in software to them.
#[test]
fn sweep_import_params_and_import() {
    use aes_kw::KekAes256;
    use base64::Engine;
    use rsa::pkcs8::DecodePublicKey;
    if !enabled() {
        return;
    }
    let mut violations = Vec::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let t = TestToken::new();
    let dir = out_dir(&t, "out");
    let alg = "RSA_AES_KEY_WRAP_SHA_1";
    let params_out = dir.join("params.json");
    let args = strings(&[
        "import-params",
        "--key-spec",
        "RSA_2048",
        "--algorithm",
        alg,
        "--out",
        &s(&params_out),
    ]);
    let p2 = params_out.clone();
    violations.extend(
        Sweep {
            name: "import-params".into(),
            token: &t,
            args,
            out: Some(params_out),
            watch: dir.clone(),
            partial_ok: false,
            complete: Box::new(move |_| {
                let v: Value =
                    serde_json::from_slice(&std::fs::read(&p2).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                if v["import_token"].is_string() && v["public_key"].is_string() {
                    Ok(())
                } else {
                    Err(format!("parameters incomplete: {v}"))
                }
            }),
        }
        .sweep(),
    );

    // Parameters made without the shim; the material wrapped in software.
    let pfile = file(&t, "params.json");
    let p = t.json(&[
        "import-params",
        "--key-spec",
        "RSA_2048",
        "--algorithm",
        alg,
        "--out",
        &s(&pfile),
    ]);
    let der = b64.decode(p["public_key"].as_str().unwrap()).unwrap();
    let public = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
    let ephemeral = [0x3au8; 32];
    let mut blob = public
        .encrypt(
            &mut rand_core::OsRng,
            rsa::Oaep::new::<sha1::Sha1>(),
            &ephemeral,
        )
        .unwrap();
    let mut kw = vec![0u8; 40];
    KekAes256::new(&ephemeral.into())
        .wrap_with_padding(&[0x5c; 32], &mut kw)
        .unwrap();
    blob.extend(kw);
    let kcv = {
        use aes::cipher::{BlockEncrypt, KeyInit};
        let mut block = aes::Block::default();
        aes::Aes256::new_from_slice(&[0x5c; 32])
            .unwrap()
            .encrypt_block(&mut block);
        hex::encode(&block[..3])
    };
    let material = file(&t, "material.json");
    std::fs::write(
        &material,
        serde_json::json!({
            "key_id": p["key_id"],
            "import_token": p["import_token"],
            "encrypted_key_material": b64.encode(blob),
        })
        .to_string(),
    )
    .unwrap();
    violations.extend(
        Sweep {
            name: "import".into(),
            token: &t,
            args: strings(&[
                "import",
                "--material",
                &s(&material),
                "--label",
                "imported",
                "--type",
                "aes-256",
            ]),
            out: None,
            watch: dir.clone(),
            partial_ok: false,
            complete: Box::new(move |r| {
                if r.json["keys"][0]["kcv"] == kcv.as_str() {
                    Ok(())
                } else {
                    Err(format!("report without the key's KCV {kcv}: {}", r.json))
                }
            }),
        }
        .sweep(),
    );
    finish(violations);
}

fn key_sweep(name: &str, t: &TestToken, args: &[&str]) -> Vec<String> {
    let dir = out_dir(t, "out");
    Sweep {
        name: name.into(),
        token: t,
        args: strings(args),
        out: None,
        watch: dir,
        complete: Box::new(|_| Ok(())),
        partial_ok: args.contains(&"destroy"),
    }
    .sweep()
}

#[test]
fn sweep_key_generate() {
    if !enabled() {
        return;
    }
    let t = source();
    let mut violations = key_sweep(
        "key generate aes-256",
        &t,
        &["key", "generate", "--label", "new", "--type", "aes-256"],
    );
    violations.extend(key_sweep(
        "key generate rsa-2048",
        &t,
        &[
            "key", "generate", "--label", "newpair", "--type", "rsa-2048",
        ],
    ));
    finish(violations);
}

#[test]
fn sweep_key_rotate_and_destroy() {
    if !enabled() {
        return;
    }
    let t = source();
    let mut violations = key_sweep("key rotate", &t, &["key", "rotate", "k1"]);
    violations.extend(key_sweep(
        "key destroy secret",
        &t,
        &["key", "destroy", "k2", "--yes"],
    ));
    violations.extend(key_sweep(
        "key destroy pair",
        &t,
        &["key", "destroy", "rsa", "--yes"],
    ));
    finish(violations);
}
