//! Huawei Cloud AK/SK request signing (`SDK-HMAC-SHA256`), the verifying
//! side: parse the `Authorization` header, rebuild the canonical request the
//! official SDKs sign (method, URI path with its trailing slash, sorted
//! query, signed headers, SHA-256 of the body), check `X-Sdk-Date` is fresh
//! and compare the HMAC in constant time. Pure: no clock, no I/O; the
//! caller passes the request, the client's SK and the time.
//!
//! The scheme was learnt from `huaweicloudsdkcore` (Python, class `Signer`)
//! and is proved by the SDK's own signatures in tests/vectors/huawei-sign/.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The scheme's name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header that carries the signing time, `YYYYMMDDTHHMMSSZ` (UTC).
pub const DATE_HEADER: &str = "x-sdk-date";
/// The header a client may set to the body's hash instead of letting the
/// server hash it; the SDK sets `UNSIGNED-PAYLOAD` for non-JSON bodies.
pub const CONTENT_HASH_HEADER: &str = "x-sdk-content-sha256";
/// How far `X-Sdk-Date` may be from the server's clock, either way.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// The characters the SDK leaves as they are when it encodes a path segment
/// or a query key or value (RFC 3986 unreserved); all else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub path: &'a str,
    /// The query as sent (after `?`), still percent-encoded.
    pub query: Option<&'a str>,
    /// Every header, names in any case, values as received.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    /// Lower-case header names, in the order the client signed them.
    pub signed_headers: Vec<String>,
    /// The signature, lower-case hex as sent.
    pub signature: String,
}

/// Why a signed request is refused. Every refusal is a 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Authorization` header is not of the SDK-HMAC-SHA256 form.
    Malformed(String),
    /// `X-Sdk-Date` is missing or not `YYYYMMDDTHHMMSSZ`.
    BadDate(String),
    /// `X-Sdk-Date` is more than [`MAX_SKEW_SECONDS`] from now.
    Stale { skew_seconds: i64 },
    /// `host` or `x-sdk-date` is not among the signed headers.
    NotSigned(&'static str),
    /// A signed header is not in the request.
    MissingHeader(String),
    /// A signed header appears more than once.
    RepeatedHeader(String),
    /// The client asked to leave the body out of the signature.
    UnsignedPayload,
    /// `X-Sdk-Content-Sha256` is not the hash of the body.
    PayloadHashMismatch,
    /// The signature is not the one the SK makes for this request.
    BadSignature,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "the Authorization header is not {ALGORITHM}: {why}"),
            Refusal::BadDate(why) => write!(f, "X-Sdk-Date: {why}"),
            Refusal::Stale { skew_seconds } => write!(
                f,
                "X-Sdk-Date is {} s from the server's clock (at most {MAX_SKEW_SECONDS} s allowed)",
                skew_seconds.abs()
            ),
            Refusal::NotSigned(h) => write!(f, "the header {h} must be signed"),
            Refusal::MissingHeader(h) => write!(f, "the signed header {h} is not in the request"),
            Refusal::RepeatedHeader(h) => write!(f, "the signed header {h} appears more than once"),
            Refusal::UnsignedPayload => write!(
                f,
                "the body is not signed (X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD); send it as application/json"
            ),
            Refusal::PayloadHashMismatch => {
                write!(f, "X-Sdk-Content-Sha256 is not the SHA-256 of the body")
            }
            Refusal::BadSignature => write!(f, "the signature does not match"),
        }
    }
}

/// Parse `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, Refusal> {
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| Refusal::Malformed(format!("it does not start with '{ALGORITHM} '")))?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| Refusal::Malformed(format!("'{}' is not name=value", part.trim())))?;
        let slot = match name {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(Refusal::Malformed(format!("unknown member '{other}'"))),
        };
        if slot.replace(v.to_string()).is_some() {
            return Err(Refusal::Malformed(format!("{name} is given twice")));
        }
    }
    let missing = |n: &str| Refusal::Malformed(format!("{n} is missing"));
    let access_key = access
        .filter(|a| !a.is_empty())
        .ok_or_else(|| missing("Access"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(Refusal::Malformed(
            "SignedHeaders must be lower-case header names separated by ';'".into(),
        ));
    }
    Ok(Authorization {
        access_key,
        signed_headers,
        signature,
    })
}

/// The path as the SDK signs it: decoded, each segment encoded again, and a
/// slash at the end.
pub fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut uri = decoded
        .split('/')
        .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The query as the SDK signs it: pairs decoded, sorted by key then value,
/// encoded again, joined by `&`. A `+` is a plus sign, not a space.
pub fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, UNRESERVED),
                utf8_percent_encode(v, UNRESERVED)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The one value of header `name` (lower-case), trimmed; `None` if absent.
fn header<'a>(req: &Request<'a>, name: &str) -> Result<Option<&'a [u8]>, Refusal> {
    let mut found = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim_ascii());
    let first = found.next();
    if found.next().is_some() {
        return Err(Refusal::RepeatedHeader(name.to_string()));
    }
    Ok(first)
}

