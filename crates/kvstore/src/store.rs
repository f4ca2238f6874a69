//! The in-memory data: a sorted map from key to value, both byte strings.
//!
//! Sorted (a `BTreeMap`, which `alloc` has and a hash map would need a dependency for) also
//! makes KEYS replies deterministic. Everything in it is in the log too, so the log device's size
//! bounds the memory it can take.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::log::Record;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    pub fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }

    /// Whether the key existed.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All keys, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.map.keys().map(Vec::as_slice)
    }

    /// Applies a logged write (recovery).
    pub fn apply(&mut self, record: &Record<'_>) {
        match record {
            Record::Set { key, value } => self.set(key.to_vec(), value.to_vec()),
            Record::Del { keys } => {
                for key in keys {
                    self.remove(key);
                }
            }
        }
    }
}
