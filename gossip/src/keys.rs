//! The chitchat node-state keys Shoal publishes: the only place a key is named.
//!
//! A node publishes exactly one key, [`ANNOUNCE`], holding its whole sealed
//! [`Announcement`](shoal_protocol::Announcement), so a reader never sees half of an update
//! and one MAC covers everything the node says about itself.

/// The sealed announcement of a node: `<hex mac>.<base64 frame>` (see [`crate::auth`]).
pub const ANNOUNCE: &str = "shoal.announce";

/// Every key this crate publishes, for readers that want to ignore anything else.
pub const ALL: [&str; 1] = [ANNOUNCE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_unique() {
        for (i, key) in ALL.iter().enumerate() {
            assert!(key.starts_with("shoal."), "{key} lacks the shoal. prefix");
            assert!(!ALL[..i].contains(key), "{key} is listed twice");
        }
    }
}
