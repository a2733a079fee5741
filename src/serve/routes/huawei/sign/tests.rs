//! The verifier against requests the official SDK signed
//! (tests/vectors/huawei-sign/vectors.json), and against each of them
//! changed in one place.

use super::*;
use base64::Engine;

struct Vector {
    name: String,
    expect: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    canonical: String,
    to_sign: String,
    authorization: String,
}

/// A named change to a vector.
type Change<'a> = (&'a str, Box<dyn Fn(&mut Vector)>);

struct Vectors {
    secret_key: String,
    access_key: String,
    now: i64,
    all: Vec<Vector>,
}

fn vectors() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/huawei-sign/vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("the vectors file is in the repository");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the vectors are JSON");
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().expect(k).to_string();
    let all = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            let uri = s(v, "uri");
            let (path, query) = match uri.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (uri, None),
            };
            Vector {
                name: s(v, "name"),
                expect: s(v, "expect"),
                method: s(v, "method"),
                path,
                query,
                headers: v["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().expect("name").to_string(),
                            h[1].as_str().expect("value").as_bytes().to_vec(),
                        )
                    })
                    .collect(),
                body: base64::engine::general_purpose::STANDARD
                    .decode(s(v, "body_base64"))
                    .expect("body"),
                canonical: s(v, "canonical_request"),
                to_sign: s(v, "string_to_sign"),
                authorization: s(v, "authorization"),
            }
        })
        .collect();
    Vectors {
        secret_key: s(&doc, "secret_key"),
        access_key: s(&doc, "access_key"),
        now: doc["x_sdk_date_unix"].as_i64().expect("date"),
        all,
    }
}

impl Vector {
    fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }

    fn check(&self, secret_key: &str, now: i64) -> Result<(), Refusal> {
        let headers = self.header_refs();
        let req = Request {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
            body: &self.body,
        };
        let auth_value = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| String::from_utf8(v.clone()).expect("ascii"))
            .expect("signed");
        let auth = parse_authorization(&auth_value)?;
        verify(&req, &auth, secret_key.as_bytes(), now)
    }

    fn set_header(&mut self, name: &str, value: &str) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => h.1 = value.as_bytes().to_vec(),
            None => self.headers.push((name.into(), value.as_bytes().to_vec())),
        }
    }

    /// Sign again (with hsmkey's signer, proved equal to the SDK's below)
    /// after a change, with the signed headers of the original.
    fn resign(&mut self, secret_key: &str) {
        let signed = parse_authorization(&self.authorization)
            .expect("the SDK's header parses")
            .signed_headers;
        let headers = self.header_refs();
        let req = Request {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
            body: &self.body,
        };
        let value = authorization(&req, "AK", secret_key.as_bytes(), &signed).expect("signs");
        self.set_header("Authorization", &value);
    }
}

fn first(name_part: &str) -> (Vectors, Vector) {
    let mut v = vectors();
    let i = v
        .all
        .iter()
        .position(|x| x.name.contains(name_part))
        .expect("vector");
    let one = v.all.remove(i);
    (v, one)
}

#[test]
fn the_canonical_request_and_string_to_sign_are_the_sdks() {
    let v = vectors();
    assert!(v.all.len() >= 10);
    for x in &v.all {
        let headers = x.header_refs();
        let req = Request {
            method: &x.method,
            path: &x.path,
            query: x.query.as_deref(),
            headers: &headers,
            body: &x.body,
        };
        let auth = parse_authorization(&x.authorization).expect("parses");
        assert_eq!(auth.access_key, v.access_key);
        match canonical_request(&req, &auth.signed_headers) {
            Ok(canonical) => {
                assert_eq!(
                    String::from_utf8(canonical.clone()).unwrap(),
                    x.canonical,
                    "{}",
                    x.name
                );
                let date = x
                    .canonical
                    .lines()
                    .find_map(|l| l.strip_prefix("x-sdk-date:"))
                    .unwrap();
                assert_eq!(string_to_sign(date, &canonical), x.to_sign, "{}", x.name);
                assert_eq!(
                    authorization(
                        &req,
                        &v.access_key,
                        v.secret_key.as_bytes(),
                        &auth.signed_headers
                    )
                    .unwrap(),
                    x.authorization,
                    "{}",
                    x.name
                );
            }
            Err(refusal) => {
                assert_eq!(x.expect, "refuse: unsigned payload", "{}", x.name);
                assert_eq!(refusal, Refusal::UnsignedPayload);
            }
        }
    }
}

