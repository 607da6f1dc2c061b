//! Joining with registration tokens: a token brings a machine in (with the token's labels),
//! is used once even when two machines race with it, and an expired or made-up one is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, http_client, init_logs, wait_until};
use shoal_protocol::MachineStatus;

async fn tokens(api: &str, body: Value) -> Vec<String> {
    let response = http_client()
        .post(format!("{api}/v1/tokens/registration"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_brings_one_machine_in_once() {
    init_logs();
    let mut cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let made = tokens(
        &api,
        json!({"count": 2, "ttl_seconds": 3600, "labels": {"gpu": "true"}}),
    )
    .await;
    assert_eq!(made.len(), 2);

    // A machine with a token joins, gets the secret over peer RPC, and comes ONLINE with
    // the token's labels.
    let joined = cluster.join_with_token(0, &made[0]).await.unwrap();
    let id = cluster.node(joined).id;
    wait_until(Duration::from_secs(20), "the new machine ONLINE", || {
        let record = cluster
            .node(0)
            .fleet
            .read(|s| s.machines.get(&id).cloned())?;
        (record.status == MachineStatus::Online && record.labels().get("gpu") == Some("true"))
            .then_some(())
    })
    .await
    .unwrap();

    // A machine whose name the fleet has is refused, saying so, and the token stays
    // unused.
    let peer = cluster.node(0).info.borrow().addr.p2p_addr.clone();
    let loopback = "127.0.0.1".parse().unwrap();
    let twin = tempfile::tempdir().unwrap();
    let taken = shoal_daemon::join::request(twin.path(), loopback, &peer, &made[1], "node-0")
        .await
        .unwrap_err();
    assert!(
        taken
            .to_string()
            .contains("machine name node-0 is taken by machine"),
        "{taken}"
    );

    // Used: another machine cannot use it again.
    let again = tempfile::tempdir().unwrap();
    let refused = shoal_daemon::join::request(again.path(), loopback, &peer, &made[0], "joiner-1")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("already used"), "{refused}");

    // Two machines race with one token: exactly one gets in.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = tokio::join!(
        shoal_daemon::join::request(a.path(), loopback, &peer, &made[1], "joiner-2"),
        shoal_daemon::join::request(b.path(), loopback, &peer, &made[1], "joiner-3"),
    );
    assert_eq!(
        first.is_ok() as u8 + second.is_ok() as u8,
        1,
        "{first:?} {second:?}"
    );

    // Expired and made-up tokens are refused, saying why.
    let short = tokens(&api, json!({"ttl_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = tempfile::tempdir().unwrap();
    let expired = shoal_daemon::join::request(late.path(), loopback, &peer, &short[0], "joiner-4")
        .await
        .unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");
    let fake = format!("shoaljoin_{}_{}", "12".repeat(8), "34".repeat(32));
    let unknown = shoal_daemon::join::request(late.path(), loopback, &peer, &fake, "joiner-5")
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("no such token"), "{unknown}");
    // Pointed at the API port by mistake: the error says which port takes joins.
    let api_port = cluster.node(0).api_addr.to_string();
    let wrong = shoal_daemon::join::request(late.path(), loopback, &api_port, &fake, "joiner-5")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("the member's peer RPC port, 7402?"),
        "{wrong}"
    );

    // Removed by an admin: forgotten everywhere, refused, and not recorded again while it
    // keeps gossiping; a new token brings it back.
    let removed = http_client()
        .delete(format!("{api}/v1/machines/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        cluster
            .node(0)
            .fleet
            .read(|s| !s.machines.contains_key(&id)),
        "it came back by itself"
    );
    let write = cluster
        .node(joined)
        .write(shoal_protocol::Command::RemoveMachine { id })
        .await;
    assert!(
        write.is_err(),
        "a removed machine's requests are refused: {write:?}"
    );
    // `shoald join` runs before the daemon starts: the removal rotated the gossip key, so
    // the machine comes back with the keyring the join answer holds.
    let back = tokens(&api, json!({})).await;
    cluster.stop(joined).await;
    shoal_daemon::join::request(
        &cluster.data_dir(joined),
        loopback,
        &peer,
        &back[0],
        "joiner-6",
    )
    .await
    .unwrap();
    cluster.restart(joined).await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "the machine back after a new token",
        || {
            cluster
                .node(0)
                .fleet
                .read(|s| s.machines.contains_key(&id).then_some(()))
        },
    )
    .await
    .unwrap();

    // Listed without secrets; the used one names its machine.
    let list: Value = http_client()
        .get(format!("{api}/v1/tokens/registration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let used = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["used_by"] == json!(id.to_string()))
        .expect("the used token names its machine");
    assert!(used.get("secret_sha256").is_none());
    cluster.shutdown().await;
}

/// What a hostile endpoint saw of a join: every request's kind, and any token sent.
#[derive(Default)]
struct Seen {
    kinds: Vec<&'static str>,
    tokens: Vec<String>,
}

/// An endpoint that answers join challenges as `answer` says, recording what it is sent.
async fn hostile_endpoint(
    answer: impl Fn(
        shoal_daemon::p2p::PeerRequest,
    ) -> futures::future::BoxFuture<'static, shoal_daemon::p2p::PeerResponse>
    + Send
    + 'static,
) -> (String, Arc<Mutex<Seen>>, tokio::sync::watch::Sender<bool>) {
    use shoal_daemon::p2p::{self, PeerRequest};
    let keypair = libp2p_identity_keypair();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut swarm = p2p::start(keypair, "127.0.0.1:0".parse().unwrap(), false, stopped).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let handle = swarm.handle.clone();
    tokio::spawn(async move {
        while let Some(inbound) = swarm.inbound.recv().await {
            {
                let mut seen = record.lock().unwrap();
                match &inbound.request {
                    PeerRequest::Join { token, .. } => {
                        seen.kinds.push("join");
                        seen.tokens.push(token.clone());
                    }
                    PeerRequest::JoinChallenge { .. } => seen.kinds.push("challenge"),
                    _ => seen.kinds.push("other"),
                }
            }
            let _ = inbound.reply.send(answer(inbound.request).await);
        }
    });
    let addr = handle.listen_addr().await.unwrap();
    (addr.to_string(), seen, stop)
}

fn libp2p_identity_keypair() -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::generate_ed25519()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_goes_only_to_the_fleet_that_made_it() {
    use shoal_daemon::p2p::PeerResponse;
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let token = tokens(&cluster.api(0), json!({"ttl_seconds": 3600}))
        .await
        .remove(0);
    let loopback = "127.0.0.1".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Another fleet does not hold the token: it cannot prove it, and never sees it.
    let other = Cluster::start(1).await.unwrap();
    let other_peer = other.node(0).info.borrow().addr.p2p_addr.clone();
    let refused =
        shoal_daemon::join::request(dir.path(), loopback, &other_peer, &token, "joiner-7")
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("no such token"), "{refused}");

    // A fake endpoint that answers with a made-up proof.
    let (fake, seen, _stop) = hostile_endpoint(|_| {
        Box::pin(async {
            PeerResponse::JoinProof {
                peer_id: libp2p_identity_keypair().public().to_peer_id().to_string(),
                mac: vec![0; 32],
            }
        })
    })
    .await;
    let refused = shoal_daemon::join::request(dir.path(), loopback, &fake, &token, "joiner-8")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("could not prove"), "{refused}");
    let seen_fake = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(
        (seen_fake.kinds, seen_fake.tokens),
        (vec!["challenge"], vec![])
    );

    // A relay that passes the challenge to a real member and its proof back: the proof
    // names the relay as the joiner, so the joiner refuses it.
    let member = cluster.node(0).info.borrow().addr.clone();
    let relay_swarm = {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keypair = libp2p_identity_keypair();
        let started =
            shoal_daemon::p2p::start(keypair, "127.0.0.1:0".parse().unwrap(), false, stopped);
        (started.unwrap().handle, stop)
    };
    let relay_handle = relay_swarm.0.clone();
    let (relay, relayed, _stop_relay) = hostile_endpoint(move |request| {
        let handle = relay_handle.clone();
        let member = member.clone();
        Box::pin(async move {
            let asked = handle.request(
                &member.peer_id,
                &member.p2p_addr,
                request,
                Duration::from_secs(10),
            );
            asked
                .await
                .unwrap_or_else(|err| PeerResponse::Refused(err.to_string()))
        })
    })
    .await;
    let refused = shoal_daemon::join::request(dir.path(), loopback, &relay, &token, "joiner-9")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("could not prove"), "{refused}");
    assert!(relayed.lock().unwrap().tokens.is_empty());

    // The token was never used: with the real fleet it still works.
    let peer = cluster.node(0).info.borrow().addr.p2p_addr.clone();
    let joined =
        shoal_daemon::join::request(dir.path(), loopback, &peer, &token, "joiner-10").await;
    assert!(joined.is_ok(), "{joined:?}");
    let _ = relay_swarm.1.send(true);
    other.shutdown().await;
    cluster.shutdown().await;
}
