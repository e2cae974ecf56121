//! An in-memory KEK cache in front of any provider, so a disk that reopens does not ask the key server
//! again. KEKs zeroize when evicted, when the cache is cleared and when it is dropped (each `Kek` does so
//! on drop).

use super::material::{Kek, KeyRef};
use super::provider::KeyProvider;
use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A provider that remembers up to `capacity` KEKs, evicting the oldest first.
#[derive(Debug)]
pub struct KeyCache<P> {
    inner: P,
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    keys: HashMap<KeyRef, Kek>,
    order: VecDeque<KeyRef>,
}

impl<P: KeyProvider> KeyCache<P> {
    /// A cache of at most `capacity` KEKs (at least one) in front of `inner`.
    pub fn new(inner: P, capacity: usize) -> KeyCache<P> {
        KeyCache { inner, capacity: capacity.max(1), entries: Mutex::default() }
    }

    /// The provider behind the cache.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// How many KEKs are cached.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a KEK is cached for `key_ref`.
    pub fn contains(&self, key_ref: &KeyRef) -> bool {
        self.lock().keys.contains_key(key_ref)
    }

    /// Forgets (and zeroizes) one KEK.
    pub fn evict(&self, key_ref: &KeyRef) {
        let mut entries = self.lock();
        entries.keys.remove(key_ref);
        entries.order.retain(|r| r != key_ref);
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
        if let Some(kek) = self.lock().keys.get(key_ref) {
            return Ok(kek.clone());
        }
        // Not under the lock: a key server may take a while, and other keys stay available meanwhile.
        let kek = self.inner.get_kek(key_ref)?;
        let mut entries = self.lock();
        if !entries.keys.contains_key(key_ref) {
            while entries.keys.len() >= self.capacity {
                let Some(oldest) = entries.order.pop_front() else { break };
                entries.keys.remove(&oldest);
            }
            entries.order.push_back(key_ref.clone());
            entries.keys.insert(key_ref.clone(), kek.clone());
        }
        Ok(kek)
    }
}
