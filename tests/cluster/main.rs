//! Multi-node clusters on 127.0.0.1: formation, agreement, failover, restarts,
//! autopilot, label propagation, resource history, the cluster secret, mixed-version
//! fleets, sealed gossip, backups, and the write path under lost answers and unanswered proposals.

mod access;
mod bodies;
mod catchup;
mod costs;
mod dashboard;
mod events;
mod failover;
mod fixture;
mod fleet;
mod formation;
mod gossip;
mod gpus;
mod history;
mod http;
mod inputs;
mod isolation;
mod jobs;
mod join;
mod keyring;
mod membership;
mod metrics;
mod openapi;
mod operate;
mod partitions;
mod peers;
mod placement;
mod secrets;
mod snapshots;
mod tls;
mod versions;
mod writes;
