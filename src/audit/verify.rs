//! `hsmkey audit verify`: a log read line by line, checked as JSON, as a
//! chain (seq and prev), and, with a token, each line's MAC in the token and
//! the token's chain head. The first bad line is reported with one reason
//! (docs/AUDIT.md, "What verify reports").

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Serialize;

use super::line::{self, TokenRef, GENESIS};
use crate::error::{Error, Result};
use crate::hsm::audit::{AuditToken, Head};

/// Why a line is bad. Stable codes: scripts may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Not an audit line (JSON, fields, version, an incomplete last line).
    Malformed,
    /// Changed after it was written: its MAC fails, or the chain breaks.
    Edited,
    /// Lines before it were removed (its seq skips).
    Missing,
    /// Lines are out of order.
    Reordered,
    /// A line appears twice.
    Duplicated,
    /// The last lines were removed (the token's head is beyond the end).
    Truncated,
    /// Added after the token's last line, with a MAC the token did not make.
    Forged,
    /// Not written with this token (or from another log).
    Foreign,
    /// No MAC, and no later line's MAC covers it.
    Unanchored,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Edited => "edited",
            Reason::Missing => "missing",
            Reason::Reordered => "reordered",
            Reason::Duplicated => "duplicated",
            Reason::Truncated => "truncated",
            Reason::Forged => "forged",
            Reason::Foreign => "foreign",
            Reason::Unanchored => "unanchored",
        }
    }
}

/// The first bad line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// Line number in the file (1-based).
    pub line: u64,
    pub reason: Reason,
    pub detail: String,
}

/// The token side of a check: MACs verified in the token, and its heads.
pub trait MacCheck {
    fn token(&self) -> TokenRef;
    /// `Ok(None)` when the token holds no audit key with this id.
    fn verify(&mut self, key_id: &[u8], data: &[u8], mac: &[u8]) -> Result<Option<bool>>;
    fn head(&mut self, log: &str) -> Result<Option<Head>>;
}

impl MacCheck for AuditToken {
    fn token(&self) -> TokenRef {
        TokenRef::from(self.summary())
    }
    fn verify(&mut self, key_id: &[u8], data: &[u8], mac: &[u8]) -> Result<Option<bool>> {
        AuditToken::verify(self, key_id, data, mac)
    }
    fn head(&mut self, log: &str) -> Result<Option<Head>> {
        AuditToken::head(self, log)
    }
}

/// Lines signed by a token other than the one checking (with `--partial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OtherSigner {
    pub label: String,
    pub serial: String,
    pub key_id: String,
    pub lines: u64,
}

/// What was checked and found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub path: String,
    pub lines: u64,
    /// The log's id (from its first line).
    pub log: Option<String>,
    /// What was checked: json, chain, and with a token mac and head.
    pub checked: Vec<&'static str>,
    /// The token that checked MACs and the head.
    pub token: Option<TokenRef>,
    /// Lines whose MAC the token verified.
    pub mac_verified: u64,
    /// Lines without a MAC (the operation failed before the login).
    pub unsigned: u64,
    /// Lines signed by other tokens, not checked here (`--partial`).
    pub other_signers: Vec<OtherSigner>,
    /// The token's chain head for this log.
    pub head: Option<Head>,
    pub notes: Vec<String>,
    /// The first bad line; none when the log is good. Never printed: a
    /// bad log ends in the error HK1308 instead of a report.
    #[serde(skip)]
    pub problem: Option<Problem>,
}

impl Report {
    /// The error `audit verify` ends with when a line is bad.
    pub fn into_result(self) -> Result<Report> {
        match &self.problem {
            None => Ok(self),
            Some(p) => Err(Error::AuditTampered {
                path: self.path.clone(),
                line: p.line,
                reason: p.reason.code(),
                detail: p.detail.clone(),
            }),
        }
    }
}

/// A seq that is not the one expected, classified once the whole log is read.
struct SeqSlip {
    pos: u64,
    seq: u64,
    expected: u64,
}

