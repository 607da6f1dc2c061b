//! Multi-node clusters on 127.0.0.1: formation, agreement, failover, restarts,
//! autopilot, label propagation and the cluster secret.

mod failover;
mod fleet;
mod formation;
mod http;
mod jobs;
mod metrics;
mod operate;
