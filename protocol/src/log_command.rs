//! [`LogCommand`]: a [`Command`] as a log entry carries it, a tag and a payload.
//!
//! The command travels as one nested MessagePack body (its variant name is the tag, its
//! fields the payload), so a replica that meets a command it does not know still reads
//! the entry around it: the entry decodes to [`LogCommand::Unknown`] naming the tag, and
//! the state machine stops applying, saying so, instead of misreading it or failing to
//! read the whole batch of entries it came in. The leader proposes only commands every
//! member understands (see the fleet's protocol level), so this is the guard for a bug or
//! a data directory moved back to an older build, not a path the fleet takes.

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

use crate::Command;
use crate::frame::{self, FrameError};

/// A log entry's command, as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum LogCommand {
    /// A command this build knows.
    Known(Command),
    /// A command written by a newer build: `tag` is its name (or the name of the command
    /// holding a value this build does not know).
    Unknown { tag: String, detail: String },
}

impl LogCommand {
    /// Decodes a command body, telling a command from the future from a corrupt one.
    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        match frame::decode_body::<Command>(body) {
            Ok(command) => Ok(LogCommand::Known(command)),
            Err(FrameError::Decode(err)) if is_unknown_variant(&err) => {
                let tag =
                    frame::decode_body::<std::collections::BTreeMap<String, IgnoredAny>>(body)
                        .ok()
                        .and_then(|map| map.into_keys().next())
                        .unwrap_or_else(|| "?".into());
                Ok(LogCommand::Unknown {
                    tag,
                    detail: err.to_string(),
                })
            }
            Err(err) => Err(err),
        }
    }

    /// The command, if this build knows it.
    pub fn known(&self) -> Option<&Command> {
        match self {
            LogCommand::Known(command) => Some(command),
            LogCommand::Unknown { .. } => None,
        }
    }
}

/// serde names a variant it does not know "unknown variant `X`, expected ..."; a test below
/// holds this build to that.
fn is_unknown_variant(err: &rmp_serde::decode::Error) -> bool {
    matches!(err, rmp_serde::decode::Error::Syntax(message) if message.starts_with("unknown variant"))
}

impl From<Command> for LogCommand {
    fn from(command: Command) -> Self {
        LogCommand::Known(command)
    }
}

impl std::fmt::Display for LogCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogCommand::Known(command) => write!(f, "{}", command.tag()),
            LogCommand::Unknown { tag, .. } => write!(f, "unknown command {tag}"),
        }
    }
}

impl Serialize for LogCommand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            LogCommand::Known(command) => {
                let body = frame::encode_body(command).map_err(ser::Error::custom)?;
                serializer.serialize_bytes(&body)
            }
            LogCommand::Unknown { tag, .. } => Err(ser::Error::custom(format!(
                "command {tag} is unknown to this build and is never written"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for LogCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Body;
        impl<'de> Visitor<'de> for Body {
            type Value = LogCommand;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an encoded command")
            }
            fn visit_bytes<E: de::Error>(self, body: &[u8]) -> Result<LogCommand, E> {
                LogCommand::decode(body).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LogCommand, A::Error> {
                let mut body = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    body.push(byte);
                }
                self.visit_bytes(&body)
            }
        }
        deserializer.deserialize_bytes(Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobId, MachineId};

    #[derive(Serialize)]
    enum Future {
        TeleportMachine { id: MachineId, to: String },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Entry {
        index: u64,
        payload: LogCommand,
        after: u32,
    }

    #[test]
    fn known_commands_round_trip_inside_an_entry() {
        let entry = Entry {
            index: 7,
            payload: Command::CancelJob {
                job: JobId(3),
                at_ms: 9,
            }
            .into(),
            after: 1,
        };
        let back: Entry = frame::decode(&frame::encode(&entry).unwrap()).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn a_command_from_a_newer_build_is_named_and_the_entry_still_reads() {
        #[derive(Serialize)]
        struct NewEntry {
            index: u64,
            payload: serde_bytes_like::Bytes,
            after: u32,
        }
        let body = frame::encode_body(&Future::TeleportMachine {
            id: MachineId(1),
            to: "mars".into(),
        })
        .unwrap();
        let frame = frame::encode(&NewEntry {
            index: 8,
            payload: serde_bytes_like::Bytes(body),
            after: 2,
        })
        .unwrap();
        let entry: Entry = frame::decode(&frame).unwrap();
        assert_eq!(entry.after, 2);
        match entry.payload {
            LogCommand::Unknown { tag, detail } => {
                assert_eq!(tag, "TeleportMachine");
                assert!(detail.contains("unknown variant"), "{detail}");
            }
            other => panic!("misread as {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_command_is_an_error() {
        let mut body = frame::encode_body(&Command::RemoveMachine { id: MachineId(1) }).unwrap();
        body.truncate(body.len() - 2);
        assert!(LogCommand::decode(&body).is_err());
    }

    /// Bytes serialized as MessagePack bin, as `LogCommand` writes its body.
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }
}
