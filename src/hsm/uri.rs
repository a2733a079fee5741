//! RFC 7512 `pkcs11:` URIs: parsing and canonical formatting.
//!
//! The parser is strict about structure (unknown attributes, duplicates, empty
//! values and broken percent-encoding are errors) so that a typo in a key or
//! token selector fails loudly instead of silently matching more objects than
//! intended. `object=` and `id=` may be empty (RFC 7512 allows it): they
//! name an object with no label or no CKA_ID, which hsmkey prints that way. It is lenient about which characters appear unencoded in values,
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
            "object" => assign_maybe_empty(&mut self.object, name, value, decode_text),
            "id" => assign_maybe_empty(&mut self.id, name, value, decode_bytes),
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
/// A component without '=' is refused as having no value (so `object`
/// alone is not taken for `object=`), unless the name is unknown, which the
/// caller then says.
fn split_component(component: &str) -> Result<(&str, &str), UriError> {
    let (name, value) = match component.split_once('=') {
        Some(parts) => parts,
        None if ["object", "id"].contains(&component) => {
            return Err(UriError::EmptyAttribute {
                attribute: component.to_string(),
            })
        }
        None => (component, ""),
    };
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

/// Like [`assign`], for the attributes whose empty value means "an empty
/// label" or "an empty CKA_ID" (`object=`, `id=`).
fn assign_maybe_empty<T>(
    slot: &mut Option<T>,
    name: &str,
    value: &str,
    convert: fn(&str, &str) -> Result<T, UriError>,
) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::DuplicateAttribute {
            attribute: name.to_string(),
        });
    }
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
mod tests;
