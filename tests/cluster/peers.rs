//! Peer RPC as a member turned hostile would use it: a real libp2p client holding a
//! member's `node.key` asks the leader to make an admin key, set a budget, report on an
//! attempt another machine runs, and passes off a user's change without the user's key,
//! in both the current and the older request form; it also sends Raft traffic in another
//! machine's name. Each is refused with a reason naming the sender, and nothing is
//! written: the fleet's keys, budgets, job and audit log are as they were.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_daemon::identity::load_or_create_keypair;
use shoal_daemon::keys::new_key;
use shoal_daemon::p2p::{self, Credential, PeerRequest, PeerResponse};
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::keys::Scope;
use shoal_protocol::levels::PEER_AUTH_LEVEL;
use shoal_protocol::requests::RequestId;
use shoal_protocol::{ApiError, Command, ErrorCode, JobReport, JobState};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

/// What the fleet holds that a forged write would change.
fn written(cluster: &Cluster, i: usize) -> String {
    cluster.node(i).fleet.read(|s| {
        format!(
            "keys {:?}, budgets {:?}, audit {}, jobs {:?}",
            s.api_keys.keys().collect::<Vec<_>>(),
            s.budgets,
            s.audit.len(),
            s.jobs.values().map(|j| (j.id, j.state)).collect::<Vec<_>>()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_key_does_not_make_it_a_user() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    cluster
        .wait_every_replica(WAIT, "the fleet at the credential level", |s| {
            s.fleet_level >= PEER_AUTH_LEVEL
        })
        .await
        .unwrap();
    let job = cluster
        .submit(0, serde_json::json!({"command": ["sleep", "60"]}))
        .await;
    let running = cluster
        .wait_job(0, job, "the job running", |j| j.state == JobState::Running)
        .await;
    let attempt = running.current_attempt().expect("an attempt").clone();
    let leader = cluster.wait_leader(WAIT).await.unwrap();
    // The hostile member: one that neither leads nor runs the job.
    let member = (0..3)
        .find(|&i| i != leader && cluster.node(i).id != attempt.machine)
        .expect("a third machine");
    let member_id = cluster.node(member).id;
    cluster
        .wait_every_replica(WAIT, "the job running everywhere", |s| {
            s.jobs
                .get(&job)
                .is_some_and(|j| j.state == JobState::Running)
        })
        .await
        .unwrap();
    let before = written(&cluster, leader);

    let keypair = load_or_create_keypair(&cluster.data_dir(member)).unwrap();
    let (stop, stopped) = watch::channel(false);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let swarm = p2p::start(keypair, local, false, stopped).unwrap();
    let to_leader = cluster.node(leader).info.borrow().addr.clone();
    let send = |request: PeerRequest| {
        let handle = swarm.handle.clone();
        let to = to_leader.clone();
        async move {
            handle
                .request(&to.peer_id, &to.p2p_addr, request, WAIT)
                .await
                .expect("the leader answers")
        }
    };
    let as_request = |command: Command| Command::Request {
        id: RequestId(rand::random()),
        at_ms: 1,
        command: Box::new(command),
    };
    let (_, stolen) = new_key("default", Scope::Admin, "stolen", "intruder", 1);
    let admin_key = Command::CreateApiKey {
        record: Box::new(stolen.clone()),
    };
    let budget = Command::SetBudget {
        org: "default".into(),
        budget: None,
    };
    let report = Command::ReportJob {
        job,
        attempt: attempt.number,
        report: JobReport::Exited { exit_code: 0 },
        at_ms: 1,
    };
    let bootstrap = cluster.node(leader).fleet.read(|s| {
        let key = s.api_keys.values().next().expect("the bootstrap key");
        (key.id.clone(), key.org.clone())
    });
    let posing = Command::Audited {
        actor: bootstrap.0,
        org: bootstrap.1,
        at_ms: 1,
        command: Box::new(admin_key.clone()),
    };
    let made_up_key = format!("shoal_{}_{}", "ab".repeat(8), "cd".repeat(32));
    let sender = format!("machine {member_id}");
    let made_up = Some(Credential::ApiKey(made_up_key));
    let attempts = [
        (
            "an admin key",
            admin_key.clone(),
            None,
            ErrorCode::Unauthorized,
            &*sender,
        ),
        ("a budget", budget, None, ErrorCode::Unauthorized, &sender),
        (
            "another's report",
            report,
            None,
            ErrorCode::Forbidden,
            &sender,
        ),
        (
            "a made-up key",
            posing.clone(),
            made_up,
            ErrorCode::Unauthorized,
            "unknown API key",
        ),
        (
            "no key at all",
            posing,
            None,
            ErrorCode::Unauthorized,
            &sender,
        ),
    ];
    for (what, command, credential, code, needle) in attempts {
        let forward = PeerRequest::ForwardAs {
            command: as_request(command),
            credential,
        };
        refused_write(what, send(forward).await, code, needle);
    }
    // The older form, without a credential field, is sent back once the fleet is past it.
    let legacy = PeerRequest::Forward(as_request(admin_key));
    let again = "again with the user's API key";
    refused_write(
        "the older form",
        send(legacy).await,
        ErrorCode::Unavailable,
        again,
    );

    // Raft traffic in another machine's name: refused, not answered.
    let vote = openraft::raft::VoteRequest::new(
        openraft::Vote::new(u64::MAX / 2, cluster.node(leader).id),
        None,
    );
    match send(PeerRequest::Vote(vote)).await {
        PeerResponse::Refused(why) => assert!(why.contains("in the name of"), "{why}"),
        other => panic!("a vote in the leader's name was answered: {other:?}"),
    }

    // The leader answered every one of them, and none of them changed anything.
    assert_eq!(written(&cluster, leader), before);
    assert!(
        cluster
            .node(leader)
            .fleet
            .read(|s| !s.api_keys.contains_key(&stolen.id))
    );
    let _ = stop.send(true);
    cluster.shutdown().await;
}

fn refused_write(what: &str, response: PeerResponse, code: ErrorCode, needle: &str) {
    match response {
        PeerResponse::Write(Err(ApiError {
            code: got, message, ..
        })) => {
            assert_eq!(got, code, "{what}: {message}");
            assert!(
                message.contains(needle),
                "{what}: {message:?} lacks {needle:?}"
            );
        }
        other => panic!("{what} was not refused: {other:?}"),
    }
}
