//! The in-memory data: a sorted map from key to value, both byte strings.
//!
//! Sorted (a `BTreeMap`, which `alloc` has and a hash map would need a dependency for) also
//! makes KEYS replies deterministic. Everything in it is in the log too, so the log device's size
//! bounds the memory it can take.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::log::{set_len, Record};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What a snapshot of the data takes in the log: the sum of [`set_len`] over the keys.
    bytes: u64,
}

impl Store {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    pub fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let key_len = key.len();
        self.bytes += set_len(key_len, value.len()) as u64;
        if let Some(old) = self.map.insert(key, value) {
            self.bytes -= set_len(key_len, old.len()) as u64;
        }
    }

    /// Whether the key existed.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove_entry(key) {
            Some((key, value)) => {
                self.bytes -= set_len(key.len(), value.len()) as u64;
                true
            }
            None => false,
        }
    }

    /// Bytes a snapshot of the data takes in the log.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every key and its value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
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
