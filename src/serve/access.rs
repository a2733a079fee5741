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
/// one. When the map is full, sources whose minute is over and sources
/// below the limit are dropped (at most once a second, so a full map does
/// not cost a sweep per request): the entries kept are the throttled ones.
/// A source that still finds no room is counted by its network (an IPv4
/// /24, an IPv6 /48) in a second map, bounded and swept the same way; one
/// whose network finds no room either is counted in `overflow`, one window
/// shared by all of them.
///
/// A full map never unthrottles a source (only finished or unthrottled
/// windows are dropped), and it never locks out a client that did not
/// fail: a network's window throttles that network's requests, and the
/// shared window refuses only requests whose credentials are wrong, never
/// a valid key or signature.
struct Failures {
    by_source: HashMap<SourceBucket, Window>,
    by_network: HashMap<Network, Window>,
    overflow: Window,
    cap: usize,
    per_minute: u32,
    last_sweep: Option<Instant>,
}

/// Where a source without its own window is counted: its IPv4 /24 or its
/// IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Network {
    V4([u8; 3]),
    V6(u64),
}

impl Network {
    fn of(bucket: SourceBucket) -> Network {
        match bucket {
            SourceBucket::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            SourceBucket::V6Prefix(prefix) => Network::V6(prefix >> 16),
        }
    }
}

/// Which window a source is counted in.
enum Counted<'a> {
    Own(&'a Window),
    Network(&'a Window),
    Shared(&'a Window),
    /// None yet: room for its own.
    Nowhere,
}

impl Failures {
    /// The window `bucket` is counted in now.
    fn window(&self, bucket: SourceBucket) -> Counted<'_> {
        if let Some(w) = self.by_source.get(&bucket) {
            return Counted::Own(w);
        }
        if self.by_source.len() < self.cap {
            return Counted::Nowhere;
        }
        match self.by_network.get(&Network::of(bucket)) {
            Some(w) => Counted::Network(w),
            None if self.by_network.len() < self.cap => Counted::Nowhere,
            None => Counted::Shared(&self.overflow),
        }
    }

    /// Drop the windows that are over or below the limit, at most once
    /// per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        let swept_lately = self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY);
        if swept_lately {
            return;
        }
        let limit = self.per_minute;
        let keep = |w: &Window| !w.expired(now) && w.failures >= limit;
        self.by_source.retain(|_, w| keep(w));
        self.by_network.retain(|_, w| keep(w));
        self.last_sweep = Some(now);
        if self.by_source.len() >= self.cap {
            tracing::warn!(
                "{} sources are throttled: new failing sources are counted by their network",
                self.cap
            );
        }
    }

    fn window_mut(&mut self, bucket: SourceBucket, now: Instant) -> &mut Window {
        if !self.by_source.contains_key(&bucket) && self.by_source.len() >= self.cap {
            self.sweep(now);
        }
        if self.by_source.contains_key(&bucket) || self.by_source.len() < self.cap {
            return self
                .by_source
                .entry(bucket)
                .or_insert_with(|| Window::fresh(now));
        }
        let net = Network::of(bucket);
        if self.by_network.contains_key(&net) || self.by_network.len() < self.cap {
            return self
                .by_network
                .entry(net)
                .or_insert_with(|| Window::fresh(now));
        }
        &mut self.overflow
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
                by_network: HashMap::new(),
                overflow: Window::fresh(Instant::now()),
                cap: cap.max(1),
                per_minute,
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
    /// `valid`: the request's credentials name a client. A source counted
    /// in its own window or its network's is refused either way; one
    /// counted in the shared window (every map full) only when its
    /// credentials are wrong, so that no client that authenticates is
    /// ever locked out by others' failures.
    pub fn check_throttle(&self, source: IpAddr, valid: bool) -> Result<(), ServeError> {
        self.check_throttle_at(source, valid, Instant::now())
    }

    fn check_throttle_at(
        &self,
        source: IpAddr,
        valid: bool,
        now: Instant,
    ) -> Result<(), ServeError> {
        let bucket = SourceBucket::of(source);
        // A poisoned map is still a map: a panic elsewhere must not lift
        // the limit.
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let w = match map.window(bucket) {
            Counted::Own(w) | Counted::Network(w) => w,
            Counted::Shared(w) if !valid => w,
            Counted::Shared(_) | Counted::Nowhere => return Ok(()),
        };
        if w.expired(now) || w.failures < self.per_minute {
            return Ok(());
        }
        Err(ServeError::Throttled {
            source_addr: bucket.to_string(),
            retry_after: WINDOW
                .saturating_sub(now.saturating_duration_since(w.started))
                .as_secs()
                .max(1),
        })
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

    /// The whole check for a route: a known key, not throttled, the
    /// capability. A missing or unknown key counts against `source`. The
    /// key is looked at first (in constant time) so that the throttle can
    /// tell a client from a guess.
    pub fn authorize(
        &self,
        source: IpAddr,
        headers: &HeaderMap,
        header: KeyHeader,
        capability: Capability,
    ) -> Result<Arc<Client>, ServeError> {
        let found = self.find(headers, header);
        self.check_throttle(source, found.is_ok())?;
        self.admit(source, found, capability)
    }

    /// The client whose API key `header` carries, or why there is none.
    pub fn find(
        &self,
        headers: &HeaderMap,
        header: KeyHeader,
    ) -> Result<Arc<Client>, &'static str> {
        match header.find(headers) {
            None => Err("no API key was sent"),
            Some(key) => self.by_api_key(key).ok_or("the API key is not known"),
        }
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
