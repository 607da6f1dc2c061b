//! `shoal token create|ls|revoke`: registration tokens for `shoald join` (admin scope).

use clap::Subcommand;
use shoal_protocol::Labels;
use shoal_protocol::tokens::{CreateTokensRequest, TokenView};

use crate::client::{Client, ClientError};
use crate::output::{Table, age, now_ms, or_dash, print, print_json};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make single-use tokens; each is printed this once.
    Create {
        /// How many (1 to 100).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How long they stay usable (e.g. 90s, 10m, 1h, 2d).
        #[arg(long, default_value = "1h", value_parser = crate::operate::parse_duration)]
        ttl: u64,
        /// The org of the machines that join [default: the caller's].
        #[arg(long)]
        org: Option<String>,
        /// A label the joining machine gets; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Every token, without secrets.
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke an unused token.
    Revoke { id: String },
}

pub async fn run(client: &Client, cmd: TokenCmd, json: bool) -> Result<(), ClientError> {
    match cmd {
        TokenCmd::Create {
            count,
            ttl,
            org,
            labels,
        } => {
            let mut set = Labels::new();
            for (key, value) in &labels {
                set.insert(key, value)
                    .unwrap_or_else(|e| crate::usage_error(e));
            }
            let request = CreateTokensRequest {
                count,
                ttl_seconds: ttl,
                org,
                labels: set,
            };
            let created = client.create_tokens(&request).await?;
            if json {
                print_json(&created);
            } else {
                print(&created.tokens.join("\n"));
            }
        }
        TokenCmd::Ls => {
            let list = client.tokens().await?;
            if json {
                print_json(&list);
            } else {
                print(&table(&list.tokens));
            }
        }
        TokenCmd::Revoke { id } => {
            let list = client.revoke_token(&id).await?;
            if json {
                print_json(&list);
            } else {
                print(&format!("revoked token {id}"));
            }
        }
    }
    Ok(())
}

fn table(tokens: &[TokenView]) -> String {
    let now = now_ms();
    let mut table = Table::new(&["ID", "ORG", "LABELS", "EXPIRES", "USED BY", "REVOKED"]);
    for t in tokens {
        let expires = if t.expires_at_ms > now {
            format!("in {}", crate::output::duration(t.expires_at_ms - now))
        } else {
            "expired".to_string()
        };
        table.row(vec![
            t.id.clone(),
            t.org.clone(),
            t.labels.to_string(),
            expires,
            or_dash(t.used_by),
            t.revoked_at_ms
                .map_or_else(|| "-".to_string(), |at| age(now, at)),
        ]);
    }
    table.render()
}
