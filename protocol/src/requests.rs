//! Request ids and what the fleet remembers of them, so a write can be sent again safely.
//!
//! Every write gets a [`RequestId`] where it enters the fleet and travels to the leader as
//! [`Command::Request`](crate::Command::Request). The state machine keeps the ids it applied
//! lately in [`FleetState::requests`](crate::FleetState::requests), each with a compact
//! [`Recorded`] answer: a repeat is answered from it and not applied again. The table is
//! bounded by age and by count, pruned inside `apply` so every replica keeps the same ids.
//! Age counts from the `at_ms` of the newest request, so a machine whose clock runs far
//! ahead makes the ids before its write age out early; retries come within seconds, and
//! [`REQUESTS_KEPT`] bounds the table however fast writes come.

use std::fmt;

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, JobId, MachineId, ProtocolLevel, UnixMillis};

/// The protocol level that brought request ids: a fleet below it gets bare writes.
pub const REQUEST_LEVEL: ProtocolLevel = ProtocolLevel(3);

/// A write's id, made where it entered the fleet (128 random bits).
///
/// Encoded as its 16 bytes, big endian (what MessagePack writes for a `u128` too), so that
/// formats without 128-bit integers, JSON among them, can carry it.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u128);

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.to_be_bytes())
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = RequestId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a request id of 16 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<RequestId, E> {
                let bytes: [u8; 16] = bytes
                    .try_into()
                    .map_err(|_| E::invalid_length(bytes.len(), &self))?;
                Ok(RequestId(u128::from_be_bytes(bytes)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RequestId, A::Error> {
                let mut bytes = Vec::with_capacity(16);
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                self.visit_bytes(&bytes)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How long a request id is remembered, by the `at_ms` of the requests that follow it.
pub const REQUESTS_WINDOW_MS: UnixMillis = 10 * 60 * 1000;
/// Most request ids remembered; the oldest go first.
pub const REQUESTS_KEPT: usize = 100_000;

/// What a request was answered, small enough to keep many: records named by id are
/// answered again as they stand when the repeat applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Recorded {
    Done,
    Machine(MachineId),
    Job(JobId),
    Jobs(Vec<JobId>),
    Rejected {
        code: ErrorCode,
        message: String,
    },
    Batch(Vec<Recorded>),
    Submitted {
        job: JobId,
        created: bool,
    },
    CostReported {
        counted: bool,
    },
    /// A fleet-wide template, by name (see [`crate::levels::TEMPLATE_ORGS_LEVEL`]).
    Template(String),
    /// An org's template.
    OwnedTemplate {
        org: String,
        name: String,
    },
}

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The `at_ms` its request carried.
    pub at_ms: UnixMillis,
    pub answer: Recorded,
}

/// The requests applied lately: by id, and in the order they applied. Persistent maps, like
/// the rest of the state that grows with use, so a snapshot's copy shares them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    seen: OrdMap<RequestId, Seen>,
    order: Vector<RequestId>,
}

impl Requests {
    /// What `id` was answered, if it applied within the window.
    pub fn get(&self, id: RequestId) -> Option<&Seen> {
        self.seen.get(&id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Remembers `id` (applied at `at_ms`), then forgets, oldest first, those past
    /// `kept` or more than `window_ms` older than `at_ms`.
    pub fn record(&mut self, id: RequestId, seen: Seen, kept: usize, window_ms: UnixMillis) {
        let now = seen.at_ms;
        if self.seen.insert(id, seen).is_none() {
            self.order.push_back(id);
        }
        while let Some(oldest) = self.order.front().copied() {
            let too_many = self.order.len() > kept;
            let too_old = self
                .seen
                .get(&oldest)
                .is_none_or(|s| s.at_ms.saturating_add(window_ms) < now);
            if !too_many && !too_old {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at_ms: UnixMillis) -> Seen {
        Seen {
            at_ms,
            answer: Recorded::Done,
        }
    }

    #[test]
    fn the_oldest_go_first_by_count_and_by_age() {
        let mut requests = Requests::default();
        for i in 0..5 {
            requests.record(RequestId(i), seen(1_000 + i as u64), 3, 10_000);
        }
        assert_eq!(requests.len(), 3);
        assert!(requests.get(RequestId(1)).is_none());
        assert!(requests.get(RequestId(2)).is_some());

        // A request past the window of the others makes them go.
        requests.record(RequestId(9), seen(20_000), 3, 10_000);
        assert_eq!(requests.len(), 1);
        assert!(requests.get(RequestId(9)).is_some());
    }
}

#[cfg(test)]
mod id_encoding {
    use super::RequestId;
    use crate::frame;

    #[test]
    fn an_id_encodes_as_a_u128_does_and_travels_in_json() {
        let raw = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(
            frame::encode_body(&RequestId(raw)).unwrap(),
            frame::encode_body(&raw).unwrap()
        );
        let back: RequestId = frame::decode_body(&frame::encode_body(&raw).unwrap()).unwrap();
        assert_eq!(back, RequestId(raw));
        let json = serde_json::to_string(&RequestId(raw)).unwrap();
        assert_eq!(
            serde_json::from_str::<RequestId>(&json).unwrap(),
            RequestId(raw)
        );
    }
}
