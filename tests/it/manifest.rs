//! Integration tests: manifest.