/// Lower-case hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The body's hash as signed: the empty hash for no body; otherwise the
/// body's SHA-256, which `X-Sdk-Content-Sha256` may repeat but not replace.
fn payload_hash(req: &Request<'_>) -> Result<String, Refusal> {
    let computed = sha256_hex(req.body);
    if req.body.is_empty() {
        return Ok(computed);
    }
    match header(req, CONTENT_HASH_HEADER)? {
        None => Ok(computed),
        Some(b"UNSIGNED-PAYLOAD") => Err(Refusal::UnsignedPayload),
        Some(claimed) if claimed == computed.as_bytes() => Ok(computed),
        Some(_) => Err(Refusal::PayloadHashMismatch),
    }
}

/// The canonical request: method, URI, query, `name:value` lines of the
/// signed headers, the signed header names, the body's hash.
pub fn canonical_request(req: &Request<'_>, signed_headers: &[String]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.query).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        let value = header(req, name)?.ok_or_else(|| Refusal::MissingHeader(name.clone()))?;
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash(req)?.as_bytes());
    Ok(out)
}

/// `SDK-HMAC-SHA256\n<X-Sdk-Date>\n<hex SHA-256 of the canonical request>`.
pub fn string_to_sign(date: &str, canonical: &[u8]) -> String {
    format!("{ALGORITHM}\n{date}\n{}", sha256_hex(canonical))
}

/// HMAC-SHA256 keyed with the SK (HMAC takes keys of any length, so the
/// error cannot happen; it is mapped rather than unwrapped).
fn mac(secret_key: &[u8]) -> Result<Hmac<Sha256>, Refusal> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret_key).map_err(|_| Refusal::BadSignature)
}

/// Seconds since 1970 of an `X-Sdk-Date` value (`YYYYMMDDTHHMMSSZ`, UTC).
pub fn parse_date(value: &str) -> Result<i64, Refusal> {
    let bad = || Refusal::BadDate(format!("'{value}' is not of the form YYYYMMDDTHHMMSSZ"));
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Result<i32, Refusal> {
        let s = value.get(r).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let date = jiff::civil::Date::new(
        i16::try_from(digits(0..4)?).map_err(|_| bad())?,
        i8::try_from(digits(4..6)?).map_err(|_| bad())?,
        i8::try_from(digits(6..8)?).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let time = jiff::civil::Time::new(
        i8::try_from(digits(9..11)?).map_err(|_| bad())?,
        i8::try_from(digits(11..13)?).map_err(|_| bad())?,
        i8::try_from(digits(13..15)?).map_err(|_| bad())?,
        0,
    )
    .map_err(|_| bad())?;
    let stamp = jiff::tz::Offset::UTC
        .to_timestamp(date.to_datetime(time))
        .map_err(|_| bad())?;
    Ok(stamp.as_second())
}

/// Check a request signed with `secret_key`, at `now` (seconds since 1970).
/// `host` and `x-sdk-date` must be among the signed headers, the date within
/// [`MAX_SKEW_SECONDS`] of `now`, and the signature exact (compared in
/// constant time).
pub fn verify(
    req: &Request<'_>,
    auth: &Authorization,
    secret_key: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    for required in ["host", DATE_HEADER] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(Refusal::NotSigned(required));
        }
    }
    let date = header(req, DATE_HEADER)?
        .ok_or_else(|| Refusal::BadDate("the header is missing".into()))?;
    let date = std::str::from_utf8(date).map_err(|_| Refusal::BadDate("not text".into()))?;
    let signed_at = parse_date(date)?;
    let skew = signed_at - now;
    if skew.abs() > MAX_SKEW_SECONDS {
        return Err(Refusal::Stale { skew_seconds: skew });
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let claimed = hex::decode(&auth.signature).map_err(|_| Refusal::BadSignature)?;
    let mut m = mac(secret_key)?;
    m.update(string_to_sign(date, &canonical).as_bytes());
    m.verify_slice(&claimed).map_err(|_| Refusal::BadSignature)
}

/// The `Authorization` value the SDK would send for `req` (which must carry
/// `X-Sdk-Date` and every header in `signed_headers`). For clients written
/// in Rust, the tests among them.
pub fn authorization(
    req: &Request<'_>,
    access_key: &str,
    secret_key: &[u8],
    signed_headers: &[String],
) -> Result<String, Refusal> {
    let date = header(req, DATE_HEADER)?
        .ok_or_else(|| Refusal::BadDate("the header is missing".into()))?;
    let date = std::str::from_utf8(date).map_err(|_| Refusal::BadDate("not text".into()))?;
    let canonical = canonical_request(req, signed_headers)?;
    let mut m = mac(secret_key)?;
    m.update(string_to_sign(date, &canonical).as_bytes());
    Ok(format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={}",
        signed_headers.join(";"),
        hex::encode(m.finalize().into_bytes())
    ))
}

/// `YYYYMMDDTHHMMSSZ` for seconds since 1970.
pub fn format_date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
