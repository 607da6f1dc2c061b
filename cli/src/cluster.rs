//! `shoal cluster status` and `shoal health`: the node's view of the Raft group, with each
//! member's version and protocol level and the fleet's level.

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

/// The fleet's level, with the members holding it down (or refused for being below it).
fn fleet_level(status: &ClusterStatus, name_of: &dyn Fn(MachineId) -> String) -> String {
    let mut text = status.fleet_level.to_string();
    if !status.held_back_by.is_empty() {
        let names: Vec<String> = status.held_back_by.iter().map(|id| name_of(*id)).collect();
        text.push_str(&format!(" (held back by {})", names.join(", ")));
    }
    text
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
        ("fleet level", fleet_level(status, &name_of)),
        (
            "gossip key",
            format!(
                "generation {} (this node seals with {})",
                status.gossip_key_generation, status.node_gossip_key_generation
            ),
        ),
    ]);
    if let Some(reason) = &status.cut_off {
        text.push_str(&format!("CUT OFF: {reason}\n"));
    }
    let mut table = Table::new(&[
        "ID", "NAME", "ROLE", "VERSION", "LEVEL", "API ADDR", "P2P ADDR",
    ]);
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
            or_dash((!m.version.is_empty()).then_some(&m.version)),
            m.protocol_level.to_string(),
            m.addr.api_addr.clone(),
            m.addr.p2p_addr.clone(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());
    if !status.refused.is_empty() {
        text.push_str(&format!(
            "\nrefused (below the fleet's protocol level {}; upgrade them to join):\n",
            status.fleet_level
        ));
        for m in &status.refused {
            text.push_str(&format!(
                "  {} ({}, {}, level {})\n",
                m.id, m.name, m.version, m.protocol_level
            ));
        }
    }
    text
}

pub fn render_health(health: &Health) -> String {
    key_values(&[
        ("status", health.status.clone()),
        ("machine", health.machine_id.to_string()),
        ("leader", or_dash(health.leader)),
        ("version", health.version.clone()),
        ("reason", or_dash(health.reason.as_ref())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::api::ClusterMember;
    use shoal_protocol::{MemberAddr, ProtocolLevel};

    fn member(id: u64, name: &str) -> ClusterMember {
        ClusterMember {
            version: "0.1.0".into(),
            protocol_level: ProtocolLevel(2),
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
            fleet_level: ProtocolLevel(2),
            held_back_by: vec![],
            refused: vec![],
            cut_off: None,
            gossip_key_generation: 0,
            node_gossip_key_generation: 0,
        };
        let text = render_status(&status);
        assert!(
            text.contains("leader:          0000000000000001 (attic)\n"),
            "{text}"
        );
        assert!(text.contains("term:            7\n"), "{text}");
        assert!(text.contains("last applied:    -\n"), "{text}");
        assert!(text.contains("fleet level:     2\n"), "{text}");
        assert!(
            text.contains("gossip key:      generation 0 (this node seals with 0)\n"),
            "{text}"
        );
        assert!(
            text.contains("0000000000000001  attic   leader   0.1.0    2      10.0.0.1:7400"),
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
            fleet_level: ProtocolLevel(1),
            held_back_by: vec![],
            refused: vec![],
            cut_off: None,
            gossip_key_generation: 0,
            node_gossip_key_generation: 0,
        };
        let text = render_status(&status);
        assert!(
            text.contains("node:            0000000000000009\n"),
            "{text}"
        );
        assert!(text.contains("leader:          none\n"), "{text}");
    }

    #[test]
    fn status_names_who_holds_the_fleet_back_and_who_is_refused() {
        let mut old = member(2, "pi");
        old.protocol_level = ProtocolLevel(1);
        let mut late = member(4, "nas");
        late.protocol_level = ProtocolLevel(1);
        let status = ClusterStatus {
            machine_id: MachineId(1),
            leader: Some(MachineId(1)),
            term: 3,
            last_log_index: Some(9),
            commit_index: Some(9),
            last_applied: Some(9),
            voters: vec![member(1, "attic"), old],
            learners: vec![],
            fleet_level: ProtocolLevel(1),
            held_back_by: vec![MachineId(2)],
            refused: vec![late],
            cut_off: None,
            gossip_key_generation: 0,
            node_gossip_key_generation: 0,
        };
        let text = render_status(&status);
        assert!(
            text.contains("fleet level:     1 (held back by 0000000000000002 (pi))\n"),
            "{text}"
        );
        assert!(
            text.contains("0000000000000002  pi     voter   0.1.0    1"),
            "{text}"
        );
        assert!(
            text.contains("  0000000000000004 (nas, 0.1.0, level 1)\n"),
            "{text}"
        );
    }
}
