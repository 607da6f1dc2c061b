//! `shoal registry login|logout|ls`: the credentials machines pull images with (admin).

use std::io::Read;

use clap::Subcommand;
use shoal_protocol::registries::{MAX_PASSWORD_BYTES, RegistryEntry, RegistryLogin};

use crate::client::{Client, ClientError};
use crate::output::{Table, age, now_ms, print, print_json, print_json_list};

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Keep credentials for a registry, sealed in the fleet's log: `echo "$TOKEN" | shoal
    /// registry login ghcr.io --username ci --password-stdin`.
    Login {
        /// The registry as image references name it: ghcr.io, registry.lan:5000, docker.io.
        registry: String,
        #[arg(long, short)]
        username: String,
        /// Read the password (or access token) from standard input; it is never an argument.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Forget a registry's credentials.
    Logout { registry: String },
    /// The registries with credentials, without passwords.
    #[command(visible_alias = "list")]
    Ls,
}

pub async fn run(client: &Client, cmd: RegistryCmd, json: bool) -> Result<(), ClientError> {
    let entries = match cmd {
        RegistryCmd::Login {
            registry,
            username,
            password_stdin: _,
        } => {
            let password = read_password(std::io::stdin().lock());
            let login = RegistryLogin { username, password };
            let entry = client.registry_login(&registry, &login).await?;
            match json {
                true => print_json(&entry),
                false => show(std::slice::from_ref(&entry)),
            }
            return Ok(());
        }
        RegistryCmd::Logout { registry } => client.registry_logout(&registry).await?.registries,
        RegistryCmd::Ls => client.registries().await?.registries,
    };
    match json {
        true => print_json_list("registries", &entries),
        false => show(&entries),
    }
    Ok(())
}

/// The password on `input`: its first line, without the line end. Too long is a usage
/// error, before anything is sent.
fn read_password(input: impl Read) -> String {
    let mut bytes = Vec::new();
    let limit = MAX_PASSWORD_BYTES as u64 + 2;
    if let Err(error) = input.take(limit + 1).read_to_end(&mut bytes) {
        crate::usage_error(format!(
            "cannot read the password from standard input: {error}"
        ));
    }
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|_| crate::usage_error("the password on standard input is not UTF-8"));
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        crate::usage_error("no password on standard input (pipe it in: --password-stdin)");
    }
    if text.len() as u64 > limit {
        crate::usage_error(format!(
            "the password on standard input is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    password.to_string()
}

fn show(entries: &[RegistryEntry]) {
    let mut table = Table::new(&["REGISTRY", "USERNAME", "UPDATED", "BY"]);
    let now = now_ms();
    for entry in entries {
        table.row(vec![
            entry.registry.clone(),
            entry.username.clone(),
            age(now, entry.updated_at_ms),
            entry.updated_by.clone(),
        ]);
    }
    print(&table.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_without_its_end() {
        assert_eq!(read_password("hunter2\n".as_bytes()), "hunter2");
        assert_eq!(read_password("hunter2\r\n".as_bytes()), "hunter2");
        assert_eq!(read_password("token".as_bytes()), "token");
    }
}
