//! The executors against the real thing: child processes of this test, and containers on
//! the real Docker engine from an image the tests build (`FROM scratch` with the host's
//! static busybox, so no registry is needed); container jobs through a live cluster; mDNS
//! discovery between `shoald` containers on a Docker network the test creates; the
//! `shoald` binary stopping within 5 s of SIGTERM, and its first start keeping its data
//! dir and first admin key private; images pulled from a registry on loopback by their
//! pull policy (`registry.rs`, Debian's `docker-registry`); the example systemd unit as
//! `systemd-analyze verify` reads it, and the man pages and completions a package ships
//! (`packaging.rs`); the .deb installed, run, upgraded and purged in a Debian root
//! (`deb.rs`); and a bounded chaos run of five `shoald` containers under faults (`chaos/`).
//!
//! The container tests need a Docker engine and `/bin/busybox` from Debian's
//! `busybox-static` (the pull test also `/usr/bin/docker-registry` from `docker-registry`);
//! without them they fail, saying so. Every container and the image
//! are removed by guards, also when a test fails.

mod adoption;
mod authz;
mod chaos;
mod cluster;
mod container;
mod deb;
mod first_start;
mod mdns;
mod packaging;
mod process;
mod registry;
mod sessions;
mod shutdown;
mod support;
