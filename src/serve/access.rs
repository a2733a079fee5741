//! Who may call what (docs/SERVER.md, "Access"): the clients of the
//! configuration found by their API key, compared in constant time as
//! SHA-256 digests; the capabilities each route needs; and the limit on
//! failed authentications per source address.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::ClientConfig;
use crate::error::ServeError;

/// What a client may do. The names are the configuration's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Piiano's GET export_key.
    ExportKeyReader,
    /// Backups of keys (StoredSafe backup, Huawei CSMS backup).
    KeyBackup,
    /// Restores of backups (StoredSafe restore, Huawei CSMS restore).
    KeyRestore,
    /// Receiving key material (Huawei KMS import).
    Import,
    /// hsmkey's own key metadata.
    KeyReader,
    /// hsmkey's own key creation and rotation.
    KeyAdmin,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::ExportKeyReader,
        Capability::KeyBackup,
        Capability::KeyRestore,
        Capability::Import,
        Capability::KeyReader,
        Capability::KeyAdmin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::ExportKeyReader => "CapExportKeyReader",
            Capability::KeyBackup => "CapKeyBackup",
            Capability::KeyRestore => "CapKeyRestore",
            Capability::Import => "CapImport",
            Capability::KeyReader => "CapKeyReader",
            Capability::KeyAdmin => "CapKeyAdmin",
        }
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Capability, String> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
                format!("'{s}' is not a capability ({})", names.join(", "))
            })
    }
}

/// Where a route family's clients put their API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>` (Piiano, hsmkey's own routes).
    Bearer,
    /// `Authorization: <scheme> <key>` (Hitachi's `Session`).
    Scheme(&'static str),
    /// The whole value of a header of its own (`X-Http-Token`, `X-Auth-Token`).
    Header(&'static str),
}

impl KeyHeader {
    /// The API key the request carries, if any.
    pub fn find(self, headers: &HeaderMap) -> Option<&str> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match self {
            KeyHeader::Bearer => KeyHeader::Scheme("Bearer").find(headers),
            KeyHeader::Scheme(scheme) => {
                let v = value("authorization")?.trim();
                let (given, key) = v.split_once(' ')?;
                given
                    .eq_ignore_ascii_case(scheme)
                    .then(|| key.trim())
                    .filter(|k| !k.is_empty())
            }
            KeyHeader::Header(name) => value(name).map(str::trim).filter(|k| !k.is_empty()),
        }
    }
}

/// A client of the configuration, as the routes see it.
#[derive(Debug)]
pub struct Client {
    pub name: String,
    api_key_sha256: [u8; 32],
    pub access_key: Option<String>,
    /// The SK of Huawei AK/SK signing.
    pub secret_key: Option<SecretString>,
    pub capabilities: BTreeSet<Capability>,
}

impl Client {
    pub fn may(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// The clients, and the failed authentications per source address.
pub struct Access {
    clients: Vec<Arc<Client>>,
    failures: Mutex<HashMap<IpAddr, Window>>,
    per_minute: u32,
}

/// Failed authentications of one address in the current minute.
struct Window {
    started: Instant,
    failures: u32,
}

const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered at most; older windows are dropped past it.
const MAX_TRACKED: usize = 100_000;

impl Access {
    pub fn new(clients: &[ClientConfig], per_minute: u32) -> Access {
        Access {
            clients: clients
                .iter()
                .map(|c| {
                    Arc::new(Client {
                        name: c.name.clone(),
                        api_key_sha256: c.api_key_sha256,
                        access_key: c.access_key.clone(),
                        secret_key: c.secret_key.clone(),
                        capabilities: c.capabilities.clone(),
                    })
                })
                .collect(),
            failures: Mutex::new(HashMap::new()),
            per_minute,
        }
    }

    /// The client whose API key this is. Every client's digest is compared,
    /// each in constant time, whichever matches: the time taken says
    /// nothing about which key, or how much of it, was right.
    pub fn by_api_key(&self, api_key: &str) -> Option<Arc<Client>> {
        let digest: [u8; 32] = Sha256::digest(api_key.as_bytes()).into();
        let mut found = None;
        for c in &self.clients {
            if bool::from(c.api_key_sha256.ct_eq(&digest)) {
                found = Some(c.clone());
            }
        }
        found
    }

    /// The client with this access key (Huawei AK/SK); its signature is
    /// the route family's to check.
    pub fn by_access_key(&self, access_key: &str) -> Option<Arc<Client>> {
        let mut found = None;
        for c in &self.clients {
            if let Some(ak) = &c.access_key {
                if bool::from(ak.as_bytes().ct_eq(access_key.as_bytes())) {
                    found = Some(c.clone());
                }
            }
        }
        found
    }

    /// Refuse an address that failed too often this minute (HK1111).
    pub fn check_throttle(&self, source: IpAddr) -> Result<(), ServeError> {
        let Ok(map) = self.failures.lock() else {
            return Ok(());
        };
        match map.get(&source) {
            Some(w) if w.started.elapsed() < WINDOW && w.failures >= self.per_minute => {
                Err(ServeError::Throttled {
                    source_addr: source.to_string(),
                    retry_after: WINDOW.saturating_sub(w.started.elapsed()).as_secs().max(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Count a failed authentication from `source`.
    pub fn note_failure(&self, source: IpAddr) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| w.started.elapsed() < WINDOW);
        }
        let w = map.entry(source).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if w.started.elapsed() >= WINDOW {
            *w = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// The whole check for a route: not throttled, a known key, the
    /// capability. Failures of the first two count against `source`.
    pub fn authorize(
        &self,
        source: IpAddr,
        headers: &HeaderMap,
        header: KeyHeader,
        capability: Capability,
    ) -> Result<Arc<Client>, ServeError> {
        self.check_throttle(source)?;
        let found = match header.find(headers) {
            None => Err("no API key was sent"),
            Some(key) => self.by_api_key(key).ok_or("the API key is not known"),
        };
        self.admit(source, found, capability)
    }

    /// The end of every authentication, whatever found the client (an API
    /// key, or a family's own scheme such as AK/SK signing): a miss counts
    /// against `source` (HK1109), a client without `capability` is HK1110.
    pub fn admit(
        &self,
        source: IpAddr,
        found: Result<Arc<Client>, &str>,
        capability: Capability,
    ) -> Result<Arc<Client>, ServeError> {
        match found {
            Err(reason) => {
                self.note_failure(source);
                Err(ServeError::Unauthenticated {
                    reason: reason.to_string(),
                })
            }
            Ok(client) if !client.may(capability) => Err(ServeError::Forbidden {
                client: client.name.clone(),
                capability: capability.name().to_string(),
            }),
            Ok(client) => Ok(client),
        }
    }
}

#[cfg(test)]
mod tests;
