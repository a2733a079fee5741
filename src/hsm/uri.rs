//! RFC 7512 `pkcs11:` URIs: parsing and canonical formatting.
//!
//! The parser is strict about structure (unknown attributes, duplicates, empty
//! values and broken percent-encoding are errors) so that a typo in a key or
//! token selector fails loudly instead of silently matching more objects than
//! intended. It is lenient about which characters appear unencoded in values,
//! because people type labels with spaces by hand.
//!
//! `pin-value` is kept in a [`SecretString`] and is never written back out by
//! `Display`, so a formatted URI can be logged or stored safely.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::zeroize::Zeroize;
use secrecy::SecretString;

const SCHEME: &str = "pkcs11:";

/// Characters written unencoded in path values: RFC 3986 unreserved plus the
/// pchar sub-delims that are common in labels. ';' '?' '/' '%' '#' and space
/// stay encoded so the output cannot be misread by any URI parser.
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'&');

/// '&' separates query attributes, so it has to be encoded there.
const QUERY_VALUE: &AsciiSet = &PATH_VALUE.add(b'&');

/// The `type=` path attribute (CKA_CLASS), spelled as in RFC 7512.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    SecretKey,
    PrivateKey,
    PublicKey,
    Cert,
    Data,
}

impl ObjectType {
    /// The RFC 7512 spelling: "secret-key", "private", "public", "cert", "data".
    pub fn as_str(&self) -> &'static str {
        match self {
            ObjectType::SecretKey => "secret-key",
            ObjectType::PrivateKey => "private",
            ObjectType::PublicKey => "public",
            ObjectType::Cert => "cert",
            ObjectType::Data => "data",
        }
    }
}

impl FromStr for ObjectType {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secret-key" => Ok(ObjectType::SecretKey),
            // RFC 7512 spells these "private" and "public"; the "-key" forms
            // are what people type after reading CKO_PRIVATE_KEY, so accept both.
            "private" | "private-key" => Ok(ObjectType::PrivateKey),
            "public" | "public-key" => Ok(ObjectType::PublicKey),
            "cert" => Ok(ObjectType::Cert),
            "data" => Ok(ObjectType::Data),
            other => Err(UriError::BadValue {
                attribute: "type".into(),
                reason: format!("{other:?} is not one of secret-key, private, public, cert, data"),
            }),
        }
    }
}

/// Why a string is not an acceptable PKCS#11 URI.
///
/// Errors about `pin-value` never carry its value; errors about other
/// attributes (type, slot-id, library-version) may quote the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("The URI does not start with the \"pkcs11:\" scheme.")]
    MissingScheme,
    #[error(
        "The value of URI attribute {attribute:?} has a '%' that is not followed by two hexadecimal digits."
    )]
    BadPercentEncoding { attribute: String },
    #[error(
        "{attribute:?} is not a known PKCS#11 URI path attribute (vendor attributes must start with \"x-\")."
    )]
    UnknownPathAttribute { attribute: String },
    #[error(
        "{attribute:?} is not a known PKCS#11 URI query attribute (vendor attributes must start with \"x-\")."
    )]
    UnknownQueryAttribute { attribute: String },
    #[error("The URI attribute {attribute:?} appears more than once.")]
    DuplicateAttribute { attribute: String },
    #[error("{}", describe_empty(.attribute))]
    EmptyAttribute { attribute: String },
    #[error("The URI attribute {attribute:?} has an invalid value: {reason}.")]
    BadValue { attribute: String, reason: String },
}

fn describe_empty(attribute: &str) -> String {
    if attribute.is_empty() {
        "The URI has an empty component or one without an attribute name \
         (look for a stray ';', '&' or '=')."
            .to_string()
    } else {
        format!("The URI attribute {attribute:?} has no value.")
    }
}

/// A parsed `pkcs11:` URI. `None` means "not constrained".
#[derive(Debug, Clone, Default)]
pub struct Pkcs11Uri {
    // path attributes (token / slot / library)
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    pub library_version: Option<(u8, u8)>,
    pub slot_id: Option<u64>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    // path attributes (object)
    pub object: Option<String>,
    /// Raw CKA_ID bytes; any byte is allowed, so this is not UTF-8 checked.
    pub id: Option<Vec<u8>>,
    pub object_type: Option<ObjectType>,
    // query attributes
    pub pin_source: Option<String>,
    pub pin_value: Option<SecretString>,
    pub module_name: Option<String>,
    pub module_path: Option<String>,
    /// vendor attributes ("x-..." in path or query), kept in order, decoded.
    ///
    /// `Display` writes them all into the path, since where they came from is
    /// not recorded.
    pub vendor: Vec<(String, String)>,
}

