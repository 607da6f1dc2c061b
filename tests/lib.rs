//! Cross-crate test helpers live in the daemon's testsuite feature.
