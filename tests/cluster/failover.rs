//! Losing nodes: leader failover, status transitions, restarts.