impl Pkcs11Uri {
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if !Self::looks_like_uri(s) {
            return Err(UriError::MissingScheme);
        }
        // The scheme is ASCII, so byte index 7 is a char boundary.
        let rest = &s[SCHEME.len()..];
        // The first '?' ends the path; later ones are ordinary query characters.
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, query),
            None => (rest, ""),
        };

        let mut uri = Pkcs11Uri::default();
        if !path.is_empty() {
            for component in path.split(';') {
                let (name, value) = split_component(component)?;
                uri.set_path_attribute(name, value)?;
            }
        }
        if !query.is_empty() {
            for component in query.split('&') {
                let (name, value) = split_component(component)?;
                uri.set_query_attribute(name, value)?;
            }
        }

        // RFC 7512 says a URI carrying both SHOULD be refused: which PIN wins
        // would otherwise be an implementation accident.
        if uri.pin_source.is_some() && uri.pin_value.is_some() {
            return Err(UriError::BadValue {
                attribute: "pin-value".into(),
                reason: "pin-value and pin-source cannot be used together".into(),
            });
        }
        Ok(uri)
    }

    /// true when the string starts with "pkcs11:" (case-insensitive scheme)
    pub fn looks_like_uri(s: &str) -> bool {
        s.get(..SCHEME.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(SCHEME))
    }

    /// true when any token-identifying attribute (token, manufacturer, serial, model, slot-*) is set
    pub fn has_token_attributes(&self) -> bool {
        self.token.is_some()
            || self.manufacturer.is_some()
            || self.serial.is_some()
            || self.model.is_some()
            || self.slot_id.is_some()
            || self.slot_description.is_some()
            || self.slot_manufacturer.is_some()
    }

    /// true when object, id or type is set
    pub fn has_object_attributes(&self) -> bool {
        self.object.is_some() || self.id.is_some() || self.object_type.is_some()
    }

    /// A URI naming the token only (token/manufacturer/serial/model copied from the arguments), for building key URIs
    ///
    /// Empty arguments are left out: `serial=` would not parse back, and some
    /// tokens report an empty serial or model.
    pub fn for_token(label: &str, manufacturer: &str, model: &str, serial: &str) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Pkcs11Uri {
            token: non_empty(label),
            manufacturer: non_empty(manufacturer),
            model: non_empty(model),
            serial: non_empty(serial),
            ..Pkcs11Uri::default()
        }
    }

    fn set_path_attribute(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        match name {
            "token" => assign(&mut self.token, name, value, decode_text),
            "manufacturer" => assign(&mut self.manufacturer, name, value, decode_text),
            "serial" => assign(&mut self.serial, name, value, decode_text),
            "model" => assign(&mut self.model, name, value, decode_text),
            "library-manufacturer" => {
                assign(&mut self.library_manufacturer, name, value, decode_text)
            }
            "library-description" => {
                assign(&mut self.library_description, name, value, decode_text)
            }
            "library-version" => assign(
                &mut self.library_version,
                name,
                value,
                parse_library_version,
            ),
            "slot-id" => assign(&mut self.slot_id, name, value, parse_slot_id),
            "slot-description" => assign(&mut self.slot_description, name, value, decode_text),
            "slot-manufacturer" => assign(&mut self.slot_manufacturer, name, value, decode_text),
            "object" => assign(&mut self.object, name, value, decode_text),
            "id" => assign(&mut self.id, name, value, decode_bytes),
            "type" => assign(&mut self.object_type, name, value, parse_object_type),
            _ if is_vendor_name(name) => self.add_vendor(name, value),
            _ => Err(UriError::UnknownPathAttribute {
                attribute: name.to_string(),
            }),
        }
    }

    fn set_query_attribute(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        match name {
            "pin-source" => assign(&mut self.pin_source, name, value, decode_text),
            "pin-value" => assign(&mut self.pin_value, name, value, decode_secret),
            "module-name" => assign(&mut self.module_name, name, value, decode_text),
            "module-path" => assign(&mut self.module_path, name, value, decode_text),
            _ if is_vendor_name(name) => self.add_vendor(name, value),
            _ => Err(UriError::UnknownQueryAttribute {
                attribute: name.to_string(),
            }),
        }
    }

    fn add_vendor(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        // Duplicates are refused across path and query alike, because Display
        // puts every vendor attribute into the path, where RFC 7512 forbids
        // repeats; accepting them here would break the round trip.
        if self.vendor.iter().any(|(n, _)| n == name) {
            return Err(UriError::DuplicateAttribute {
                attribute: name.to_string(),
            });
        }
        check_not_empty(name, value)?;
        let decoded = decode_text(name, value)?;
        self.vendor.push((name.to_string(), decoded));
        Ok(())
    }
}

/// Splits `name=value` at the first '=' so that values may contain '='.
/// A component without '=' yields an empty value, so the caller can say
/// "unknown attribute" for `foo` and "no value" for `object`.
fn split_component(component: &str) -> Result<(&str, &str), UriError> {
    let (name, value) = component.split_once('=').unwrap_or((component, ""));
    if name.is_empty() {
        return Err(UriError::EmptyAttribute {
            attribute: String::new(),
        });
    }
    Ok((name, value))
}

