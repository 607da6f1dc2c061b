//! Every `Command` variant as an earlier build encoded it must decode to the same value.
//!
//! `tests/fixtures/<version>/commands.json` holds one encoded frame of each variant (in hex)
//! with the value as JSON. A new format writes a new file and keeps the old ones:
//!
//! ```sh
//! SHOAL_FIXTURE=v6 cargo test -p shoal-protocol --test fixtures generate -- --ignored
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shoal_protocol::batch::BatchAction;
use shoal_protocol::costs::{Budget, OnExceed};
use shoal_protocol::gossip_keys::SEALED_KEY_LEN;
use shoal_protocol::keys::{ApiKeyRecord, Scope};
use shoal_protocol::policies::{Policy, PolicySpec};
use shoal_protocol::registries::RegistryCredential;
use shoal_protocol::requests::RequestId;
use shoal_protocol::settings::FleetSettings;
use shoal_protocol::templates::TemplateSpec;
use shoal_protocol::tokens::RegistrationToken;
use shoal_protocol::{
    Command, Drain, JobId, JobReport, JobSpec, KillSwitch, Labels, MachineId, MachineInfo,
    MachineStatus, Placement, ProtocolLevel, PullPolicy, frame,
};

fn labels() -> Labels {
    Labels::from_pairs(["gpu", "zone=attic"]).unwrap()
}

