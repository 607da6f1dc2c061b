//! Machine status derivation: a pure function of the previous status, what gossip observed
//! and the configured timings. The Raft leader calls it and commits the transitions.
//!
//! ```text
//!  reachable (live and heartbeat younger than offline_after)
//!      draining ............................... DRAINING
//!      at max_running, or load >= threshold ... BUSY
//!      otherwise .............................. ONLINE
//!  unreachable, by heartbeat age
//!      < stale_after .......................... OFFLINE
//!      < dead_after ........................... STALE
//!      otherwise .............................. DEAD
//!  ...but never better than the previous unreachable status (STALE stays >= STALE,
//!  DEAD stays DEAD) until the machine is reachable again.
//! ```

use std::time::Duration;

use shoal_protocol::MachineStatus;

/// The timings and threshold status derivation uses.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    /// A machine whose last fresh heartbeat is at least this old is unreachable even if
    /// chitchat still reports it live.
    pub offline_after: Duration,
    /// Unreachable for this long: STALE.
    pub stale_after: Duration,
    /// Unreachable for this long: DEAD.
    pub dead_after: Duration,
    /// Load (per core) at or above which a reachable machine is BUSY.
    pub load_threshold: f32,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            offline_after: Duration::from_secs(3),
            stale_after: Duration::from_secs(5 * 60),
            dead_after: Duration::from_secs(15 * 60),
            load_threshold: 0.8,
        }
    }
}

/// What the gossip view says about one machine at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Chitchat's failure detector says the node is up and its state is verified.
    pub live: bool,
    /// Time since this node first saw the machine's newest announcement.
    pub heartbeat_age: Duration,
    pub load: f32,
    pub running: u32,
    pub max_running: u32,
    pub draining: bool,
}

impl Observation {
    /// A machine the gossip view does not hold at all, last heard from `heartbeat_age` ago.
    pub fn absent(heartbeat_age: Duration) -> Self {
        Observation {
            live: false,
            heartbeat_age,
            load: 0.0,
            running: 0,
            max_running: 0,
            draining: false,
        }
    }
}

/// Derives a machine's status. Pure: no clock, no I/O.
pub fn derive_status(
    previous: MachineStatus,
    obs: &Observation,
    cfg: &StatusConfig,
) -> MachineStatus {
    let reachable = obs.live && obs.heartbeat_age < cfg.offline_after;
    if reachable {
        let at_limit = obs.max_running > 0 && obs.running >= obs.max_running;
        // A load that is not a number counts as over the threshold.
        let overloaded = obs.load >= cfg.load_threshold || obs.load.is_nan();
        return if obs.draining {
            MachineStatus::Draining
        } else if at_limit || overloaded {
            MachineStatus::Busy
        } else {
            MachineStatus::Online
        };
    }
    let by_age = if obs.heartbeat_age >= cfg.dead_after {
        MachineStatus::Dead
    } else if obs.heartbeat_age >= cfg.stale_after {
        MachineStatus::Stale
    } else {
        MachineStatus::Offline
    };
    if severity(previous) > severity(by_age) {
        previous
    } else {
        by_age
    }
}

/// How far gone an unreachable status is; reachable ones rank lowest.
fn severity(status: MachineStatus) -> u8 {
    match status {
        MachineStatus::Dead => 3,
        MachineStatus::Stale => 2,
        MachineStatus::Offline => 1,
        MachineStatus::Registering
        | MachineStatus::Online
        | MachineStatus::Busy
        | MachineStatus::Draining => 0,
    }
}

#[cfg(test)]
mod tests {
    use MachineStatus::*;
    use proptest::prelude::*;

    use super::*;

    const S: u64 = 1;
    const M: u64 = 60;

    fn obs(live: bool, age_secs: u64) -> Observation {
        Observation {
            live,
            heartbeat_age: Duration::from_secs(age_secs),
            load: 0.1,
            running: 0,
            max_running: 4,
            draining: false,
        }
    }

