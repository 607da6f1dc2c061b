//! Machine, fleet and audit events: what counts as noise, operators' changes, API keys,
//! registration tokens, and users' changes recorded in the audit log.

use shoal_protocol::keys::{ApiKeyRecord, Scope};
use shoal_protocol::{Drain, KillSwitch, Labels};

use super::*;

#[test]
fn machines_speak_only_when_something_visible_changes() {
    let mut fleet = Fleet::new();
    let events = fleet.apply(upsert(M1, "1.0"));
    assert_eq!(
        kinds(&events),
        [(kind::MACHINE_REGISTERED, Some("0000000000000001"))]
    );
    assert_eq!(events[0].topic, Topic::Machine);
    assert_eq!(events[0].detail.value()["status"], json!("REGISTERING"));

    // The same facts with different use: a refresh, not news.
    let mut busy = MachineInfo {
        id: M1,
        name: "m1".into(),
        version: "1.0".into(),
        running: 5,
        ..MachineInfo::default()
    };
    busy.resources.load = 3.5;
    busy.resources.memory_used_bytes = 1 << 30;
    let refresh = Command::UpsertMachine {
        info: Box::new(busy),
        at_ms: 3,
    };
    assert!(fleet.apply(refresh).is_empty());
    let events = fleet.apply(upsert(M1, "1.1"));
    assert_eq!(events[0].kind, kind::MACHINE_UPDATED);
    assert_eq!(events[0].detail.value()["changed"], json!(["version"]));

    let events = fleet.apply(status(M1, MachineStatus::Online));
    assert_eq!(events[0].kind, kind::MACHINE_STATUS);
    assert_eq!(
        (
            &events[0].detail.value()["status"],
            &events[0].detail.value()["previous"]
        ),
        (&json!("ONLINE"), &json!("REGISTERING"))
    );
    // A heartbeat-only status refresh, and a status for an unknown machine: nothing.
    assert!(fleet.apply(status(M1, MachineStatus::Online)).is_empty());
    assert!(fleet.apply(status(M2, MachineStatus::Online)).is_empty());

    let events = fleet.apply(Command::RemoveMachine { id: M1 });
    assert_eq!(events[0].kind, kind::MACHINE_REMOVED);
    assert_eq!(events[0].detail.value()["name"], json!("m1"));
}

#[test]
fn operators_changes_show_once_on_their_topic() {
    let mut fleet = Fleet::online();
    let label = |set: &[&str]| Command::LabelMachine {
        id: M1,
        set: Labels::from_pairs(set.iter().copied()).unwrap(),
        remove: vec![],
    };
    let events = fleet.apply(label(&["gpu=true"]));
    assert_eq!(
        kinds(&events),
        [(kind::MACHINE_LABELS, Some("0000000000000001"))]
    );
    assert_eq!(events[0].topic, Topic::Machine);
    assert_eq!(
        events[0].detail.value()["operator_labels"],
        json!({"gpu": "true"})
    );
    assert!(fleet.apply(label(&["gpu=true"])).is_empty());

    let drain = |drain: Option<Drain>| Command::SetDrain {
        machines: vec![M1, M2],
        drain,
    };
    let on = Some(Drain {
        since_ms: 60,
        deadline_ms: None,
    });
    let events = fleet.apply(drain(on.clone()));
    assert_eq!(
        kinds(&events),
        [
            (kind::DRAIN, Some("0000000000000001")),
            (kind::DRAIN, Some("0000000000000002")),
        ]
    );
    assert_eq!(events[0].at_ms, Some(60));
    assert!(fleet.apply(drain(on)).is_empty(), "drained again as before");
    fleet.apply(Command::SetDrain {
        machines: vec![M2],
        drain: None,
    });
    let events = fleet.apply(drain(None));
    assert_eq!(kinds(&events), [(kind::UNDRAIN, Some("0000000000000001"))]);
    // An unknown machine refuses the whole drain: nothing happened.
    assert!(
        fleet
            .apply(Command::SetDrain {
                machines: vec![M1, MachineId(9)],
                drain: None,
            })
            .is_empty()
    );

    let switch = Some(KillSwitch {
        reason: "bad image".into(),
        actor: "alice".into(),
        since_ms: 70,
    });
    let events = fleet.apply(Command::SetKillSwitch {
        switch: switch.clone(),
        terminate: false,
        at_ms: 70,
    });
    assert_eq!(kinds(&events), [(kind::KILL_SWITCH, None)]);
    assert_eq!(events[0].topic, Topic::Fleet);
    assert_eq!(
        events[0].detail.value(),
        json!({"on": true, "reason": "bad image", "actor": "alice", "since_ms": 70})
    );
    assert!(
        fleet
            .apply(Command::SetKillSwitch {
                switch,
                terminate: false,
                at_ms: 71
            })
            .is_empty()
    );
    let events = fleet.apply(Command::SetKillSwitch {
        switch: None,
        terminate: false,
        at_ms: 72,
    });
    assert_eq!(events[0].detail.value(), json!({"on": false}));
}

