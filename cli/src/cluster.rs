//! `shoal cluster status` and `shoal health`: the node's view of the Raft group.

use shoal_protocol::MachineId;
use shoal_protocol::api::{ClusterStatus, Health};

use crate::client::{Client, ClientError};
use crate::output::{Table, key_values, or_dash, print, print_json};

/// `shoal cluster status`.
pub async fn status(client: &Client, json: bool) -> Result<(), ClientError> {
    let status = client.cluster().await?;
    if json {
        print_json(&status);
    } else {
        print(&render_status(&status));
    }
    Ok(())
}

/// `shoal health`.
pub async fn health(client: &Client, json: bool) -> Result<(), ClientError> {
    let health = client.health().await?;
    if json {
        print_json(&health);
    } else {
        print(&render_health(&health));
    }
    Ok(())
}

/// The status block followed by one table of members with their roles.
pub fn render_status(status: &ClusterStatus) -> String {
    let name_of = |id: MachineId| {
        status
            .voters
            .iter()
            .chain(&status.learners)
            .find(|m| m.id == id)
            .map(|m| format!("{id} ({})", m.name))
            .unwrap_or_else(|| id.to_string())
    };
    let mut text = key_values(&[
        ("node", name_of(status.machine_id)),
        (
            "leader",
            status.leader.map_or_else(|| "none".to_string(), name_of),
        ),
        ("term", status.term.to_string()),
        ("last log index", or_dash(status.last_log_index)),
        ("commit index", or_dash(status.commit_index)),
        ("last applied", or_dash(status.last_applied)),
        ("voters", status.voters.len().to_string()),
        ("learners", status.learners.len().to_string()),
    ]);
    let mut table = Table::new(&["ID", "NAME", "ROLE", "API ADDR", "P2P ADDR"]);
    let voters = status.voters.iter().map(|m| (m, "voter"));
    let learners = status.learners.iter().map(|m| (m, "learner"));
    for (m, role) in voters.chain(learners) {
        let role = if Some(m.id) == status.leader {
            "leader"
        } else {
            role
        };
        table.row(vec![
            m.id.to_string(),
            m.name.clone(),
            role.to_string(),
            m.addr.api_addr.clone(),
            m.addr.p2p_addr.clone(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());
    text
}

pub fn render_health(health: &Health) -> String {
    key_values(&[
        ("status", health.status.clone()),
        ("machine", health.machine_id.to_string()),
        ("leader", or_dash(health.leader)),
        ("version", health.version.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::MemberAddr;
    use shoal_protocol::api::ClusterMember;

    fn member(id: u64, name: &str) -> ClusterMember {
        ClusterMember {
            id: MachineId(id),
            name: name.into(),
            addr: MemberAddr {
                peer_id: "12D3Koo".into(),
                p2p_addr: format!("10.0.0.{id}:7401"),
                api_addr: format!("10.0.0.{id}:7400"),
                gossip_addr: format!("10.0.0.{id}:7401"),
            },
        }
    }

    #[test]
    fn status_names_the_leader_and_lists_members() {
        let status = ClusterStatus {
            machine_id: MachineId(2),
            leader: Some(MachineId(1)),
            term: 7,
            last_log_index: Some(42),
            commit_index: Some(41),
            last_applied: None,
            voters: vec![member(1, "attic"), member(2, "pi")],
            learners: vec![member(3, "laptop")],
        };
        let text = render_status(&status);
        assert!(
            text.contains("leader:          0000000000000001 (attic)\n"),
            "{text}"
        );
        assert!(text.contains("term:            7\n"), "{text}");
        assert!(text.contains("last applied:    -\n"), "{text}");
        assert!(
            text.contains("0000000000000001  attic   leader   10.0.0.1:7400"),
            "{text}"
        );
        assert!(text.contains("0000000000000002  pi      voter"), "{text}");
        assert!(text.contains("0000000000000003  laptop  learner"), "{text}");
    }

    #[test]
    fn status_without_leader_says_none() {
        let status = ClusterStatus {
            machine_id: MachineId(9),
            leader: None,
            term: 0,
            last_log_index: None,
            commit_index: None,
            last_applied: None,
            voters: vec![],
            learners: vec![],
        };
        let text = render_status(&status);
        assert!(
            text.contains("node:            0000000000000009\n"),
            "{text}"
        );
        assert!(text.contains("leader:          none\n"), "{text}");
    }
}