    #[test]
    fn reachable_machines_are_online_busy_or_draining() {
        let cfg = StatusConfig::default();
        let busy_by_count = Observation {
            running: 4,
            ..obs(true, 0)
        };
        let busy_by_load = Observation {
            load: 0.8,
            ..obs(true, 0)
        };
        let nan_load = Observation {
            load: f32::NAN,
            ..obs(true, 0)
        };
        let unlimited = Observation {
            running: 50,
            max_running: 0,
            ..obs(true, 0)
        };
        let draining_and_busy = Observation {
            draining: true,
            running: 9,
            ..obs(true, 0)
        };
        let cases = [
            ("fresh heartbeat", obs(true, 0), Online),
            ("at work limit", busy_by_count, Busy),
            ("at load threshold", busy_by_load, Busy),
            ("unknown load", nan_load, Busy),
            ("no work limit", unlimited, Online),
            ("drain beats busy", draining_and_busy, Draining),
        ];
        for previous in MachineStatus::ALL {
            for (name, o, want) in &cases {
                assert_eq!(
                    derive_status(previous, o, &cfg),
                    *want,
                    "{name} from {previous}"
                );
            }
        }
    }

    #[test]
    fn unreachable_machines_decay_by_heartbeat_age() {
        let cfg = StatusConfig::default();
        let cases = [
            // (previous, live, age seconds, expected)
            (Online, false, 0, Offline),
            (Online, true, 3 * S, Offline),
            (Busy, false, 2 * S, Offline),
            (Draining, false, 2 * S, Offline),
            (Registering, false, 0, Offline),
            (Registering, false, 20 * M, Dead),
            (Online, false, 5 * M - 1, Offline),
            (Offline, false, 5 * M, Stale),
            (Online, false, 5 * M, Stale),
            (Stale, false, 15 * M - 1, Stale),
            (Stale, false, 15 * M, Dead),
            (Offline, true, 15 * M, Dead),
            (Dead, false, 20 * M, Dead),
        ];
        for (previous, live, age, want) in cases {
            let got = derive_status(previous, &obs(live, age), &cfg);
            assert_eq!(got, want, "{previous} live={live} age={age}s");
        }
    }

    #[test]
    fn unreachable_status_never_improves() {
        // A new leader whose view is young sees small ages; it must not revive machines.
        let cfg = StatusConfig::default();
        let young = obs(false, 1);
        assert_eq!(derive_status(Stale, &young, &cfg), Stale);
        assert_eq!(derive_status(Dead, &young, &cfg), Dead);
        assert_eq!(derive_status(Dead, &obs(false, 6 * M), &cfg), Dead);
        assert_eq!(derive_status(Offline, &young, &cfg), Offline);
    }

    #[test]
    fn resumed_heartbeats_bring_a_machine_back() {
        let cfg = StatusConfig::default();
        for previous in [Offline, Stale, Dead] {
            assert_eq!(derive_status(previous, &obs(true, 0), &cfg), Online);
        }
    }

    #[test]
    fn boundaries_follow_the_config() {
        let cfg = StatusConfig {
            offline_after: Duration::from_millis(300),
            stale_after: Duration::from_secs(2),
            dead_after: Duration::from_secs(4),
            load_threshold: 0.5,
        };
        let at = |ms: u64| Observation {
            heartbeat_age: Duration::from_millis(ms),
            ..obs(true, 0)
        };
        assert_eq!(derive_status(Online, &at(299), &cfg), Online);
        assert_eq!(derive_status(Online, &at(300), &cfg), Offline);
        assert_eq!(derive_status(Offline, &at(2_000), &cfg), Stale);
        assert_eq!(derive_status(Stale, &at(4_000), &cfg), Dead);
        let loaded = Observation { load: 0.5, ..at(0) };
        assert_eq!(derive_status(Online, &loaded, &cfg), Busy);
    }

    #[test]
    fn absent_machines_are_unreachable() {
        let cfg = StatusConfig::default();
        let got = derive_status(Online, &Observation::absent(Duration::ZERO), &cfg);
        assert_eq!(got, Offline);
    }

    fn any_status() -> impl Strategy<Value = MachineStatus> {
        prop::sample::select(MachineStatus::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn never_reachable_when_not_live(
            previous in any_status(),
            age_ms in 0u64..2_000_000,
            load in prop::num::f32::ANY,
            running: u32,
            max_running: u32,
            draining: bool,
        ) {
            let o = Observation {
                live: false,
                heartbeat_age: Duration::from_millis(age_ms),
                load,
                running,
                max_running,
                draining,
            };
            let got = derive_status(previous, &o, &StatusConfig::default());
            prop_assert!(!got.is_reachable(), "{} from {}", got, previous);
            prop_assert!(matches!(got, Offline | Stale | Dead));
            prop_assert!(severity(got) >= severity(previous));
        }
    }
}
