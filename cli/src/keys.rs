//! `shoal key create|ls|revoke`: API keys (admin scope).

use clap::Subcommand;
use shoal_protocol::keys::{ApiKeyView, CreateKeyRequest, Scope};

use crate::client::{Client, ClientError};
use crate::output::{Table, age, now_ms, print, print_json};

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make a key; the whole key is printed this once.
    Create {
        /// read, operate or admin.
        #[arg(long)]
        scope: Scope,
        /// The org whose work the key sees [default: the caller's].
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Every key, without secrets.
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke a key on every node.
    Revoke { id: String },
}

pub async fn run(client: &Client, cmd: KeyCmd, json: bool) -> Result<(), ClientError> {
    match cmd {
        KeyCmd::Create { scope, org, name } => {
            let created = client
                .create_key(&CreateKeyRequest { scope, org, name })
                .await?;
            if json {
                print_json(&created);
            } else {
                print(&format!(
                    "{}\n(key {} for org {}, scope {}: store it now, it is not shown again)",
                    created.key, created.record.id, created.record.org, created.record.scope
                ));
            }
        }
        KeyCmd::Ls => {
            let list = client.keys().await?;
            if json {
                print_json(&list);
            } else {
                print(&keys_table(&list.keys));
            }
        }
        KeyCmd::Revoke { id } => {
            let list = client.revoke_key(&id).await?;
            if json {
                print_json(&list);
            } else {
                print(&format!("revoked key {id}"));
            }
        }
    }
    Ok(())
}

fn keys_table(keys: &[ApiKeyView]) -> String {
    let now = now_ms();
    let mut table = Table::new(&["ID", "NAME", "ORG", "SCOPE", "CREATED", "REVOKED"]);
    for key in keys {
        table.row(vec![
            key.id.clone(),
            key.name.clone(),
            key.org.clone(),
            key.scope.to_string(),
            age(now, key.created_at_ms),
            key.revoked_at_ms
                .map_or_else(|| "-".to_string(), |at| age(now, at)),
        ]);
    }
    table.render()
}