#[test]
fn every_sdk_request_verifies_and_the_unsigned_payload_is_refused() {
    let v = vectors();
    for x in &v.all {
        let got = x.check(&v.secret_key, v.now);
        match x.expect.as_str() {
            "accept" => assert_eq!(got, Ok(()), "{}", x.name),
            "refuse: unsigned payload" => assert_eq!(got, Err(Refusal::UnsignedPayload)),
            other => panic!("unknown expectation {other}"),
        }
    }
}

#[test]
fn a_changed_method_path_query_or_body_breaks_the_signature() {
    let (v, base) = first("get-parameters-for-import");
    let (_, with_query) = first("query:");
    let tampered: Vec<Change> = vec![
        ("method", Box::new(|x| x.method = "PUT".into())),
        (
            "path",
            Box::new(|x| x.path = x.path.replace("get-parameters", "get-paramaters")),
        ),
        (
            "project in the path",
            Box::new(|x| x.path = x.path.replace("0123", "0124")),
        ),
        (
            "query added",
            Box::new(|x| x.query = Some("limit=1".into())),
        ),
        ("body", Box::new(|x| x.body[10] ^= 1)),
        ("body emptied", Box::new(|x| x.body.clear())),
        ("body extended", Box::new(|x| x.body.push(b' '))),
    ];
    for (what, change) in &tampered {
        let mut x = clone_vector(&base);
        change(&mut x);
        assert_eq!(
            x.check(&v.secret_key, v.now),
            Err(Refusal::BadSignature),
            "{what}"
        );
    }
    let query_changes: Vec<Change> = vec![
        (
            "value",
            Box::new(|x| x.query = x.query.as_ref().map(|q| q.replace("limit=10", "limit=11"))),
        ),
        (
            "pair dropped",
            Box::new(|x| x.query = x.query.as_ref().map(|q| q.replace("&tag=z", ""))),
        ),
        ("query removed", Box::new(|x| x.query = None)),
        (
            "plus for %20",
            Box::new(|x| x.query = x.query.as_ref().map(|q| q.replace("a%20b", "a+b"))),
        ),
    ];
    for (what, change) in &query_changes {
        let mut x = clone_vector(&with_query);
        change(&mut x);
        assert_eq!(
            x.check(&v.secret_key, v.now),
            Err(Refusal::BadSignature),
            "{what}"
        );
    }
    // The order of the pairs on the wire is not signed: sorting is part of the scheme.
    let mut x = clone_vector(&with_query);
    let q = x.query.take().unwrap();
    let mut pairs: Vec<&str> = q.split('&').collect();
    pairs.reverse();
    x.query = Some(pairs.join("&"));
    assert_eq!(x.check(&v.secret_key, v.now), Ok(()));
}

fn clone_vector(x: &Vector) -> Vector {
    Vector {
        name: x.name.clone(),
        expect: x.expect.clone(),
        method: x.method.clone(),
        path: x.path.clone(),
        query: x.query.clone(),
        headers: x.headers.clone(),
        body: x.body.clone(),
        canonical: x.canonical.clone(),
        to_sign: x.to_sign.clone(),
        authorization: x.authorization.clone(),
    }
}