/// Check the log read from `input` (named `path` in the report). Without
/// `macs`, only the JSON and the chain. With `partial`, lines signed by
/// other tokens are counted rather than refused.
pub fn verify(
    path: &str,
    mut input: impl BufRead,
    mut macs: Option<&mut dyn MacCheck>,
    partial: bool,
) -> Result<Report> {
    let mut report = Report {
        path: path.to_string(),
        lines: 0,
        log: None,
        checked: if macs.is_some() {
            vec!["json", "chain", "mac", "head"]
        } else {
            vec!["json", "chain"]
        },
        token: macs.as_ref().map(|m| m.token()),
        mac_verified: 0,
        unsigned: 0,
        other_signers: Vec::new(),
        head: None,
        notes: Vec::new(),
        problem: None,
    };
    let me = report.token.clone();
    let mut seqs: Vec<Option<u64>> = Vec::new();
    let mut hashes: Vec<String> = Vec::new();
    let mut problem: Option<Problem> = None;
    let mut slip: Option<SeqSlip> = None;
    let mut head_looked = false;
    let mut pending_unsigned: Option<u64> = None;
    let mut last_mine = 0u64;
    let mut others: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut raw = Vec::new();
    let mut pos = 0u64;
    loop {
        raw.clear();
        let n = input.read_until(b'\n', &mut raw).map_err(|e| Error::Io {
            path: path.to_string(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        pos += 1;
        let whole = raw.last() == Some(&b'\n');
        if whole {
            raw.pop();
        }
        let hash = line::sha256_hex(&raw);
        let parsed = if whole {
            line::parse(&raw)
        } else {
            Err("the last line is incomplete (no newline)".to_string())
        };
        seqs.push(parsed.as_ref().ok().map(|p| p.line.seq));
        hashes.push(hash);
        let busy = problem.is_some() || slip.is_some();
        let p = match parsed {
            Ok(p) => p,
            Err(reason) => {
                if !busy {
                    problem = Some(bad(pos, Reason::Malformed, reason));
                }
                continue;
            }
        };
        if busy {
            continue;
        }
        let l = &p.line;
        if pos == 1 {
            report.log = Some(l.log.clone());
        }
        // The MAC, in the token.
        if let Some(m) = macs.as_deref_mut() {
            if !head_looked {
                report.head = m.head(&l.log)?;
                head_looked = true;
            }
            let beyond_head = report.head.as_ref().is_some_and(|h| pos > h.count);
            match (&l.signer, &p.mac) {
                (Some(s), Some(mac)) => {
                    let key_id = hex::decode(&s.key_id).unwrap_or_default();
                    match m.verify(&key_id, &p.mac_input, mac)? {
                        Some(true) => {
                            report.mac_verified += 1;
                            pending_unsigned = None;
                            last_mine = pos;
                        }
                        Some(false) if beyond_head => {
                            problem = Some(bad(pos, Reason::Forged, "its MAC was not made by this token's audit key, and it comes after the last line the token signed".into()));
                            continue;
                        }
                        Some(false) => {
                            problem = Some(bad(
                                pos,
                                Reason::Edited,
                                "its MAC does not match its content: the line was changed after it was written".into(),
                            ));
                            continue;
                        }
                        None if report.head.is_some()
                            && me
                                .as_ref()
                                .is_some_and(|t| t.serial == s.serial && t.label == s.label) =>
                        {
                            let (reason, what) = if beyond_head {
                                (Reason::Forged, "comes after the last line the token signed")
                            } else {
                                (Reason::Edited, "was changed after it was written")
                            };
                            problem = Some(bad(
                                pos,
                                reason,
                                format!("it names an audit key ({}) this token does not hold; it {what}", s.key_id),
                            ));
                            continue;
                        }
                        None if partial => {
                            // Its own token covers the lines before it.
                            pending_unsigned = None;
                            *others
                                .entry((s.label.clone(), s.serial.clone(), s.key_id.clone()))
                                .or_default() += 1;
                        }
                        None => {
                            problem = Some(foreign(pos, s, me.as_ref()));
                            continue;
                        }
                    }
                }
                _ => {
                    report.unsigned += 1;
                    pending_unsigned.get_or_insert(pos);
                }
            }
        } else if l.signer.is_none() {
            report.unsigned += 1;
        }
        // A line of another log (after its MAC: an edited log id is an edit).
        if report.log.as_deref() != Some(l.log.as_str()) {
            problem = Some(bad(
                pos,
                Reason::Foreign,
                format!("it belongs to another log ({}), not this one", l.log),
            ));
            continue;
        }
        // The chain: seq, then prev.
        let expected = if pos == 1 {
            1
        } else {
            seqs[pos as usize - 2].unwrap_or(0) + 1
        };
        if l.seq != expected {
            slip = Some(SeqSlip {
                pos,
                seq: l.seq,
                expected,
            });
            continue;
        }
        let want_prev = if pos == 1 {
            GENESIS
        } else {
            hashes[pos as usize - 2].as_str()
        };
        if l.prev != want_prev {
            problem = Some(bad(
                pos,
                Reason::Edited,
                format!(
                    "its prev is not the SHA-256 of line {}: one of the two lines was changed",
                    pos - 1
                ),
            ));
        }
    }
    report.lines = pos;
    if problem.is_none() {
        if let Some(s) = slip {
            problem = Some(classify(&s, &seqs, &hashes));
        }
    }
    if problem.is_none() && macs.is_some() && pos > 0 {
        problem = head_problem(&report, &hashes, last_mine, pending_unsigned);
        if let (None, Some(h)) = (&problem, &report.head) {
            if last_mine > h.count {
                report.notes.push(format!(
                    "the token's head names line {}, but the token signed up to line {last_mine}: a run stopped between writing its line and moving the head",
                    h.count
                ));
            }
        }
    }
    if macs.is_none() && pos > 0 {
        report.notes.push("chain only: MACs and the token's head were not checked, so the last line could be removed or changed unnoticed".into());
    }
    report.other_signers = others
        .into_iter()
        .map(|((label, serial, key_id), lines)| OtherSigner {
            label,
            serial,
            key_id,
            lines,
        })
        .collect();
    if !report.other_signers.is_empty() {
        report.notes.push("lines signed by other tokens were checked as a chain only: verify them with those tokens".into());
    }
    report.problem = problem;
    Ok(report)
}

fn bad(line: u64, reason: Reason, detail: String) -> Problem {
    Problem {
        line,
        reason,
        detail,
    }
}

fn foreign(pos: u64, s: &line::Signer, me: Option<&TokenRef>) -> Problem {
    let me = me
        .map(|t| format!("'{}' (serial {})", t.label, t.serial))
        .unwrap_or_default();
    bad(
        pos,
        Reason::Foreign,
        format!(
            "it was signed by token '{}' (serial {}, audit key {}), and this token {me} holds neither that key nor a head for this log",
            s.label, s.serial, s.key_id
        ),
    )
}

/// A seq out of place: a repeat, an earlier line after a later one, or a gap.
fn classify(s: &SeqSlip, seqs: &[Option<u64>], hashes: &[String]) -> Problem {
    let at = s.pos as usize - 1;
    if s.seq < s.expected {
        let earlier = seqs[..at].iter().position(|q| *q == Some(s.seq));
        if let Some(i) = earlier {
            let same = hashes[i] == hashes[at];
            return bad(
                s.pos,
                Reason::Duplicated,
                format!(
                    "it repeats seq {} of line {}{}",
                    s.seq,
                    i + 1,
                    if same { " (the same bytes)" } else { "" }
                ),
            );
        }
        return bad(
            s.pos,
            Reason::Reordered,
            format!("seq {} comes after seq {}", s.seq, s.expected - 1),
        );
    }
    if seqs[at + 1..].contains(&Some(s.expected)) {
        return bad(
            s.pos,
            Reason::Reordered,
            format!(
                "seq {} comes before seq {}, which is further down",
                s.seq, s.expected
            ),
        );
    }
    let gap = if s.seq == s.expected + 1 {
        format!("seq {}", s.expected)
    } else {
        format!("seqs {} to {}", s.expected, s.seq - 1)
    };
    bad(
        s.pos,
        Reason::Missing,
        format!("{gap} are missing before it (the lines were removed)"),
    )
}

/// The token's head against the end of the log; unsigned lines at the end.
fn head_problem(
    report: &Report,
    hashes: &[String],
    last_mine: u64,
    pending_unsigned: Option<u64>,
) -> Option<Problem> {
    let lines = hashes.len() as u64;
    match &report.head {
        None if last_mine > 0 => {
            return Some(bad(
                1,
                Reason::Truncated,
                "this token signed lines of this log but holds no chain head for it: the head object was removed, so a cut at the end cannot be ruled out".into(),
            ))
        }
        None => {
            return Some(bad(
                1,
                Reason::Foreign,
                "this token holds no chain head for this log and signed none of its lines: the log was not written with this token".into(),
            ))
        }
        Some(h) if h.count > lines => {
            return Some(bad(
                lines + 1,
                Reason::Truncated,
                format!(
                    "the token's chain head says the log had {} lines; it has {lines}: the last lines were removed",
                    h.count
                ),
            ))
        }
        Some(h) if h.count == 0 || hashes[h.count as usize - 1] != h.last => {
            return Some(bad(
                h.count.max(1),
                Reason::Edited,
                format!(
                    "line {} is not the line the token's chain head recorded (SHA-256 {})",
                    h.count, h.last
                ),
            ))
        }
        Some(_) => {}
    }
    pending_unsigned.map(|p| {
        bad(
            p,
            Reason::Unanchored,
            format!(
                "lines {p} to {lines} carry no MAC and no later line signed by this token covers them: anyone could have added them (an operation that failed before its login writes such a line; the next signed line anchors it)"
            ),
        )
    })
}