#[test]
fn api_keys_show_without_their_hash() {
    let mut fleet = Fleet::online();
    let record = ApiKeyRecord {
        id: "00112233aabbccdd".into(),
        name: "ci".into(),
        org: "default".into(),
        scope: Scope::Operate,
        secret_sha256: "ff".repeat(32),
        created_at_ms: 80,
        created_by: "bootstrap".into(),
        revoked_at_ms: None,
    };
    let create = Command::CreateApiKey {
        record: Box::new(record),
    };
    let events = fleet.apply(create.clone());
    assert_eq!(
        kinds(&events),
        [(kind::KEY_CREATED, Some("00112233aabbccdd"))]
    );
    assert_eq!(
        events[0].detail.value(),
        json!({"name": "ci", "org": "default", "scope": "operate", "created_by": "bootstrap"})
    );
    assert_eq!((events[0].topic, events[0].at_ms), (Topic::Fleet, Some(80)));
    assert!(fleet.apply(create).is_empty(), "a duplicate id is refused");
    let revoke = Command::RevokeApiKey {
        id: "00112233aabbccdd".into(),
        at_ms: 90,
    };
    let events = fleet.apply(revoke.clone());
    assert_eq!(
        kinds(&events),
        [(kind::KEY_REVOKED, Some("00112233aabbccdd"))]
    );
    assert!(fleet.apply(revoke).is_empty(), "revoked once");
}

#[test]
fn membership_names_voters_and_learners() {
    let event = membership_event(4, vec!["a".into(), "b".into()], vec!["c".into()]);
    assert_eq!((event.index, event.seq, event.topic), (4, 0, Topic::Fleet));
    assert_eq!(event.kind, kind::MEMBERSHIP);
    assert_eq!(
        event.detail.value(),
        json!({"voters": ["a", "b"], "learners": ["c"]})
    );
}

fn audited(command: Command) -> Command {
    Command::Audited {
        actor: "7e57000000000001".into(),
        org: "default".into(),
        at_ms: 95,
        command: Box::new(command),
    }
}

