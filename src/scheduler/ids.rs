//! Deterministic `external_task_id`s: the idempotency key of every create.
//!
//! The id is a pure function of (batch id, item id, attempt), so a create
//! whose answer was lost can be found again by asking for that id, and a
//! restarted run asks for exactly the id the crashed one used. Item ids that
//! are long or use characters a gateway might mangle are replaced by a hash.

use sha2::{Digest, Sha256};

/// `vb-<batch>-<item>-<attempt>`, at most ~60 ASCII characters from `[A-Za-z0-9_.-]`.
pub fn external_task_id(batch_id: &str, item_id: &str, attempt: u32) -> String {
    let plain = !item_id.is_empty()
        && item_id.len() <= 32
        && item_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    let key = if plain {
        item_id.to_string()
    } else {
        let digest = Sha256::digest(item_id.as_bytes());
        format!("h{}", &hex::encode(digest)[..20])
    };
    format!("vb-{batch_id}-{key}-{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_id_and_attempts_differ() {
        assert_eq!(external_task_id("b1", "cat", 1), "vb-b1-cat-1");
        assert_eq!(
            external_task_id("b1", "cat", 1),
            external_task_id("b1", "cat", 1)
        );
        assert_ne!(
            external_task_id("b1", "cat", 1),
            external_task_id("b1", "cat", 2)
        );
        assert_ne!(
            external_task_id("b1", "cat", 1),
            external_task_id("b2", "cat", 1)
        );
    }

    #[test]
    fn unusual_ids_are_hashed_to_safe_ascii() {
        let id = external_task_id("b1", "猫 🐱 / long", 1);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{id}"
        );
        assert_ne!(id, external_task_id("b1", "猫 🐱 / lonG", 1));
        assert!(external_task_id("abcdef123456", &"x".repeat(500), 99).len() <= 64);
    }
}
