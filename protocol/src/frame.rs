//! Versioned frames: every message on peer RPC and gossip, and every record on disk.
//!
//! ```text
//!  b"shl"  format (1 byte)  schema (u16, big endian)  MessagePack, fields by name
//! ```
//!
//! The body is MessagePack with named fields and named enum variants (`rmp_serde`'s
//! `to_vec_named`, as Garage stores its tables), so stored data evolves without migrations
//! for the common changes: a field added with `#[serde(default)]` reads as its default from
//! older records, a field a newer build added is ignored by an older one, and a variant
//! added anywhere is an error naming it, never a misread (bincode by position misread them:
//! inserting one `Command` variant turned every later one into its neighbour). A change
//! that needs more (a renamed field, a changed meaning) raises [`SCHEMA_VERSION`] and adds a
//! step to the migration chain in the reader; frames of an older schema are read through
//! it. The schema a frame was written with travels in its header, so a newer build's data
//! is refused by an older one with a message naming both versions.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first bytes of every frame.
pub const MAGIC: [u8; 3] = *b"shl";

/// The body encoding: 2 is MessagePack with named fields. (1 was bincode by position,
/// written only by pre-release builds; it is refused by name.)
pub const FORMAT: u8 = 2;

/// The schema of the types this build writes. Raise it (and add a migration from the
/// previous one) for a change that named fields and defaults cannot carry.
pub const SCHEMA_VERSION: u16 = 1;

/// The oldest schema this build still reads.
pub const MIN_SCHEMA_VERSION: u16 = 1;

/// Bytes in front of every body.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 2;

/// A frame that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error(
        "written by a pre-release shoald (frame version 1, bincode); this build reads only \
         format {FORMAT}: start this machine from a fresh data directory"
    )]
    PreRelease,
    #[error("not a Shoal frame (no magic bytes)")]
    NotShoal,
    #[error("frame format {0} is not supported (this build reads format {FORMAT})")]
    Format(u8),
    #[error(
        "written with schema {found}, newer than this build reads ({MIN_SCHEMA_VERSION} to \
         {SCHEMA_VERSION}): upgrade shoald"
    )]
    NewerSchema { found: u16 },
    #[error("written with schema {found}, older than this build reads (from {MIN_SCHEMA_VERSION})")]
    OlderSchema { found: u16 },
    #[error("undecodable frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("unencodable value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("frame has {0} bytes left over after decoding")]
    Trailing(usize),
}

/// Writes the header for the current format and schema.
pub fn write_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
}

/// Checks a frame's header and returns the schema it was written with and the body.
pub fn read_header(frame: &[u8]) -> Result<(u16, &[u8]), FrameError> {
    match frame.first() {
        None => return Err(FrameError::Empty),
        Some(1) => return Err(FrameError::PreRelease),
        Some(_) => {}
    }
    if frame.len() < HEADER_LEN || frame[..MAGIC.len()] != MAGIC {
        return Err(FrameError::NotShoal);
    }
    let format = frame[MAGIC.len()];
    if format != FORMAT {
        return Err(FrameError::Format(format));
    }
    let schema = u16::from_be_bytes([frame[MAGIC.len() + 1], frame[MAGIC.len() + 2]]);
    if schema > SCHEMA_VERSION {
        return Err(FrameError::NewerSchema { found: schema });
    }
    if schema < MIN_SCHEMA_VERSION {
        return Err(FrameError::OlderSchema { found: schema });
    }
    Ok((schema, &frame[HEADER_LEN..]))
}

/// Encodes `value` as a body alone (no header), for a value nested in a frame.
pub fn encode_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, FrameError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// How many bytes `value` encodes to as a body, counted as it is encoded, with nothing
/// kept.
pub fn body_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, FrameError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    encode_body_to(value, &mut count)?;
    Ok(count.0)
}

/// Encodes `value` as a body into any writer: a buffer it appends to, or a file, piece by
/// piece.
pub fn encode_body_to<T: Serialize + ?Sized, W: std::io::Write>(
    value: &T,
    out: W,
) -> Result<(), FrameError> {
    let mut serializer = rmp_serde::Serializer::new(out).with_struct_map();
    value.serialize(&mut serializer)?;
    Ok(())
}

/// Decodes a whole body; garbage or trailing bytes are errors.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let len = first_value_len(body).unwrap_or(body.len());
    if len < body.len() {
        return Err(FrameError::Trailing(body.len() - len));
    }
    // Reading from the slice itself lends field names to the decoder instead of copying
    // each into a new buffer (a third of a busy node's decoding time).
    Ok(rmp_serde::from_slice(body)?)
}

