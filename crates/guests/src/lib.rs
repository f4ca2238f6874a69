//! Guest images (placeholder, being written).
