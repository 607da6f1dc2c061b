//! Where and how `shoald` logs: to stderr (stdout carries only what a command prints for
//! its user), one line per event; colour only when stderr is a terminal and `NO_COLOR` is
//! not set, so a journal or a file gets plain text; `SHOAL_LOG_FORMAT=json` for one JSON
//! object per line; `SHOAL_LOG` filters (tracing's `EnvFilter` syntax).

use std::io::IsTerminal;

/// What a node logs without `SHOAL_LOG`. openraft logs every failed replication attempt
/// to an unreachable or late machine (twice, from two modules, up to once a heartbeat);
/// the leader's own status transitions say the same thing once.
const DEFAULT_FILTER: &str = "info,openraft=warn,openraft::replication=off,\
     openraft::engine::handler::replication_handler=error,chitchat=warn,libp2p=warn";

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `SHOAL_LOG_FORMAT`: unset or `text`, or `json`.
    pub fn from_env(value: Option<&str>) -> Result<Format, String> {
        match value.map(str::trim) {
            None | Some("" | "text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(format!(
                "SHOAL_LOG_FORMAT={other:?}: use text (the default) or json"
            )),
        }
    }
}

/// Whether text lines may carry colour: only on a terminal, and not with `NO_COLOR` set
/// (to anything but the empty string, as no-color.org says).
pub fn colour(on_terminal: bool, no_color: Option<&str>) -> bool {
    on_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the logger for the process, or says what in the environment is wrong.
pub fn init() -> Result<(), String> {
    let format = Format::from_env(std::env::var("SHOAL_LOG_FORMAT").ok().as_deref())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        Format::Json => builder.json().init(),
        Format::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            let ansi = colour(std::io::stderr().is_terminal(), no_color.as_deref());
            builder.with_ansi(ansi).init();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_text_or_json_and_anything_else_is_refused() {
        assert_eq!(Format::from_env(None), Ok(Format::Text));
        assert_eq!(Format::from_env(Some("json")), Ok(Format::Json));
        assert_eq!(Format::from_env(Some("text")), Ok(Format::Text));
        assert!(
            Format::from_env(Some("yaml"))
                .unwrap_err()
                .contains("text (the default) or json")
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("")));
        assert!(!colour(true, Some("1")));
        assert!(!colour(false, None));
    }
}
