//! [`LogCommand`]: a [`Command`] as a log entry carries it, a tag and a payload.
//!
//! The command travels as one nested MessagePack body (its variant name is the tag, its
//! fields the payload). The entry keeps that body as bytes from the moment the leader
//! proposes it until a replica applies it: the log, replication and the peer codec copy
//! it, none of them decodes or re-encodes it, and a clone shares it. [`LogCommand::decode`]
//! reads it when it is applied. A replica that meets a command it does not know reads it
//! as [`Decoded::Unknown`] naming the tag, and the state machine stops applying, saying
//! so, instead of misreading it. The leader proposes only commands every member
//! understands (see the fleet's protocol level), so this is the guard for a bug or a data
//! directory moved back to an older build, not a path the fleet takes.

use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::Command;
use crate::frame::{self, FrameError};

/// A command's encoded body, as the log holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct LogCommand {
    body: Arc<[u8]>,
}

/// What a [`LogCommand`] holds, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Known(Command),
    /// A command this build does not know, by its tag, with the decoder's message.
    Unknown {
        tag: String,
        detail: String,
    },
}

impl LogCommand {
    /// Encodes `command` once, for good.
    pub fn new(command: &Command) -> Result<Self, FrameError> {
        Ok(LogCommand {
            body: frame::encode_body(command)?.into(),
        })
    }

    /// A body as another build wrote it (tests of upgrades write commands this build
    /// does not have).
    pub fn from_body(body: Vec<u8>) -> Self {
        LogCommand { body: body.into() }
    }

    /// Reads the command; an unknown tag is [`Decoded::Unknown`], damaged bytes an error.
    pub fn decode(&self) -> Result<Decoded, FrameError> {
        let body = &self.body[..];
        match frame::decode_body::<Command>(body) {
            Ok(command) => Ok(Decoded::Known(command)),
            Err(FrameError::Decode(err)) if is_unknown_variant(&err) => {
                let tag =
                    frame::decode_body::<std::collections::BTreeMap<String, IgnoredAny>>(body)
                        .ok()
                        .and_then(|map| map.into_keys().next())
                        .unwrap_or_else(|| "?".into());
                Ok(Decoded::Unknown {
                    tag,
                    detail: err.to_string(),
                })
            }
            Err(err) => Err(err),
        }
    }
}

fn is_unknown_variant(err: &rmp_serde::decode::Error) -> bool {
    matches!(err, rmp_serde::decode::Error::Syntax(message) if message.starts_with("unknown variant"))
}

impl From<Command> for LogCommand {
    /// Encodes `command`. Encoding Shoal's own types into memory does not fail (every map
    /// key is a string or a number, and a `Vec` takes any length).
    fn from(command: Command) -> Self {
        LogCommand::new(&command).expect("a command encodes")
    }
}

impl std::fmt::Debug for LogCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.decode() {
            Ok(Decoded::Known(command)) => write!(f, "{command:?}"),
            Ok(Decoded::Unknown { tag, .. }) => write!(f, "unknown command {tag}"),
            Err(err) => write!(f, "damaged command ({} bytes): {err}", self.body.len()),
        }
    }
}

impl std::fmt::Display for LogCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command ({} bytes)", self.body.len())
    }
}

impl Serialize for LogCommand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.body)
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
                Ok(LogCommand { body: body.into() })
            }
            fn visit_byte_buf<E: de::Error>(self, body: Vec<u8>) -> Result<LogCommand, E> {
                Ok(LogCommand::from_body(body))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LogCommand, A::Error> {
                let mut body = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    body.push(byte);
                }
                Ok(LogCommand::from_body(body))
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
        assert_eq!(
            back.payload.decode().unwrap(),
            Decoded::Known(Command::CancelJob {
                job: JobId(3),
                at_ms: 9
            })
        );
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
        match entry.payload.decode().unwrap() {
            Decoded::Unknown { tag, detail } => {
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
        assert!(LogCommand::from_body(body).decode().is_err());
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