fn check_not_empty(name: &str, value: &str) -> Result<(), UriError> {
    if value.is_empty() {
        return Err(UriError::EmptyAttribute {
            attribute: name.to_string(),
        });
    }
    Ok(())
}

fn assign<T>(
    slot: &mut Option<T>,
    name: &str,
    value: &str,
    convert: fn(&str, &str) -> Result<T, UriError>,
) -> Result<(), UriError> {
    // Checked before decoding so a repeated pin-value is never decoded at all.
    if slot.is_some() {
        return Err(UriError::DuplicateAttribute {
            attribute: name.to_string(),
        });
    }
    check_not_empty(name, value)?;
    *slot = Some(convert(name, value)?);
    Ok(())
}

/// RFC 7512: "x-" followed by ALPHA / DIGIT / "-" / "_". Holding names to that
/// keeps them safe to write back unencoded.
fn is_vendor_name(name: &str) -> bool {
    name.strip_prefix("x-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding: the `percent-encoding` crate keeps a malformed
/// escape such as "%zz" as literal text, which would hide a typo.
fn decode_bytes(attribute: &str, raw: &str) -> Result<Vec<u8>, UriError> {
    let bad = || UriError::BadPercentEncoding {
        attribute: attribute.to_string(),
    };
    let input = raw.as_bytes();

    // Validate and size first: an exactly sized buffer is never reallocated,
    // so a decoded PIN leaves no stray copies behind in freed memory.
    let mut decoded_len = 0;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if hex_digit_pair(input, i).is_none() {
                return Err(bad());
            }
            i += 3;
        } else {
            i += 1;
        }
        decoded_len += 1;
    }

    let mut out = Vec::with_capacity(decoded_len);
    let mut i = 0;
    while i < input.len() {
        match (input[i], hex_digit_pair(input, i)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex_digit_pair(input: &[u8], percent_at: usize) -> Option<u8> {
    let h = hex_digit(*input.get(percent_at + 1)?)?;
    let l = hex_digit(*input.get(percent_at + 2)?)?;
    Some(h << 4 | l)
}

fn not_utf8(attribute: &str) -> UriError {
    UriError::BadValue {
        attribute: attribute.to_string(),
        reason: "it is not valid UTF-8 after percent-decoding".into(),
    }
}

fn decode_text(attribute: &str, raw: &str) -> Result<String, UriError> {
    String::from_utf8(decode_bytes(attribute, raw)?).map_err(|_| not_utf8(attribute))
}

fn decode_secret(attribute: &str, raw: &str) -> Result<SecretString, UriError> {
    match String::from_utf8(decode_bytes(attribute, raw)?) {
        Ok(pin) => Ok(SecretString::from(pin)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(not_utf8(attribute))
        }
    }
}

/// `str::parse` accepts a leading '+', which RFC 7512's 1*DIGIT does not.
fn parse_digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_slot_id(attribute: &str, raw: &str) -> Result<u64, UriError> {
    let text = decode_text(attribute, raw)?;
    parse_digits(&text).ok_or_else(|| UriError::BadValue {
        attribute: attribute.to_string(),
        reason: format!("{text:?} is not a decimal slot number that fits in 64 bits"),
    })
}

/// CK_VERSION has one byte each for major and minor; "M" means "M.0".
fn parse_library_version(attribute: &str, raw: &str) -> Result<(u8, u8), UriError> {
    let text = decode_text(attribute, raw)?;
    let parsed = match text.split_once('.') {
        Some((major, minor)) => parse_digits(major).zip(parse_digits(minor)),
        None => parse_digits(&text).map(|major| (major, 0)),
    };
    parsed.ok_or_else(|| UriError::BadValue {
        attribute: attribute.to_string(),
        reason: format!("{text:?} is not of the form M or M.N with numbers from 0 to 255"),
    })
}

fn parse_object_type(attribute: &str, raw: &str) -> Result<ObjectType, UriError> {
    decode_text(attribute, raw)?.parse()
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pkcs11Uri::parse(s)
    }
}

/// Canonical form: fixed attribute order, uppercase hex escapes, and never the
/// `pin-value`.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path_text = |name: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| (name, utf8_percent_encode(v, PATH_VALUE).to_string()))
        };
        let query_text = |name: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| (name, utf8_percent_encode(v, QUERY_VALUE).to_string()))
        };

        let mut path: Vec<(&str, String)> = [
            path_text("token", &self.token),
            path_text("manufacturer", &self.manufacturer),
            path_text("serial", &self.serial),
            path_text("model", &self.model),
            path_text("library-manufacturer", &self.library_manufacturer),
            path_text("library-description", &self.library_description),
            self.library_version
                .map(|(major, minor)| ("library-version", format!("{major}.{minor}"))),
            self.slot_id.map(|id| ("slot-id", id.to_string())),
            path_text("slot-description", &self.slot_description),
            path_text("slot-manufacturer", &self.slot_manufacturer),
            path_text("object", &self.object),
            // Every byte is escaped: CKA_ID is binary and often not printable.
            self.id
                .as_ref()
                .map(|id| ("id", id.iter().map(|b| format!("%{b:02X}")).collect())),
            self.object_type.map(|t| ("type", t.as_str().to_string())),
        ]
        .into_iter()
        .flatten()
        .collect();
        path.extend(
            self.vendor
                .iter()
                .map(|(n, v)| (n.as_str(), utf8_percent_encode(v, PATH_VALUE).to_string())),
        );

        let query: Vec<(&str, String)> = [
            query_text("pin-source", &self.pin_source),
            query_text("module-name", &self.module_name),
            query_text("module-path", &self.module_path),
        ]
        .into_iter()
        .flatten()
        .collect();

        f.write_str(SCHEME)?;
        for (i, (name, value)) in path.iter().enumerate() {
            let sep = if i == 0 { "" } else { ";" };
            write!(f, "{sep}{name}={value}")?;
        }
        for (i, (name, value)) in query.iter().enumerate() {
            let sep = if i == 0 { "?" } else { "&" };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> UriError {
        match Pkcs11Uri::parse(s) {
            Ok(u) => panic!("{s:?} should be rejected, parsed as {u:?}"),
            Err(e) => e,
        }
    }

    /// Pkcs11Uri has no PartialEq (SecretString has none); Debug covers every
    /// field and redacts the PIN, which the round trip drops anyway.
    fn same(a: &Pkcs11Uri, b: &Pkcs11Uri) -> bool {
        let strip = |u: &Pkcs11Uri| Pkcs11Uri {
            pin_value: None,
            ..u.clone()
        };
        format!("{:?}", strip(a)) == format!("{:?}", strip(b))
    }

    fn assert_round_trip(u: &Pkcs11Uri) {
        let text = u.to_string();
        let back = Pkcs11Uri::parse(&text)
            .unwrap_or_else(|e| panic!("display output {text:?} does not parse: {e}"));
        assert!(
            same(u, &back),
            "round trip changed {u:?} into {back:?} via {text:?}"
        );
    }

    #[test]
    fn bare_scheme_is_valid_and_constrains_nothing() {
        let u = parse("pkcs11:");
        assert!(same(&u, &Pkcs11Uri::default()));
        assert!(!u.has_token_attributes());
        assert!(!u.has_object_attributes());
        assert_eq!(u.to_string(), "pkcs11:");
        // An empty query is as harmless as an empty path.
        assert!(same(&parse("pkcs11:?"), &Pkcs11Uri::default()));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("PKCS11:token=a").token.as_deref(), Some("a"));
        assert_eq!(parse("Pkcs11:token=b").token.as_deref(), Some("b"));
        assert_eq!(parse("PKCS11:token=a").to_string(), "pkcs11:token=a");
    }

    #[test]
    fn missing_scheme_is_rejected() {
        for s in [
            "pkcs12:token=a",
            "object=x",
            "",
            "pkcs11",
            "pkcs11token=a",
            " pkcs11:",
        ] {
            assert_eq!(err(s), UriError::MissingScheme, "input {s:?}");
        }
    }

    #[test]
    fn looks_like_uri_checks_only_the_scheme() {
        assert!(Pkcs11Uri::looks_like_uri("pkcs11:"));
        assert!(Pkcs11Uri::looks_like_uri("PKCS11:object=k"));
        assert!(Pkcs11Uri::looks_like_uri("pkcs11:foo=bar"));
        assert!(!Pkcs11Uri::looks_like_uri("my-key"));
        assert!(!Pkcs11Uri::looks_like_uri("pkcs11"));
        assert!(!Pkcs11Uri::looks_like_uri("file:/tmp/x"));
        // A multibyte char straddling byte 7 must not panic.
        assert!(!Pkcs11Uri::looks_like_uri("pkcs1€:"));
    }

    #[test]
    fn decodes_space_slash_and_semicolon() {
        let u = parse("pkcs11:token=My%20Token%2Fprod%3Bv2;object=a%25b%3Fc%23d");
        assert_eq!(u.token.as_deref(), Some("My Token/prod;v2"));
        assert_eq!(u.object.as_deref(), Some("a%b?c#d"));
    }

    #[test]
    fn encodes_space_slash_semicolon_and_friends() {
        let u = Pkcs11Uri {
            token: Some("My Token/prod;v2".into()),
            object: Some("a%b?c#d".into()),
            ..Default::default()
        };
        assert_eq!(
            u.to_string(),
            "pkcs11:token=My%20Token%2Fprod%3Bv2;object=a%25b%3Fc%23d"
        );
        assert_round_trip(&u);
    }

    #[test]
    fn pchar_sub_delims_stay_readable_in_the_path() {
        let label = "a-b.c_d~e!f$g'h(i)j*k+l,m=n:o@p&q";
        let u = Pkcs11Uri {
            object: Some(label.into()),
            ..Default::default()
        };
        assert_eq!(u.to_string(), format!("pkcs11:object={label}"));
        assert_round_trip(&u);
    }

    #[test]
    fn non_ascii_labels_both_ways() {
        let u = parse("pkcs11:token=Cl%C3%A9%20%E2%82%AC");
        assert_eq!(u.token.as_deref(), Some("Clé €"));
        assert_eq!(u.to_string(), "pkcs11:token=Cl%C3%A9%20%E2%82%AC");
        // Hand-typed URIs often carry raw UTF-8; accept it, print it encoded.
        let raw = parse("pkcs11:token=Clé €");
        assert_eq!(raw.token.as_deref(), Some("Clé €"));
        assert_eq!(raw.to_string(), "pkcs11:token=Cl%C3%A9%20%E2%82%AC");
    }

    #[test]
    fn text_attribute_must_be_utf8() {
        let e = err("pkcs11:object=%FF%FE");
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "object"),
            "{e:?}"
        );
    }

    #[test]
    fn id_is_binary() {
        let u = parse("pkcs11:id=%01%02");
        assert_eq!(u.id, Some(vec![1, 2]));
        assert_eq!(u.to_string(), "pkcs11:id=%01%02");
        // Not UTF-8, and must still be accepted.
        assert_eq!(parse("pkcs11:id=%FF%00%fe").id, Some(vec![0xff, 0, 0xfe]));
    }

    #[test]
    fn id_accepts_lowercase_hex_and_prints_uppercase() {
        let u = parse("pkcs11:id=%0a%bC");
        assert_eq!(u.id, Some(vec![0x0a, 0xbc]));
        assert_eq!(u.to_string(), "pkcs11:id=%0A%BC");
    }

    #[test]
    fn id_with_raw_ascii_chars() {
        assert_eq!(parse("pkcs11:id=ab").id, Some(b"ab".to_vec()));
        let mixed = parse("pkcs11:id=a%00b");
        assert_eq!(mixed.id, Some(b"a\0b".to_vec()));
        assert_eq!(mixed.to_string(), "pkcs11:id=%61%00%62");
    }

    #[test]
    fn all_five_types_and_a_bad_one() {
        let cases = [
            ("secret-key", ObjectType::SecretKey),
            ("private", ObjectType::PrivateKey),
            ("public", ObjectType::PublicKey),
            ("cert", ObjectType::Cert),
            ("data", ObjectType::Data),
        ];
        for (text, ty) in cases {
            let u = parse(&format!("pkcs11:type={text}"));
            assert_eq!(u.object_type, Some(ty));
            assert_eq!(ty.as_str(), text);
            assert_eq!(text.parse::<ObjectType>(), Ok(ty));
            assert_eq!(u.to_string(), format!("pkcs11:type={text}"));
        }
        assert_eq!(
            parse("pkcs11:type=private-key").object_type,
            Some(ObjectType::PrivateKey)
        );
        assert_eq!(
            parse("pkcs11:type=public-key").to_string(),
            "pkcs11:type=public"
        );
        for bad in ["privatekey", "key", "Cert", "secret%20key"] {
            let e = err(&format!("pkcs11:type={bad}"));
            assert!(
                matches!(&e, UriError::BadValue { attribute, .. } if attribute == "type"),
                "type={bad}: {e:?}"
            );
        }
        // Percent-encoding applies to type values as well.
        assert_eq!(
            parse("pkcs11:type=%63ert").object_type,
            Some(ObjectType::Cert)
        );
    }

    #[test]
    fn empty_value_is_rejected() {
        for (s, attr) in [
            ("pkcs11:object=", "object"),
            ("pkcs11:token=a;id=", "id"),
            ("pkcs11:?pin-source=", "pin-source"),
            ("pkcs11:x-foo=", "x-foo"),
        ] {
            assert_eq!(
                err(s),
                UriError::EmptyAttribute {
                    attribute: attr.into()
                },
                "input {s:?}"
            );
        }
    }

    #[test]
    fn attribute_without_equals_sign_is_empty() {
        assert_eq!(
            err("pkcs11:object"),
            UriError::EmptyAttribute {
                attribute: "object".into()
            }
        );
    }

    #[test]
    fn empty_components_are_rejected() {
        let empty = UriError::EmptyAttribute {
            attribute: String::new(),
        };
        for s in [
            "pkcs11:;object=a",
            "pkcs11:object=a;",
            "pkcs11:token=t;;object=a",
            "pkcs11:=a",
            "pkcs11:token=t?&pin-source=x",
            "pkcs11:token=t?pin-source=x&",
        ] {
            assert_eq!(err(s), empty, "input {s:?}");
        }
    }

    #[test]
    fn pin_source_with_file_path() {
        let u = parse("pkcs11:token=t?pin-source=file:/etc/hsm/pin.txt");
        assert_eq!(u.pin_source.as_deref(), Some("file:/etc/hsm/pin.txt"));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=t?pin-source=file:%2Fetc%2Fhsm%2Fpin.txt"
        );
        assert_round_trip(&u);
    }

    #[test]
    fn module_path_query_attribute() {
        let u = parse("pkcs11:?module-path=/usr/lib/softhsm/libsofthsm2.so");
        assert_eq!(
            u.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        // Query attributes say how to reach a token, not which one.
        assert!(!u.has_token_attributes());
        assert_round_trip(&u);
        let named = parse("pkcs11:?module-name=softhsm2&module-path=%2Fopt%2Fp11.so");
        assert_eq!(named.module_name.as_deref(), Some("softhsm2"));
        assert_eq!(named.module_path.as_deref(), Some("/opt/p11.so"));
    }

    #[test]
    fn pin_value_is_parsed_but_never_displayed() {
        let u = parse("pkcs11:token=t;object=k?pin-value=12%2034&module-name=m");
        assert_eq!(
            u.pin_value.as_ref().map(|p| p.expose_secret().to_string()),
            Some("12 34".to_string())
        );
        let shown = u.to_string();
        assert_eq!(shown, "pkcs11:token=t;object=k?module-name=m");
        assert!(!format!("{u:?}").contains("12 34"));
        // A clone keeps the PIN: callers clone URIs before using them.
        let cloned = u.clone();
        assert_eq!(cloned.pin_value.unwrap().expose_secret(), "12 34");
    }

    #[test]
    fn pin_value_errors_do_not_echo_the_pin() {
        let e = err("pkcs11:?pin-value=hunter2%FF");
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "pin-value"),
            "{e:?}"
        );
        assert!(!e.to_string().contains("hunter2"));
        let e = err("pkcs11:?pin-value=hunter2%Z1");
        assert_eq!(
            e,
            UriError::BadPercentEncoding {
                attribute: "pin-value".into()
            }
        );
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn pin_value_and_pin_source_together_are_refused() {
        let e = err("pkcs11:?pin-source=file:/p&pin-value=1234");
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "pin-value"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_percent_encoding_is_rejected() {
        for (s, attr) in [
            ("pkcs11:object=%zz", "object"),
            ("pkcs11:object=ab%4", "object"),
            ("pkcs11:object=ab%", "object"),
            ("pkcs11:token=%4g", "token"),
            ("pkcs11:id=%0", "id"),
            ("pkcs11:?module-path=%%41", "module-path"),
        ] {
            assert_eq!(
                err(s),
                UriError::BadPercentEncoding {
                    attribute: attr.into()
                },
                "input {s:?}"
            );
        }
    }

    #[test]
    fn unknown_attributes_are_rejected() {
        assert_eq!(
            err("pkcs11:foo=bar"),
            UriError::UnknownPathAttribute {
                attribute: "foo".into()
            }
        );
        assert_eq!(
            err("pkcs11:foo"),
            UriError::UnknownPathAttribute {
                attribute: "foo".into()
            }
        );
        // Names are case-sensitive, and query names are not path names.
        assert_eq!(
            err("pkcs11:Token=a"),
            UriError::UnknownPathAttribute {
                attribute: "Token".into()
            }
        );
        assert_eq!(
            err("pkcs11:pin-value=1234"),
            UriError::UnknownPathAttribute {
                attribute: "pin-value".into()
            }
        );
        assert_eq!(
            err("pkcs11:?foo=bar"),
            UriError::UnknownQueryAttribute {
                attribute: "foo".into()
            }
        );
        assert_eq!(
            err("pkcs11:?token=a"),
            UriError::UnknownQueryAttribute {
                attribute: "token".into()
            }
        );
        // "x-" alone or with characters outside the RFC's set is not a vendor name.
        for bad in ["x-", "x-a.b", "X-foo"] {
            assert_eq!(
                err(&format!("pkcs11:{bad}=1")),
                UriError::UnknownPathAttribute {
                    attribute: bad.into()
                }
            );
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        for (s, attr) in [
            ("pkcs11:object=a;object=b", "object"),
            ("pkcs11:object=a;object=a", "object"),
            ("pkcs11:id=%01;token=t;id=%02", "id"),
            ("pkcs11:?module-path=a&module-path=b", "module-path"),
            ("pkcs11:?pin-value=1&pin-value=2", "pin-value"),
            ("pkcs11:x-a=1;x-a=2", "x-a"),
            ("pkcs11:x-a=1?x-a=2", "x-a"),
        ] {
            assert_eq!(
                err(s),
                UriError::DuplicateAttribute {
                    attribute: attr.into()
                },
                "input {s:?}"
            );
        }
    }

    #[test]
    fn slot_id_must_be_a_decimal_u64() {
        assert_eq!(parse("pkcs11:slot-id=0").slot_id, Some(0));
        assert_eq!(
            parse("pkcs11:slot-id=18446744073709551615").slot_id,
            Some(u64::MAX)
        );
        for bad in ["abc", "+5", "-1", "0x10", "1 ", "18446744073709551616"] {
            let e = err(&format!("pkcs11:slot-id={bad}"));
            assert!(
                matches!(&e, UriError::BadValue { attribute, .. } if attribute == "slot-id"),
                "slot-id={bad}: {e:?}"
            );
        }
    }

    #[test]
    fn library_version_is_m_or_m_dot_n() {
        assert_eq!(
            parse("pkcs11:library-version=2").library_version,
            Some((2, 0))
        );
        assert_eq!(
            parse("pkcs11:library-version=3.14").library_version,
            Some((3, 14))
        );
        assert_eq!(
            parse("pkcs11:library-version=2").to_string(),
            "pkcs11:library-version=2.0"
        );
        for bad in ["1.x", "1.", ".1", "1.2.3", "256", "1.256", "v1"] {
            let e = err(&format!("pkcs11:library-version={bad}"));
            assert!(
                matches!(&e, UriError::BadValue { attribute, .. } if attribute == "library-version"),
                "library-version={bad}: {e:?}"
            );
        }
    }

    #[test]
    fn vendor_attributes_are_kept_in_order_and_decoded() {
        let u = parse("pkcs11:x-zeta=1;token=t;x-alpha=a%20b?x-q_1=%2Fq&pin-source=p");
        assert_eq!(
            u.vendor,
            vec![
                ("x-zeta".to_string(), "1".to_string()),
                ("x-alpha".to_string(), "a b".to_string()),
                ("x-q_1".to_string(), "/q".to_string()),
            ]
        );
        assert_eq!(
            u.to_string(),
            "pkcs11:token=t;x-zeta=1;x-alpha=a%20b;x-q_1=%2Fq?pin-source=p"
        );
        assert_round_trip(&u);
    }

    #[test]
    fn equals_sign_inside_a_value_is_kept() {
        assert_eq!(parse("pkcs11:object=a=b").object.as_deref(), Some("a=b"));
    }

    #[test]
    fn query_encodes_ampersand_but_path_does_not() {
        let u = Pkcs11Uri {
            token: Some("R&D".into()),
            pin_source: Some("file:a&b".into()),
            ..Default::default()
        };
        assert_eq!(u.to_string(), "pkcs11:token=R&D?pin-source=file:a%26b");
        assert_round_trip(&u);
        // A raw '&' in the path is data, not a separator.
        assert_eq!(parse("pkcs11:token=R&D").token.as_deref(), Some("R&D"));
    }

    #[test]
    fn full_uri_round_trip_in_canonical_order() {
        let input = "pkcs11:type=private;id=%de%ad;object=signing%20key;slot-manufacturer=SM;\
                     slot-description=SD;slot-id=7;library-version=2.40;library-description=LD;\
                     library-manufacturer=LM;model=SoftHSM%20v2;serial=9a2e;manufacturer=SoftHSM%20project;\
                     token=prod%2Fkeys;x-v=1?module-path=%2Fusr%2Flib%2Fp11.so&module-name=softhsm\
                     &pin-source=env:HSM_PIN";
        let u = parse(input);
        let canonical = "pkcs11:token=prod%2Fkeys;manufacturer=SoftHSM%20project;serial=9a2e;\
                         model=SoftHSM%20v2;library-manufacturer=LM;library-description=LD;\
                         library-version=2.40;slot-id=7;slot-description=SD;slot-manufacturer=SM;\
                         object=signing%20key;id=%DE%AD;type=private;x-v=1\
                         ?pin-source=env:HSM_PIN&module-name=softhsm&module-path=%2Fusr%2Flib%2Fp11.so";
        assert_eq!(u.to_string(), canonical);
        assert_round_trip(&u);
        assert_eq!(parse(canonical).to_string(), canonical);
        assert_eq!(u.library_version, Some((2, 40)));
        assert_eq!(u.id, Some(vec![0xde, 0xad]));
        assert_eq!(u.object_type, Some(ObjectType::PrivateKey));
    }

    #[test]
    fn awkward_text_values_round_trip_in_every_text_field() {
        let values = [
            "plain",
            "with space",
            "a/b;c?d#e%f&g=h",
            "  leading and trailing  ",
            "tab\tnewline\n",
            "ünïcødé 🔑",
            "%41 not an escape",
            "'quoted' (paren) *star* +plus, @at :colon",
        ];
        for v in values {
            let fields: [fn(&mut Pkcs11Uri) -> &mut Option<String>; 12] = [
                |u| &mut u.token,
                |u| &mut u.manufacturer,
                |u| &mut u.serial,
                |u| &mut u.model,
                |u| &mut u.library_manufacturer,
                |u| &mut u.library_description,
                |u| &mut u.slot_description,
                |u| &mut u.slot_manufacturer,
                |u| &mut u.object,
                |u| &mut u.pin_source,
                |u| &mut u.module_name,
                |u| &mut u.module_path,
            ];
            for field in fields {
                let mut u = Pkcs11Uri::default();
                *field(&mut u) = Some(v.to_string());
                assert_round_trip(&u);
            }
            let mut u = Pkcs11Uri::default();
            u.vendor.push(("x-k".into(), v.into()));
            assert_round_trip(&u);
        }
    }

    #[test]
    fn every_id_byte_round_trips() {
        let u = Pkcs11Uri {
            id: Some((0..=255).collect()),
            ..Default::default()
        };
        assert_round_trip(&u);
    }

    #[test]
    fn attribute_classification() {
        assert!(parse("pkcs11:token=t").has_token_attributes());
        assert!(parse("pkcs11:serial=s").has_token_attributes());
        assert!(parse("pkcs11:slot-id=1").has_token_attributes());
        assert!(parse("pkcs11:slot-description=d").has_token_attributes());
        assert!(!parse("pkcs11:library-manufacturer=x").has_token_attributes());
        assert!(!parse("pkcs11:object=k").has_token_attributes());
        assert!(parse("pkcs11:object=k").has_object_attributes());
        assert!(parse("pkcs11:id=%01").has_object_attributes());
        assert!(parse("pkcs11:type=cert").has_object_attributes());
        assert!(!parse("pkcs11:token=t;x-o=1").has_object_attributes());
    }

    #[test]
    fn for_token_names_the_token_only() {
        let u = Pkcs11Uri::for_token("prod keys", "SoftHSM project", "SoftHSM v2", "9a2e");
        assert_eq!(u.token.as_deref(), Some("prod keys"));
        assert_eq!(u.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(u.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(u.serial.as_deref(), Some("9a2e"));
        assert!(u.has_token_attributes());
        assert!(!u.has_object_attributes());
        assert_eq!(
            u.to_string(),
            "pkcs11:token=prod%20keys;manufacturer=SoftHSM%20project;serial=9a2e;model=SoftHSM%20v2"
        );
        // Building a key URI from it: the point of for_token.
        let key = Pkcs11Uri {
            object: Some("kek".into()),
            object_type: Some(ObjectType::SecretKey),
            ..u.clone()
        };
        assert_eq!(
            key.to_string(),
            "pkcs11:token=prod%20keys;manufacturer=SoftHSM%20project;serial=9a2e;\
             model=SoftHSM%20v2;object=kek;type=secret-key"
        );
        // An empty serial would print "serial=", which does not parse back.
        let no_serial = Pkcs11Uri::for_token("t", "m", "", "");
        assert_eq!(no_serial.serial, None);
        assert_eq!(no_serial.model, None);
        assert_round_trip(&no_serial);
    }

    #[test]
    fn from_str_matches_parse() {
        let u: Pkcs11Uri = "pkcs11:object=k;type=secret-key".parse().unwrap();
        assert_eq!(u.object.as_deref(), Some("k"));
        assert_eq!(u.object_type, Some(ObjectType::SecretKey));
        assert_eq!(
            "nope".parse::<Pkcs11Uri>().unwrap_err(),
            UriError::MissingScheme
        );
    }

    #[test]
    fn error_messages_are_sentences_naming_the_attribute() {
        let cases = [
            (UriError::MissingScheme, "pkcs11:"),
            (
                UriError::BadPercentEncoding {
                    attribute: "object".into(),
                },
                "\"object\"",
            ),
            (
                UriError::UnknownPathAttribute {
                    attribute: "foo".into(),
                },
                "\"foo\"",
            ),
            (
                UriError::UnknownQueryAttribute {
                    attribute: "bar".into(),
                },
                "\"bar\"",
            ),
            (
                UriError::DuplicateAttribute {
                    attribute: "id".into(),
                },
                "\"id\"",
            ),
            (
                UriError::EmptyAttribute {
                    attribute: "object".into(),
                },
                "\"object\"",
            ),
            (
                UriError::EmptyAttribute {
                    attribute: String::new(),
                },
                "stray",
            ),
            (
                UriError::BadValue {
                    attribute: "slot-id".into(),
                    reason: "because".into(),
                },
                "because",
            ),
        ];
        for (e, needle) in cases {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(msg.ends_with('.'), "{msg:?} is not a sentence");
            assert!(
                msg.starts_with(|c: char| c.is_uppercase() || c == '"'),
                "{msg:?}"
            );
        }
    }
}