/// The length of the MessagePack value at the start of `bytes`, or `None` when it is cut
/// short or starts with a byte no value starts with. Only walks the markers and lengths.
fn first_value_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    // Values still to read: the first one, then each array item and map key and value.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(at)?;
        at += 1;
        let mut uint = |width: usize| -> Option<u64> {
            let field = bytes.get(at..at.checked_add(width)?)?;
            at += width;
            Some(field.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
        };
        let (skip, items) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (uint(1)?, 0),
            0xc5 | 0xda => (uint(2)?, 0),
            0xc6 | 0xdb => (uint(4)?, 0),
            0xc7 => (uint(1)? + 1, 0),
            0xc8 => (uint(2)? + 1, 0),
            0xc9 => (uint(4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, uint(2)?),
            0xdd => (0, uint(4)?),
            0xde => (0, 2 * uint(2)?),
            0xdf => (0, 2 * uint(4)?),
            0xc1 => return None,
        };
        at = at.checked_add(usize::try_from(skip).ok()?)?;
        if at > bytes.len() {
            return None;
        }
        pending = pending.checked_add(items)?;
        // Every value takes at least one byte: more pending than bytes left is cut short.
        if pending > (bytes.len() - at) as u64 {
            return None;
        }
    }
    Some(at)
}

/// Encodes `value` behind the header.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(128);
    write_header(&mut out);
    encode_body_to(value, &mut out)?;
    Ok(out)
}

/// Decodes a whole frame; a foreign or newer header, garbage or trailing bytes are errors.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let (_schema, body) = read_header(frame)?;
    // Schema 1 is the first: nothing to migrate from yet. A later schema matches on the
    // version here and reads the older shape before converting it.
    decode_body(body)
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
                        protocol_level: crate::PROTOCOL_LEVEL,
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
                        images: vec![id, id.wrapping_add(1)],
                        gpus: (0..cores % 3)
                            .map(|index| crate::Gpu {
                                index,
                                uuid: format!("GPU-{index}"),
                                model: format!("GPU model {cores}"),
                                memory_mb: mem >> 20,
                                memory_used_mb: mem >> 21,
                                utilization_percent: index * 10,
                            })
                            .collect(),
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
                        secret_env: env.clone(),
                        env,
                        cpus: None,
                        memory_mb: None,
                        user: key.clone(),
                        pull: [
                            None,
                            Some(crate::PullPolicy::Always),
                            Some(crate::PullPolicy::Never),
                        ][(max_attempts % 3) as usize],
                        gpus: (priority % 3 == 0).then_some(max_attempts),
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
    fn foreign_and_newer_frames_are_named() {
        let mut frame = encode(&Response::Done).unwrap();
        frame[3] = 9;
        let err = decode::<Response>(&frame).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");

        let mut frame = encode(&Response::Done).unwrap();
        frame[4..6].copy_from_slice(&(SCHEMA_VERSION + 1).to_be_bytes());
        let err = decode::<Response>(&frame).unwrap_err();
        assert!(err.to_string().contains("upgrade shoald"), "{err}");

        let err = decode::<Response>(b"{\"json\": true}").unwrap_err();
        assert!(matches!(err, FrameError::NotShoal), "{err}");
        let err = decode::<Response>(&[1, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("pre-release"), "{err}");
    }

    /// The specs stored in the log take a field a newer build added (the API refuses
    /// unknown fields itself, so this is the only way one gets there).
    #[test]
    fn stored_specs_take_fields_from_newer_builds() {
        use crate::policies::PolicySpec;
        use crate::templates::TemplateSpec;
        fn with_future_field<T: Serialize>(value: &T) -> Vec<u8> {
            let mut json = serde_json::to_value(value).unwrap();
            json["gpus_from_the_future"] = serde_json::json!(2);
            encode(&json).unwrap()
        }
        let job = JobSpec::new(["true"]);
        assert_eq!(decode::<JobSpec>(&with_future_field(&job)).unwrap(), job);
        let template = TemplateSpec {
            image: "busybox".into(),
            ..TemplateSpec::default()
        };
        let back: TemplateSpec = decode(&with_future_field(&template)).unwrap();
        assert_eq!(back, template);
        let policy = PolicySpec::default();
        let back: PolicySpec = decode(&with_future_field(&policy)).unwrap();
        assert_eq!(back, policy);
    }

    /// A field a newer build added is ignored; one an older build did not write defaults.
    #[test]
    fn fields_added_on_either_side_are_tolerated() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Old {
            a: u32,
            b: String,
        }
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        struct New {
            a: u32,
            #[serde(default)]
            c: Option<u64>,
            b: String,
        }
        let old = Old {
            a: 1,
            b: "x".into(),
        };
        let new: New = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(
            new,
            New {
                a: 1,
                c: None,
                b: "x".into()
            }
        );
        let back: Old = decode(&encode(&New { c: Some(5), ..new }).unwrap()).unwrap();
        assert_eq!(back, old);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&Response::Done).unwrap();
        frame.push(0);
        assert!(matches!(
            decode::<Response>(&frame),
            Err(FrameError::Trailing(1))
        ));
        // A byte no MessagePack value starts with, and a value cut short, are refused too.
        for tail in [&[0xc1][..], &[0x92, 0x01]] {
            let mut frame = encode(&Response::Done).unwrap();
            frame.extend_from_slice(tail);
            assert!(
                matches!(decode::<Response>(&frame), Err(FrameError::Trailing(n)) if n == tail.len()),
                "{tail:?}"
            );
        }
    }

    #[test]
    fn a_body_is_counted_as_long_as_it_encodes() {
        let command = Command::RemoveMachine { id: MachineId(7) };
        assert_eq!(
            body_len(&command).unwrap(),
            encode_body(&command).unwrap().len()
        );
    }
}
