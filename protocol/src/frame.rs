//! Versioned binary frames: one version byte, then bincode (standard config).
//!
//! Every message on peer RPC and every record on disk goes through here, so a future
//! format change is a new version byte, never a guess.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The frame format this build writes and reads.
pub const FRAME_VERSION: u8 = 1;

/// Largest frame decoded, so garbage cannot ask for a huge allocation.
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// A frame that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("frame version {0} is not supported (this build speaks version {FRAME_VERSION})")]
    Version(u8),
    #[error("frame has {0} bytes left over after decoding")]
    Trailing(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unencodable value: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes `value` behind the version byte.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![FRAME_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())?;
    Ok(out)
}

/// Decodes a whole frame; a wrong version, garbage or trailing bytes are errors.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let (&version, body) = frame.split_first().ok_or(FrameError::Empty)?;
    if version != FRAME_VERSION {
        return Err(FrameError::Version(version));
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config())?;
    if read != body.len() {
        return Err(FrameError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        Announcement, Command, FleetState, Labels, MachineId, MachineInfo, MachineRecord,
        MachineStatus, MemberAddr, Resources, Response,
    };

    fn labels() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-z][a-z0-9._/-]{0,10}", "[!-~]{0,12}", 0..5)
            .prop_map(|map: BTreeMap<String, String>| Labels::try_from(map).unwrap())
    }

    fn info() -> impl Strategy<Value = MachineInfo> {
        (
            any::<u64>(),
            "\\PC{0,12}",
            labels(),
            any::<(u32, u64, u64, u32, bool)>(),
            (0f32..1.0, 0f32..4.0),
        )
            .prop_map(
                |(id, name, labels, (cores, mem, disk, running, draining), (cpu, load))| {
                    MachineInfo {
                        id: MachineId(id),
                        name: name.clone(),
                        hostname: name,
                        os: "linux".into(),
                        arch: "x86_64".into(),
                        version: "0.1.0".into(),
                        addr: MemberAddr {
                            peer_id: "12D3".into(),
                            p2p_addr: "127.0.0.1:7402".into(),
                            api_addr: "127.0.0.1:7400".into(),
                            gossip_addr: "127.0.0.1:7401".into(),
                        },
                        labels,
                        resources: Resources {
                            cpu_cores: cores,
                            cpu_usage: cpu,
                            load,
                            memory_total_bytes: mem,
                            memory_used_bytes: mem / 2,
                            disk_total_bytes: disk,
                            disk_free_bytes: disk / 3,
                        },
                        running,
                        max_running: running.saturating_add(1),
                        draining,
                        started_at_ms: 1,
                    }
                },
            )
    }

    fn status() -> impl Strategy<Value = MachineStatus> {
        prop::sample::select(MachineStatus::ALL.to_vec())
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (info(), any::<u64>()).prop_map(|(info, at_ms)| Command::UpsertMachine {
                info: Box::new(info),
                at_ms
            }),
            (any::<u64>(), status(), any::<u64>(), any::<u64>()).prop_map(
                |(id, status, last_heartbeat_ms, at_ms)| Command::SetStatus {
                    id: MachineId(id),
                    status,
                    last_heartbeat_ms,
                    at_ms,
                }
            ),
            (
                any::<u64>(),
                labels(),
                prop::collection::vec("[a-z]{1,5}", 0..3)
            )
                .prop_map(|(id, set, remove)| Command::LabelMachine {
                    id: MachineId(id),
                    set,
                    remove,
                }),
            any::<u64>().prop_map(|id| Command::RemoveMachine { id: MachineId(id) }),
        ]
    }

    proptest! {
        #[test]
        fn commands_round_trip(cmd in command()) {
            let frame = encode(&cmd).unwrap();
            prop_assert_eq!(decode::<Command>(&frame).unwrap(), cmd);
        }

        #[test]
        fn states_round_trip(infos in prop::collection::vec((info(), status()), 0..6)) {
            let mut state = FleetState::default();
            for (info, status) in infos {
                state.machines.insert(info.id, MachineRecord {
                    operator_labels: info.labels.clone(),
                    info,
                    status,
                    status_since_ms: 3,
                    last_heartbeat_ms: 4,
                    registered_at_ms: 5,
                });
            }
            let frame = encode(&state).unwrap();
            prop_assert_eq!(decode::<FleetState>(&frame).unwrap(), state);
        }

        #[test]
        fn announcements_round_trip(info in info(), seq: u64, sent_at_ms: u64) {
            let ann = Announcement { info, seq, sent_at_ms };
            let frame = encode(&ann).unwrap();
            prop_assert_eq!(decode::<Announcement>(&frame).unwrap(), ann);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Command>(&bytes);
            let _ = decode::<FleetState>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = decode::<Announcement>(&bytes);
        }

        #[test]
        fn truncated_frames_are_errors(cmd in command(), cut in 1usize..64) {
            let frame = encode(&cmd).unwrap();
            let keep = frame.len().saturating_sub(cut).max(1);
            if keep < frame.len() {
                prop_assert!(decode::<Command>(&frame[..keep]).is_err());
            }
        }
    }

    #[test]
    fn wrong_version_is_named() {
        let mut frame = encode(&Response::Done).unwrap();
        frame[0] = 9;
        let err = decode::<Response>(&frame).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&Response::Done).unwrap();
        frame.push(0);
        assert!(matches!(
            decode::<Response>(&frame),
            Err(FrameError::Trailing(1))
        ));
    }
}
