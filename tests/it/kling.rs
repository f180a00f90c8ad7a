//! Integration tests: kling.