/// One of each variant, with every field set to something other than its default.
fn one_of_each() -> Vec<Command> {
    let job = JobId(41);
    let machine = MachineId(0xfeed);
    let mut spec = JobSpec::new(["sh", "-c", "echo hi"]);
    spec.image = Some("busybox:local".into());
    spec.idempotency_key = Some("key-1".into());
    spec.required_labels = [("gpu".to_string(), "true".to_string())].into();
    spec.secret_env = [("API_TOKEN".to_string(), "sealed:v1:AAAA".to_string())].into();
    spec.user = Some("nobody".into());
    spec.pull = Some(PullPolicy::Always);
    spec.gpus = Some(1);
    let info = MachineInfo {
        id: machine,
        name: "m1".into(),
        hostname: "m1.lan".into(),
        labels: labels(),
        version: "0.2.0".into(),
        protocol_level: ProtocolLevel(2),
        gpus: vec![shoal_protocol::Gpu {
            index: 0,
            uuid: "GPU-0".into(),
            model: "NVIDIA A100-SXM4-40GB".into(),
            memory_mb: 40_960,
            memory_used_mb: 0,
            utilization_percent: 0,
        }],
        images: vec![7, 9],
        ..MachineInfo::default()
    };
    let key = ApiKeyRecord {
        id: "7e57000000000002".into(),
        name: "ci".into(),
        org: "homelab".into(),
        scope: Scope::Operate,
        secret_sha256: "ab".repeat(32),
        created_at_ms: 5,
        created_by: "7e57000000000001".into(),
        revoked_at_ms: None,
    };
    let token = RegistrationToken {
        id: "t1".into(),
        secret_sha256: "cd".repeat(32),
        org: "homelab".into(),
        labels: labels(),
        created_at_ms: 6,
        expires_at_ms: 3_600_006,
        created_by: "admin".into(),
        used_by: None,
        used_at_ms: None,
        revoked_at_ms: None,
    };
    let template = TemplateSpec {
        image: "busybox:local".into(),
        command: vec!["sleep".into(), "100".into()],
        secret_env: [("DB_PASSWORD".to_string(), "sealed:v1:BBBB".to_string())].into(),
        user: Some("1000".into()),
        pull: Some(PullPolicy::Never),
        gpus: Some(2),
        ..TemplateSpec::default()
    };
    let policy = Policy {
        name: "workers".into(),
        spec: PolicySpec {
            allowed_images: vec!["busybox:*".into()],
            cap_add: vec!["NET_RAW".into()],
            cap_drop: vec!["SETUID".into()],
            pids_limit: Some(256),
            user: Some("1000:1000".into()),
            pull: Some(PullPolicy::Never),
            ..PolicySpec::default()
        },
        updated_at_ms: 8,
        updated_by: "admin".into(),
    };
    vec![
        Command::UpsertMachine {
            info: Box::new(info),
            at_ms: 1,
        },
        Command::SetStatus {
            id: machine,
            status: MachineStatus::Stale,
            last_heartbeat_ms: 2,
            at_ms: 3,
        },
        Command::LabelMachine {
            id: machine,
            set: labels(),
            remove: vec!["old".into()],
        },
        Command::RemoveMachine { id: machine },
        Command::RetireMachine { id: machine },
        Command::SubmitJob {
            spec: Box::new(spec),
            at_ms: 4,
        },
        Command::Dispatch {
            placements: vec![Placement {
                job,
                attempt: 2,
                machine,
            }],
            at_ms: 5,
        },
        Command::ReportJob {
            job,
            attempt: 2,
            report: JobReport::Exited { exit_code: 3 },
            at_ms: 6,
        },
        Command::CancelJob { job, at_ms: 7 },
        Command::RequeueJob {
            job,
            attempt: 1,
            reason: "machine went STALE".into(),
            at_ms: 8,
        },
        Command::TimeOutJob { job, at_ms: 9 },
        Command::SetQueueReasons {
            reasons: vec![(job, "no ONLINE machine has label gpu".into())],
        },
        Command::Batch(vec![
            Command::ReportJob {
                job,
                attempt: 1,
                report: JobReport::Pulling {
                    image: "busybox:local".into(),
                },
                at_ms: 10,
            },
            Command::CancelJob { job, at_ms: 10 },
            Command::ReportJob {
                job,
                attempt: 1,
                report: JobReport::Failed {
                    error: "no such image".into(),
                },
                at_ms: 11,
            },
        ]),
        Command::PruneJobs {
            finished_before_ms: 12,
        },
        Command::SetDrain {
            machines: vec![machine],
            drain: Some(Drain {
                since_ms: 13,
                deadline_ms: Some(14),
            }),
        },
        Command::CreateApiKey {
            record: Box::new(key),
        },
        Command::RevokeApiKey {
            id: "7e57000000000002".into(),
            at_ms: 15,
        },
        Command::CreateTokens {
            tokens: vec![token],
        },
        Command::RevokeToken {
            id: "t1".into(),
            at_ms: 16,
        },
        Command::UseToken {
            id: "t1".into(),
            secret_sha256: "cd".repeat(32),
            machine,
            at_ms: 17,
        },
        Command::Audited {
            actor: "7e57000000000001".into(),
            org: "homelab".into(),
            at_ms: 18,
            command: Box::new(Command::RemoveMachine { id: machine }),
        },
        Command::SetKillSwitch {
            switch: Some(KillSwitch {
                reason: "bad image".into(),
                actor: "alice".into(),
                since_ms: 19,
            }),
            terminate: true,
            at_ms: 19,
        },
        Command::SetBudget {
            org: "homelab".into(),
            budget: Some(Budget {
                daily_micro_usd: Some(25_000_000),
                daily_runner_ms: Some(36_000_000),
                on_exceed: OnExceed::Stop,
            }),
        },
        Command::ReportCost {
            job,
            attempt: 1,
            micro_usd: 13_000,
            report_id: Some("call-1".into()),
            at_ms: 20,
        },
        Command::EnforceBudgets { at_ms: 21 },
        Command::PutTemplate {
            org: Some("homelab".into()),
            name: "ci".into(),
            spec: Box::new(template),
            by: "admin".into(),
            at_ms: 22,
        },
        Command::RollbackTemplate {
            org: Some("homelab".into()),
            name: "ci".into(),
            version: 1,
        },
        Command::RecordBatch {
            action: BatchAction::Restart,
            machines: vec![machine],
        },
        Command::SetPolicy {
            name: "workers".into(),
            policy: Some(Box::new(policy)),
        },
        Command::SetRegistryCredential {
            registry: "registry.lan:5000".into(),
            credential: Some(Box::new(RegistryCredential {
                registry: "registry.lan:5000".into(),
                username: "ci".into(),
                sealed_password: "sealed:v1:AAAA".into(),
                updated_at_ms: 24,
                updated_by: "7e57000000000001".into(),
            })),
        },
        Command::SetFleetLevel {
            level: ProtocolLevel(2),
        },
        Command::SetFleetSettings {
            settings: FleetSettings {
                job_retention_seconds: Some(172_800),
            },
        },
        Command::ApproveMachine { id: machine },
        Command::RequestGossipKeyRotation,
        Command::RotateGossipKey {
            generation: 3,
            sealed_key: (0..SEALED_KEY_LEN as u8).collect(),
        },
        Command::Request {
            id: RequestId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            at_ms: 23,
            command: Box::new(Command::CancelJob { job, at_ms: 23 }),
        },
    ]
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The variant names serde knows for `Command`, asked of its derived `Deserialize`.
fn command_variants() -> BTreeSet<&'static str> {
    use serde::de::{self, Deserialize, Visitor};
    #[derive(Debug)]
    struct Names(&'static [&'static str]);
    impl std::fmt::Display for Names {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Names {}
    impl de::Error for Names {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Names(&[])
        }
    }
    struct Ask;
    impl<'de> de::Deserializer<'de> for Ask {
        type Error = Names;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Names> {
            Err(Names(&[]))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Names> {
            Err(Names(variants))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let Names(names) = Command::deserialize(Ask).unwrap_err();
    names.iter().copied().collect()
}

#[test]
fn the_samples_cover_every_variant_and_round_trip() {
    let samples = one_of_each();
    let tags: BTreeSet<&str> = samples.iter().map(Command::tag).collect();
    assert_eq!(tags.len(), samples.len(), "one sample per variant");
    assert_eq!(
        tags,
        command_variants(),
        "a sample of every Command variant"
    );
    for command in samples {
        let frame = frame::encode(&command).unwrap();
        assert_eq!(frame::decode::<Command>(&frame).unwrap(), command);
    }
}

#[test]
#[ignore = "writes a new fixture; run by hand when the stored format changes"]
fn generate() {
    let name = std::env::var("SHOAL_FIXTURE").expect("SHOAL_FIXTURE names the fixture");
    let path = fixtures().join(name).join("commands.json");
    assert!(
        !path.exists(),
        "{} exists: fixtures are never rewritten",
        path.display()
    );
    let rows: Vec<Value> = one_of_each()
        .iter()
        .map(|command| {
            json!({
                "tag": command.tag(),
                "frame": hex(&frame::encode(command).unwrap()),
                "value": serde_json::to_value(command).unwrap(),
            })
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text = serde_json::to_string_pretty(&rows).unwrap();
    std::fs::write(path, text + "\n").unwrap();
}

/// Fields added to stored types after a fixture was written, with the value (as JSON) an
/// older frame reads as. Decoding an older frame gives exactly these on top of what it held.
const ADDED_FIELDS: &[(&str, &str)] = &[
    // MachineInfo (protocol level 2): a machine that did not say speaks level 1.
    ("protocol_level", "1"),
    // PutTemplate and RollbackTemplate (protocol level 8): a fleet-wide template.
    ("org", "null"),
    // JobSpec and TemplateSpec (protocol level 8): no secret variables.
    ("secret_env", "{}"),
    // JobSpec, TemplateSpec and PolicySpec (protocol level 8): the image's user, and the
    // default confinement.
    ("user", "null"),
    ("cap_add", "[]"),
    ("cap_drop", "[]"),
    ("pids_limit", "null"),
    // JobSpec and TemplateSpec (protocol level 8): pulled when missing.
    ("pull", "null"),
    // JobSpec and TemplateSpec (protocol level 9): no GPUs. (MachineInfo's `gpus` is left
    // out when there are none, so an older record reads the same.)
    ("gpus", "null"),
];

/// `decoded` holds everything in `stored`, and besides only [`ADDED_FIELDS`] at the
/// value an older frame reads as; `at` says where, for the message.
fn assert_holds(decoded: &Value, stored: &Value, at: &str) {
    match (decoded, stored) {
        (Value::Object(decoded), Value::Object(stored)) => {
            for (key, value) in decoded {
                let at = format!("{at}.{key}");
                match stored.get(key) {
                    Some(held) => assert_holds(value, held, &at),
                    None => {
                        let added = ADDED_FIELDS.iter().find(|(name, _)| name == key);
                        let default: Option<Value> =
                            added.map(|(_, default)| serde_json::from_str(default).unwrap());
                        assert_eq!(
                            Some(value),
                            default.as_ref(),
                            "{at} is not in the fixture: a field added since must be in ADDED_FIELDS and read as the value given there"
                        );
                    }
                }
            }
            for key in stored.keys() {
                assert!(decoded.contains_key(key), "{at}.{key} was lost");
            }
        }
        (Value::Array(decoded), Value::Array(stored)) if decoded.len() == stored.len() => {
            for (i, (value, held)) in decoded.iter().zip(stored).enumerate() {
                assert_holds(value, held, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(decoded, stored, "{at}"),
    }
}

/// Every fixture's frames decode to the values they were written from.
#[test]
fn every_fixture_decodes_to_the_values_it_was_written_from() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path().join("commands.json"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no commands.json under {}",
        fixtures().display()
    );
    for file in &files {
        let rows: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for row in rows {
            let bytes = unhex(row["frame"].as_str().unwrap());
            let command: Command = frame::decode(&bytes)
                .unwrap_or_else(|err| panic!("{}: {}: {err}", file.display(), row["tag"]));
            assert_eq!(command.tag(), row["tag"], "{}", file.display());
            let at = format!("{}: {}", file.display(), row["tag"]);
            assert_holds(&serde_json::to_value(&command).unwrap(), &row["value"], &at);
        }
    }
}

/// The stored `JobSpec` is not the API's body (`JobRequest`), and the API does not move it:
/// a job each fixture holds, encoded again, carries every MessagePack field it held under
/// the same name with the same value (and besides only [`ADDED_FIELDS`]).
#[test]
fn a_stored_job_encodes_again_as_the_fixtures_hold_it() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let file = entry.unwrap().path().join("commands.json");
        if !file.exists() {
            continue;
        }
        let rows: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let row = rows.iter().find(|row| row["tag"] == "SubmitJob").unwrap();
        let held = unhex(row["frame"].as_str().unwrap());
        let command: Command = frame::decode(&held).unwrap();
        assert!(matches!(command, Command::SubmitJob { .. }));
        let again = frame::encode(&command).unwrap();
        // Both frames read as plain MessagePack maps, by field name.
        let held: Value = frame::decode(&held).unwrap();
        let again: Value = frame::decode(&again).unwrap();
        assert_holds(&again, &held, &format!("{}: SubmitJob", file.display()));
        checked += 1;
    }
    assert!(
        checked > 0,
        "no commands.json under {}",
        fixtures().display()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
