//! Manifest parsing (placeholder, being written).