#[test]
fn a_changed_signed_header_date_or_secret_key_breaks_the_signature() {
    let (v, base) = first("get-parameters-for-import");
    for (name, value) in [
        ("X-Project-Id", "0123456789abcdef0123456789abcdee"),
        ("Host", "127.0.0.1:8444"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("User-Agent", "curl/8"),
        // One second later, well within the allowed skew.
        ("X-Sdk-Date", "20261126T173001Z"),
    ] {
        let mut x = clone_vector(&base);
        x.set_header(name, value);
        assert_eq!(
            x.check(&v.secret_key, v.now),
            Err(Refusal::BadSignature),
            "{name}"
        );
    }
    let mut wrong = v.secret_key.clone();
    wrong.push('x');
    assert_eq!(base.check(&wrong, v.now), Err(Refusal::BadSignature));
    assert_eq!(base.check("", v.now), Err(Refusal::BadSignature));
    // A header that is not signed may change.
    let mut x = clone_vector(&base);
    x.set_header("X-Request-Id", "anything");
    assert_eq!(x.check(&v.secret_key, v.now), Ok(()));
    // Whitespace around a value is not part of it (HTTP drops it too).
    let mut x = clone_vector(&base);
    x.set_header("X-Project-Id", "  0123456789abcdef0123456789abcdef\t");
    assert_eq!(x.check(&v.secret_key, v.now), Ok(()));
}

#[test]
fn a_stale_or_future_date_is_refused_even_when_signed() {
    let (v, base) = first("get-parameters-for-import");
    assert_eq!(base.check(&v.secret_key, v.now + MAX_SKEW_SECONDS), Ok(()));
    assert_eq!(base.check(&v.secret_key, v.now - MAX_SKEW_SECONDS), Ok(()));
    assert_eq!(
        base.check(&v.secret_key, v.now + MAX_SKEW_SECONDS + 1),
        Err(Refusal::Stale {
            skew_seconds: -MAX_SKEW_SECONDS - 1
        })
    );
    assert_eq!(
        base.check(&v.secret_key, v.now - MAX_SKEW_SECONDS - 1),
        Err(Refusal::Stale {
            skew_seconds: MAX_SKEW_SECONDS + 1
        })
    );
    // Signed properly an hour ago: still refused.
    let mut x = clone_vector(&base);
    x.set_header("X-Sdk-Date", &format_date(v.now - 3600));
    x.resign(&v.secret_key);
    assert_eq!(
        x.check(&v.secret_key, v.now),
        Err(Refusal::Stale {
            skew_seconds: -3600
        })
    );
    assert_eq!(x.check(&v.secret_key, v.now - 3600), Ok(()));
}

#[test]
fn the_date_must_be_present_well_formed_and_signed() {
    let (v, base) = first("get-parameters-for-import");
    for bad in [
        "2026-11-26T17:30:00Z",
        "20261126T173000",
        "20261326T173000Z",
        "20261126T253000Z",
        "2026112xT173000Z",
        "",
    ] {
        let mut x = clone_vector(&base);
        x.set_header("X-Sdk-Date", bad);
        assert!(
            matches!(x.check(&v.secret_key, v.now), Err(Refusal::BadDate(_))),
            "{bad}"
        );
    }
    let mut x = clone_vector(&base);
    x.headers.retain(|(n, _)| n != "X-Sdk-Date");
    assert!(matches!(
        x.check(&v.secret_key, v.now),
        Err(Refusal::BadDate(_))
    ));
    assert_eq!(parse_date("20261126T173000Z"), Ok(v.now));
    assert_eq!(format_date(v.now), "20261126T173000Z");

    // Signed headers without the date, or without the host: refused before the MAC.
    for (drop, refusal) in [
        ("x-sdk-date", Refusal::NotSigned("x-sdk-date")),
        ("host", Refusal::NotSigned("host")),
    ] {
        let mut x = clone_vector(&base);
        let auth = parse_authorization(&x.authorization).unwrap();
        let signed: Vec<String> = auth
            .signed_headers
            .into_iter()
            .filter(|h| h != drop)
            .collect();
        let headers = x.header_refs();
        let req = Request {
            method: &x.method,
            path: &x.path,
            query: x.query.as_deref(),
            headers: &headers,
            body: &x.body,
        };
        let value = authorization(&req, "AK", v.secret_key.as_bytes(), &signed).unwrap();
        x.set_header("Authorization", &value);
        assert_eq!(x.check(&v.secret_key, v.now), Err(refusal));
    }
}

#[test]
fn signed_headers_must_be_there_once() {
    let (v, base) = first("get-parameters-for-import");
    let mut x = clone_vector(&base);
    x.headers.retain(|(n, _)| n != "X-Project-Id");
    assert_eq!(
        x.check(&v.secret_key, v.now),
        Err(Refusal::MissingHeader("x-project-id".into()))
    );
    let mut x = clone_vector(&base);
    x.headers.push(("x-project-id".into(), b"other".to_vec()));
    assert_eq!(
        x.check(&v.secret_key, v.now),
        Err(Refusal::RepeatedHeader("x-project-id".into()))
    );
}

#[test]
fn the_content_hash_header_may_repeat_the_hash_but_not_replace_it() {
    let (v, base) = first("get-parameters-for-import");
    let right = sha256_hex(&base.body);
    let mut x = clone_vector(&base);
    x.set_header("X-Sdk-Content-Sha256", &right);
    assert_eq!(
        x.check(&v.secret_key, v.now),
        Ok(()),
        "not signed, equal: fine"
    );
    let mut x = clone_vector(&base);
    x.set_header("X-Sdk-Content-Sha256", &sha256_hex(b"other"));
    assert_eq!(
        x.check(&v.secret_key, v.now),
        Err(Refusal::PayloadHashMismatch)
    );
    let mut x = clone_vector(&base);
    x.set_header("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD");
    assert_eq!(x.check(&v.secret_key, v.now), Err(Refusal::UnsignedPayload));
}

#[test]
fn malformed_authorization_headers_are_refused() {
    for bad in [
        "",
        "SDK-HMAC-SHA256",
        "SDK-HMAC-SM3 Access=a, SignedHeaders=host;x-sdk-date, Signature=00",
        "SDK-HMAC-SHA256Access=a, SignedHeaders=host, Signature=00",
        "SDK-HMAC-SHA256 Access=a, SignedHeaders=host;x-sdk-date",
        "SDK-HMAC-SHA256 SignedHeaders=host;x-sdk-date, Signature=00",
        "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=00",
        "SDK-HMAC-SHA256 Access=a, Access=b, SignedHeaders=host, Signature=00",
        "SDK-HMAC-SHA256 Access=a, SignedHeaders=Host;x-sdk-date, Signature=00",
        "SDK-HMAC-SHA256 Access=a, SignedHeaders=host;;x-sdk-date, Signature=00",
        "SDK-HMAC-SHA256 Access=a, SignedHeaders=host, Signature=00, Extra=1",
        "SDK-HMAC-SHA256 Access=a SignedHeaders=host Signature=00",
        "Bearer abc",
    ] {
        assert!(
            matches!(parse_authorization(bad), Err(Refusal::Malformed(_))),
            "{bad:?}"
        );
    }
    let ok = parse_authorization(
        "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=abcd",
    )
    .unwrap();
    assert_eq!(ok.access_key, "AK1");
    assert_eq!(ok.signed_headers, ["host", "x-sdk-date"]);
    // A signature that is not hex never matches.
    let (v, base) = first("get-parameters-for-import");
    let mut x = clone_vector(&base);
    let auth = base.authorization.replace("Signature=5", "Signature=z");
    x.set_header("Authorization", &auth);
    assert_eq!(x.check(&v.secret_key, v.now), Err(Refusal::BadSignature));
}

#[test]
fn the_uri_rules_of_the_sdk() {
    assert_eq!(canonical_uri("/v1/p/secrets"), "/v1/p/secrets/");
    assert_eq!(canonical_uri("/v1/p/secrets/"), "/v1/p/secrets/");
    // As the SDK computes them (its `_process_canonical_uri`, checked by hand).
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("/a%2Fb/c%20d/%7e/%zz"), "/a/b/c%20d/~/%25zz/");
    assert_eq!(canonical_uri("/caf%C3%A9/x*y"), "/caf%C3%A9/x%2Ay/");
    assert_eq!(canonical_query(None), "");
    assert_eq!(canonical_query(Some("b=2&a=1&a=0&c")), "a=0&a=1&b=2&c=");
    assert_eq!(canonical_query(Some("k=a+b&j=%7E")), "j=~&k=a%2Bb");
}