#[test]
fn a_users_change_tells_what_changed_then_who_did_it() {
    let mut fleet = Fleet::online();
    let events = fleet.apply(audited(Command::SubmitJob {
        spec: Box::new(JobSpec::new(["true"])),
        at_ms: 95,
    }));
    let id = fleet.index.to_string();
    let target = format!("job {id}");
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_SUBMITTED, Some(id.as_str())),
            ("submit_job", Some(target.as_str())),
        ]
    );
    let audit = &events[1];
    assert_eq!((audit.topic, audit.at_ms), (Topic::Audit, Some(95)));
    assert_eq!(audit.detail.value()["actor"], json!("7e57000000000001"));
    assert_eq!(audit.detail.value()["outcome"], json!("ok"));
    assert_eq!(audit.detail.value()["seq"], json!(0));

    // Refused: nothing changed, but the audit log has it.
    let events = fleet.apply(audited(Command::CancelJob {
        job: JobId(404),
        at_ms: 96,
    }));
    assert_eq!(kinds(&events), [("cancel_job", Some("job 404"))]);
    let detail = events[0].detail.value();
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("refused: "), "{outcome}");

    // Audited commands batched into one entry keep their order and numbers.
    let events = fleet.apply(Command::Batch(vec![
        audited(Command::LabelMachine {
            id: M1,
            set: Labels::from_pairs(["zone=attic"]).unwrap(),
            remove: vec![],
        }),
        audited(Command::SetKillSwitch {
            switch: None,
            terminate: false,
            at_ms: 97,
        }),
    ]));
    assert_eq!(
        kinds(&events),
        [
            (kind::MACHINE_LABELS, Some("0000000000000001")),
            ("label_machine", Some("machine 0000000000000001")),
            ("kill_switch_off", Some("fleet")),
        ]
    );
    assert_eq!(events[2].detail.value()["seq"], json!(3));
}

#[test]
fn submits_audited_as_one_make_each_jobs_event_then_one_audit_entry() {
    let mut fleet = Fleet::online();
    let submit = |command: &str| Command::SubmitJob {
        spec: Box::new(JobSpec::new([command])),
        at_ms: 95,
    };
    let events = fleet.apply(audited(Command::Batch(vec![
        submit("a"),
        submit("b"),
        submit("c"),
    ])));
    let first = fleet.index;
    let ids: Vec<String> = (first..first + 3).map(|id| id.to_string()).collect();
    let target = format!("jobs {first}-{}", first + 2);
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_SUBMITTED, Some(ids[0].as_str())),
            (kind::JOB_SUBMITTED, Some(ids[1].as_str())),
            (kind::JOB_SUBMITTED, Some(ids[2].as_str())),
            ("submit_jobs", Some(target.as_str())),
        ]
    );
    assert_eq!(events[3].detail.value()["outcome"], json!("ok"));
    assert_eq!(fleet.state.audit.len(), 1, "one entry for the three jobs");
}

#[test]
fn registration_tokens_show_when_made_used_and_revoked() {
    use shoal_protocol::tokens::RegistrationToken;
    let mut fleet = Fleet::online();
    let token = |id: &str| RegistrationToken {
        id: id.into(),
        secret_sha256: "ab".into(),
        org: "default".into(),
        labels: Labels::from_pairs(["zone=attic"]).unwrap(),
        created_at_ms: 100,
        expires_at_ms: 10_000,
        created_by: "7e57000000000001".into(),
        used_by: None,
        used_at_ms: None,
        revoked_at_ms: None,
    };
    let events = fleet.apply(Command::CreateTokens {
        tokens: vec![token("t1"), token("t2")],
    });
    assert_eq!(
        kinds(&events),
        [
            (kind::TOKEN_CREATED, Some("t1")),
            (kind::TOKEN_CREATED, Some("t2"))
        ]
    );
    assert_eq!(
        (events[0].topic, events[0].at_ms),
        (Topic::Fleet, Some(100))
    );
    assert!(events[0].detail.value().get("secret_sha256").is_none());
    let use_t1 = Command::UseToken {
        id: "t1".into(),
        secret_sha256: "ab".into(),
        machine: M2,
        at_ms: 200,
    };
    let events = fleet.apply(use_t1.clone());
    assert_eq!(kinds(&events), [(kind::TOKEN_USED, Some("t1"))]);
    assert_eq!(
        events[0].detail.value()["used_by"],
        json!("0000000000000002")
    );
    assert!(fleet.apply(use_t1).is_empty(), "used once");
    let revoke = |id: &str| Command::RevokeToken {
        id: id.into(),
        at_ms: 300,
    };
    assert!(
        fleet.apply(revoke("t1")).is_empty(),
        "a used token stays used"
    );
    let events = fleet.apply(revoke("t2"));
    assert_eq!(kinds(&events), [(kind::TOKEN_REVOKED, Some("t2"))]);
    assert_eq!(events[0].at_ms, Some(300));
}
