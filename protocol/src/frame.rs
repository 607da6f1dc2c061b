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
        Announcement, Attempt, Check, Command, ErrorCode, FleetState, JobId, JobRecord, JobReport,
        JobSpec, JobState, JobTarget, Labels, MachineId, MachineInfo, MachineRecord, MachineStatus,
        MemberAddr, Placement, Resources, Response,
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
                        diagnosis: vec![Check {
                            name: "disk".into(),
                            ok: !draining,
                            detail: "12 GiB free".into(),
                        }],
                    }
                },
            )
    }

    fn status() -> impl Strategy<Value = MachineStatus> {
        prop::sample::select(MachineStatus::ALL.to_vec())
    }

    fn job_spec() -> impl Strategy<Value = JobSpec> {
        (
            prop::collection::vec("\\PC{0,8}", 0..4),
            prop::option::of("[a-z:.0-9]{1,12}"),
            prop::collection::btree_map("[a-z]{1,6}", "[!-~]{0,6}", 0..3),
            prop::option::of(prop_oneof![Just("all_online".to_string()), "[0-9a-f]{16}"]),
            any::<(i32, Option<u64>, u64, u32)>(),
            prop::collection::btree_map("[A-Z_]{1,6}", "\\PC{0,8}", 0..3),
            prop::option::of("[ -~]{0,10}"),
        )
            .prop_map(
                |(command, image, required_labels, agent_id, numbers, env, key)| {
                    let (priority, timeout_seconds, queue_timeout_seconds, max_attempts) = numbers;
                    JobSpec {
                        command,
                        image,
                        image_digest: None,
                        template_id: key.clone(),
                        required_labels,
                        agent_id,
                        priority,
                        env,
                        cpus: None,
                        memory_mb: None,
                        timeout_seconds,
                        queue_timeout_seconds,
                        max_attempts,
                        kind: if priority % 2 == 0 {
                            crate::JobKind::Job
                        } else {
                            crate::JobKind::Session
                        },
                        idempotency_key: key,
                        org: "default".into(),
                    }
                },
            )
    }

    fn report() -> impl Strategy<Value = JobReport> {
        prop_oneof![
            Just(JobReport::Running),
            any::<i32>().prop_map(|exit_code| JobReport::Exited { exit_code }),
            "\\PC{0,12}".prop_map(|error| JobReport::Failed { error }),
        ]
    }

    fn job_record() -> impl Strategy<Value = JobRecord> {
        (
            any::<u64>(),
            job_spec(),
            prop_oneof![
                Just(JobTarget::Any),
                Just(JobTarget::AllOnline),
                any::<u64>().prop_map(|m| JobTarget::Machine(MachineId(m))),
            ],
            prop::sample::select(JobState::ALL.to_vec()),
            prop::collection::vec(
                (
                    any::<(u32, u64, u64)>(),
                    prop::option::of(any::<i32>()),
                    prop::option::of("\\PC{0,6}"),
                ),
                0..3,
            ),
            any::<(u64, u64, bool)>(),
            prop::collection::vec(any::<u64>(), 0..3),
        )
            .prop_map(
                |(id, spec, target, state, attempts, (at, index, cancel), children)| {
                    let mut job = JobRecord::queued(JobId(id), spec, target, at, index);
                    job.state = state;
                    job.cancel_requested = cancel;
                    job.children = children.into_iter().map(JobId).collect();
                    job.parent = cancel.then_some(JobId(index));
                    job.queue_reason = Some(format!("{state}"));
                    job.attempts = attempts
                        .into_iter()
                        .map(|((number, machine, at), exit_code, error)| Attempt {
                            number,
                            machine: MachineId(machine),
                            dispatched_at_ms: at,
                            started_at_ms: Some(at),
                            finished_at_ms: exit_code.map(|_| at),
                            exit_code,
                            error,
                            rate_micro_usd_per_hour: at % 5_000_000,
                            cost_micro_usd: exit_code.map(|_| at % 1_000),
                            ..Attempt::default()
                        })
                        .collect();
                    job
                },
            )
    }

    fn job_command() -> impl Strategy<Value = Command> {
        let placement = any::<(u64, u32, u64)>().prop_map(|(job, attempt, machine)| Placement {
            job: JobId(job),
            attempt,
            machine: MachineId(machine),
        });
        prop_oneof![
            (job_spec(), any::<u64>()).prop_map(|(spec, at_ms)| Command::SubmitJob {
                spec: Box::new(spec),
                at_ms,
            }),
            (prop::collection::vec(placement, 0..4), any::<u64>())
                .prop_map(|(placements, at_ms)| Command::Dispatch { placements, at_ms }),
            (any::<(u64, u32, u64)>(), report()).prop_map(|((job, attempt, at_ms), report)| {
                Command::ReportJob {
                    job: JobId(job),
                    attempt,
                    report,
                    at_ms,
                }
            }),
            any::<(u64, u64)>().prop_map(|(job, at_ms)| Command::CancelJob {
                job: JobId(job),
                at_ms
            }),
            (any::<(u64, u32, u64)>(), "\\PC{0,12}").prop_map(|((job, attempt, at_ms), reason)| {
                Command::RequeueJob {
                    job: JobId(job),
                    attempt,
                    reason,
                    at_ms,
                }
            }),
            any::<(u64, u64)>().prop_map(|(job, at_ms)| Command::TimeOutJob {
                job: JobId(job),
                at_ms
            }),
            prop::collection::vec((any::<u64>().prop_map(JobId), "\\PC{0,12}"), 0..3)
                .prop_map(|reasons| Command::SetQueueReasons { reasons }),
        ]
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            job_command(),
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
        fn responses_round_trip(
            response in prop_oneof![
                Just(Response::Done),
                job_record().prop_map(|job| Response::Job(Box::new(job))),
                prop::collection::vec(any::<u64>().prop_map(JobId), 0..4).prop_map(Response::Jobs),
                "\\PC{0,12}".prop_map(|message| Response::Rejected {
                    code: ErrorCode::Conflict,
                    message,
                }),
            ],
        ) {
            let frame = encode(&response).unwrap();
            prop_assert_eq!(decode::<Response>(&frame).unwrap(), response);
        }

        #[test]
        fn states_round_trip(
            infos in prop::collection::vec((info(), status()), 0..6),
            jobs in prop::collection::vec(job_record(), 0..4),
            next_job_id: u64,
        ) {
            let mut state = FleetState::default();
            for job in jobs {
                if let Some(key) = &job.spec.idempotency_key {
                    let keys = state.idempotency.entry(job.spec.org.clone()).or_default();
                    keys.insert(key.clone(), job.id);
                }
                state.jobs.insert(job.id, job);
            }
            state.next_job_id = next_job_id;
            for (info, status) in infos {
                state.machines.insert(info.id, MachineRecord {
                    operator_labels: info.labels.clone(),
                    info,
                    status,
                    status_since_ms: 3,
                    last_heartbeat_ms: 4,
                    registered_at_ms: 5,
                    drain: None,
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
