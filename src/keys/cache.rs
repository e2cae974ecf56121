//! An in-memory KEK cache in front of any provider, so a disk that reopens does not ask the key server
//! again. Entries live at most the cache's lifetime: after it the provider is asked again, so a key the
//! server has since revoked stops working within that time, and a provider's refusal (revoked,
//! destroyed, not found) evicts the key at once. KEKs zeroize when evicted, when the cache is cleared
//! and when it is dropped (each `Kek` does so on drop).

use super::material::{Kek, KeyRef};
use super::provider::KeyProvider;
use crate::error::{Error, ProviderFault, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A provider that remembers up to `capacity` KEKs for at most `lifetime`, evicting the oldest first.
#[derive(Debug)]
pub struct KeyCache<P> {
    inner: P,
    capacity: usize,
    lifetime: Duration,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    keys: HashMap<KeyRef, (Kek, Instant)>,
    order: VecDeque<KeyRef>,
}

impl Entries {
    fn remove(&mut self, key_ref: &KeyRef) {
        self.keys.remove(key_ref);
        self.order.retain(|r| r != key_ref);
    }
}

impl<P: KeyProvider> KeyCache<P> {
    /// A cache of at most `capacity` KEKs (at least one) in front of `inner`, kept until evicted.
    pub fn new(inner: P, capacity: usize) -> KeyCache<P> {
        KeyCache::with_lifetime(inner, capacity, Duration::MAX)
    }

    /// A cache of at most `capacity` KEKs (at least one), each kept at most `lifetime`.
    pub fn with_lifetime(inner: P, capacity: usize, lifetime: Duration) -> KeyCache<P> {
        KeyCache { inner, capacity: capacity.max(1), lifetime, entries: Mutex::default() }
    }

    /// The provider behind the cache.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// How many KEKs are cached (expired ones included until they are next asked for).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a KEK is cached for `key_ref` and still within its lifetime.
    pub fn contains(&self, key_ref: &KeyRef) -> bool {
        self.lock().keys.get(key_ref).is_some_and(|(_, at)| at.elapsed() < self.lifetime)
    }

    /// Forgets (and zeroizes) one KEK.
    pub fn evict(&self, key_ref: &KeyRef) {
        self.lock().remove(key_ref);
    }

    /// Forgets (and zeroizes) every KEK.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.keys.clear();
        entries.order.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that matters here.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: KeyProvider> KeyProvider for KeyCache<P> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn create_kek(&self, key_id: Option<&str>) -> Result<KeyRef> {
        self.inner.create_kek(key_id)
    }

    fn get_kek(&self, key_ref: &KeyRef) -> Result<Kek> {
        {
            let mut entries = self.lock();
            match entries.keys.get(key_ref) {
                Some((kek, at)) if at.elapsed() < self.lifetime => return Ok(kek.clone()),
                Some(_) => entries.remove(key_ref),
                None => {}
            }
        }
        // Not under the lock: a key server may take a while, and other keys stay available meanwhile.
        let kek = match self.inner.get_kek(key_ref) {
            Ok(kek) => kek,
            Err(err) => {
                if matches!(
                    err,
                    Error::KeyProvider { fault: ProviderFault::Revoked | ProviderFault::NotFound, .. }
                ) {
                    self.evict(key_ref);
                }
                return Err(err);
            }
        };
        let mut entries = self.lock();
        if !entries.keys.contains_key(key_ref) {
            while entries.keys.len() >= self.capacity {
                let Some(oldest) = entries.order.pop_front() else { break };
                entries.keys.remove(&oldest);
            }
            entries.order.push_back(key_ref.clone());
            entries.keys.insert(key_ref.clone(), (kek.clone(), Instant::now()));
        }
        Ok(kek)
    }

    fn take_notices(&self) -> Vec<String> {
        self.inner.take_notices()
    }
}
