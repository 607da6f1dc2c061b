//! `shoald`, the Shoal fleet daemon: configuration, peer RPC, the leader's reconcile
//! loop and autopilot, resource sampling and the admin API.
//!
//! Start with [`node`]: it wires every other module together.

pub mod admission;
pub mod api;
pub mod attach;
pub mod autopilot;
pub mod backups;
pub mod batch;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dev;
pub mod diagnose;
pub mod dispatch;
pub mod exec;
#[cfg(feature = "testsuite")]
pub mod faults;
pub mod gossip_keys;
pub mod gossip_mode;
pub mod gpus;
pub mod history;
pub mod identity;
pub mod image_facts;
pub mod isolate;
pub mod join;
pub mod keys;
pub mod leadership;
pub mod levels;
pub mod logging;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod p2p;
pub mod peer_auth;
pub mod proposer;
pub mod raft_network;
pub mod reconcile;
pub mod restore;
pub mod rpc;
pub mod runner;
pub mod sampler;
pub mod secrets;
pub mod seed_watch;
pub mod sessions;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod tls;
pub mod writes;

pub use config::{Config, Settings, Timings};
/// The allocator `shoald` runs on, and the benchmarks with it: a busy node allocates and
/// frees small objects on many threads (commands, log frames, events), where glibc's
/// malloc spent 40% of the CPU of `bench_jobs` figure 1. Declare it in a binary with
/// `#[global_allocator] static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;`.
pub use mimalloc::MiMalloc as Allocator;
pub use node::{Listeners, Node, RunningNode};
