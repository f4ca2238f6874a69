//! ELF loading (placeholder, being written).
