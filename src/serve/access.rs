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

/// Where failed authentications are counted, and refusals gathered: an
/// IPv4 address, or the /64 an IPv6 address is in (one host or one
/// customer network usually holds a whole /64, so counting single IPv6
/// addresses would give an attacker 2^64 tries). An IPv4-mapped IPv6
/// address counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceBucket {
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of the address.
    V6Prefix(u64),
}

impl SourceBucket {
    pub fn of(ip: IpAddr) -> SourceBucket {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceBucket::V4(v4),
            IpAddr::V6(v6) => SourceBucket::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

impl std::fmt::Display for SourceBucket {
    /// `192.0.2.7`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceBucket::V4(v4) => write!(f, "{v4}"),
            SourceBucket::V6Prefix(prefix) => {
                let net = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

/// The clients, and the failed authentications per source.
pub struct Access {
    clients: Vec<Arc<Client>>,
    failures: Mutex<Failures>,
    per_minute: u32,
}

/// Failed authentications of one source in the current minute.
#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn fresh(now: Instant) -> Window {
        Window {
            started: now,
            failures: 0,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= WINDOW
    }
}

/// The failure counts, bounded: at most `cap` sources are counted one by
/// one. When the map is full, sources whose minute is over are dropped
/// (at most once a second, so a full map does not cost a sweep per
/// request); a source that still finds no room is counted in `overflow`,
/// one window shared by every source without its own. That shared window
/// throttles all of them together once it reaches the limit: a full map
/// refuses new sources rather than forgets a throttled one, so flooding
/// the map never unthrottles an attacker.
struct Failures {
    by_source: HashMap<SourceBucket, Window>,
    overflow: Window,
    cap: usize,
    last_sweep: Option<Instant>,
}

impl Failures {
    /// The window `bucket` is counted in now (its own, or the shared one).
    fn window(&self, bucket: SourceBucket) -> Option<&Window> {
        match self.by_source.get(&bucket) {
            Some(w) => Some(w),
            None if self.by_source.len() >= self.cap => Some(&self.overflow),
            None => None,
        }
    }

    fn window_mut(&mut self, bucket: SourceBucket, now: Instant) -> &mut Window {
        if !self.by_source.contains_key(&bucket) && self.by_source.len() >= self.cap {
            let swept_lately = self
                .last_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY);
            if !swept_lately {
                self.by_source.retain(|_, w| !w.expired(now));
                self.last_sweep = Some(now);
                if self.by_source.len() >= self.cap {
                    tracing::warn!(
                        "failed logins of {} sources are being counted: new sources share one window until theirs end",
                        self.cap
                    );
                }
            }
            if self.by_source.len() >= self.cap {
                return &mut self.overflow;
            }
        }
        self.by_source
            .entry(bucket)
            .or_insert_with(|| Window::fresh(now))
    }
}

const WINDOW: Duration = Duration::from_secs(60);

/// Sources counted one by one at most (about 5 MB).
pub const MAX_TRACKED: usize = 100_000;

/// A full map is swept of finished windows at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Access {
    pub fn new(clients: &[ClientConfig], per_minute: u32) -> Access {
        Access::with_cap(clients, per_minute, MAX_TRACKED)
    }

    /// [`Access::new`] counting at most `cap` sources one by one.
    pub fn with_cap(clients: &[ClientConfig], per_minute: u32, cap: usize) -> Access {
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
            failures: Mutex::new(Failures {
                by_source: HashMap::new(),
                overflow: Window::fresh(Instant::now()),
                cap: cap.max(1),
                last_sweep: None,
            }),
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

    /// Refuse a source that failed too often this minute (HK1111).
    pub fn check_throttle(&self, source: IpAddr) -> Result<(), ServeError> {
        self.check_throttle_at(source, Instant::now())
    }

    fn check_throttle_at(&self, source: IpAddr, now: Instant) -> Result<(), ServeError> {
        let bucket = SourceBucket::of(source);
        // A poisoned map is still a map: a panic elsewhere must not lift
        // the limit.
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.window(bucket) {
            Some(w) if !w.expired(now) && w.failures >= self.per_minute => {
                Err(ServeError::Throttled {
                    source_addr: bucket.to_string(),
                    retry_after: WINDOW
                        .saturating_sub(now.saturating_duration_since(w.started))
                        .as_secs()
                        .max(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Count a failed authentication from `source`.
    pub fn note_failure(&self, source: IpAddr) {
        self.note_failure_at(source, Instant::now())
    }

    fn note_failure_at(&self, source: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let w = map.window_mut(SourceBucket::of(source), now);
        if w.expired(now) {
            *w = Window::fresh(now);
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
