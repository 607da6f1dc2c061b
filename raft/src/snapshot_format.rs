//! The bytes of a fleet snapshot: `snapshot.bin`, what a leader sends a lagging follower,
//! and what `shoal snapshot save` writes.
//!
//! ```text
//!  frame header (magic, format, schema)
//!  meta length (u64, big endian)   meta (MessagePack: last log id, membership, id,
//!                                        taken_at_ms)
//!  state (MessagePack: FleetState)
//!  SHA-256 of everything above (32 bytes)
//! ```
//!
//! The metadata comes first and alone, so reading it does not decode the state; the digest
//! at the end catches a truncated or damaged file before any of it is believed. The meta
//! carries `taken_at_ms`, when the copy was encoded, next to openraft's fields; a reader
//! that does not know it skips it, and a file without it reads as "not known".

use std::io::Write;

use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoal_protocol::frame;
use shoal_protocol::{FleetState, MemberAddr};

use crate::state_machine::StoredSnapshot;
use crate::{FleetConfig, StoreError, TypeConfig};

type Meta<C> = SnapshotMeta<<C as openraft::RaftTypeConfig>::NodeId, MemberAddr>;

const LENGTH_LEN: usize = 8;
const DIGEST_LEN: usize = 32;

/// The meta section as written: openraft's fields, then when the copy was encoded.
#[derive(Serialize)]
struct MetaOut<'a, M: Serialize> {
    #[serde(flatten)]
    meta: &'a M,
    taken_at_ms: u64,
}

/// The part of the meta section openraft does not know.
#[derive(Deserialize)]
struct Stamp {
    #[serde(default)]
    taken_at_ms: Option<u64>,
}

/// Encodes a snapshot, stamped with the time now. This walks the whole state: call it off
/// the apply path.
pub fn encode<C: FleetConfig>(snapshot: &StoredSnapshot<C>) -> Result<Vec<u8>, StoreError> {
    encode_taken_at(snapshot, shoal_protocol::now_ms())
}

/// Encodes a snapshot stamped as taken at `taken_at_ms` (milliseconds since the epoch).
pub fn encode_taken_at<C: FleetConfig>(
    snapshot: &StoredSnapshot<C>,
    taken_at_ms: u64,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(1024);
    encode_to(snapshot, taken_at_ms, &mut out)
        .map_err(|e| StoreError::Snapshot(format!("cannot encode the snapshot: {e}")))?;
    Ok(out)
}

/// Encodes a snapshot stamped as taken at `taken_at_ms` into `out` as it goes, so no
/// buffer ever holds the whole of it (a large state's snapshot is hundreds of megabytes:
/// growing one buffer that far stalled the node's other threads); returns the bytes
/// written. `out` is flushed at the end.
pub fn encode_to<C: FleetConfig, W: Write>(
    snapshot: &StoredSnapshot<C>,
    taken_at_ms: u64,
    out: W,
) -> std::io::Result<u64> {
    let meta = frame::encode_body(&MetaOut {
        meta: &snapshot.meta,
        taken_at_ms,
    })
    .map_err(std::io::Error::other)?;
    let mut header = Vec::new();
    frame::write_header(&mut header);
    let mut out = Digesting {
        inner: out,
        digest: Sha256::new(),
        written: 0,
    };
    out.write_all(&header)?;
    out.write_all(&(meta.len() as u64).to_be_bytes())?;
    out.write_all(&meta)?;
    frame::encode_body_to(&snapshot.state, &mut out).map_err(std::io::Error::other)?;
    let Digesting {
        mut inner,
        digest,
        written,
    } = out;
    inner.write_all(&digest.finalize())?;
    inner.flush()?;
    Ok(written + DIGEST_LEN as u64)
}

/// A writer that passes everything on and hashes it, for the digest that ends a snapshot.
struct Digesting<W> {
    inner: W,
    digest: Sha256,
    written: u64,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The parts of an encoded snapshot, checked for shape but not decoded.
struct Parts<'a> {
    schema: u16,
    meta: &'a [u8],
    state: &'a [u8],
    digest: &'a [u8],
    covered: &'a [u8],
}

fn split(bytes: &[u8]) -> Result<Parts<'_>, StoreError> {
    let (schema, body) = frame::read_header(bytes)?;
    let truncated = || StoreError::Snapshot("the snapshot is truncated".into());
    if body.len() < LENGTH_LEN + DIGEST_LEN {
        return Err(truncated());
    }
    let (length, rest) = body.split_at(LENGTH_LEN);
    let meta_len = u64::from_be_bytes(length.try_into().expect("8 bytes"));
    let meta_len = usize::try_from(meta_len).map_err(|_| truncated())?;
    if meta_len > rest.len() - DIGEST_LEN {
        return Err(truncated());
    }
    let (meta, rest) = rest.split_at(meta_len);
    let (state, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    Ok(Parts {
        schema,
        meta,
        state,
        digest,
        covered: &bytes[..bytes.len() - DIGEST_LEN],
    })
}

/// Reads the metadata alone: neither the state nor the digest is looked at.
pub fn read_meta<C: FleetConfig>(bytes: &[u8]) -> Result<Meta<C>, StoreError> {
    Ok(frame::decode_body(split(bytes)?.meta)?)
}

/// Checks the digest and decodes the whole snapshot.
pub fn decode<C: FleetConfig>(bytes: &[u8]) -> Result<StoredSnapshot<C>, StoreError> {
    open(bytes).map(|opened| opened.snapshot)
}

/// A snapshot checked and decoded whole, with what its file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened<C: FleetConfig = TypeConfig> {
    /// The schema its frame header names.
    pub schema: u16,
    /// When the copy was encoded (ms since the epoch), if the file says.
    pub taken_at_ms: Option<u64>,
    /// The SHA-256 that closes it, in hex; it matched.
    pub sha256: String,
    pub snapshot: StoredSnapshot<C>,
}

/// Checks the digest and decodes the whole snapshot with its stamp and checksum.
pub fn open<C: FleetConfig>(bytes: &[u8]) -> Result<Opened<C>, StoreError> {
    let parts = split(bytes)?;
    if Sha256::digest(parts.covered).as_slice() != parts.digest {
        return Err(StoreError::Snapshot(
            "the snapshot's checksum does not match: the file is damaged or truncated".into(),
        ));
    }
    let meta = frame::decode_body(parts.meta)?;
    let Stamp { taken_at_ms } = frame::decode_body(parts.meta)?;
    let mut state: FleetState = frame::decode_body(parts.state)?;
    state.rebuild_indexes();
    Ok(Opened {
        schema: parts.schema,
        taken_at_ms,
        sha256: hex::encode(parts.digest),
        snapshot: StoredSnapshot { meta, state },
    })
}

/// The SHA-256 that closes an encoded snapshot, in hex (what `inspect` prints).
pub fn digest_hex(bytes: &[u8]) -> Result<String, StoreError> {
    Ok(hex::encode(split(bytes)?.digest))
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};
    use shoal_protocol::{JobId, JobRecord, JobSpec, JobTarget, MachineId};

    use super::*;

    fn snapshot() -> StoredSnapshot {
        let mut state = FleetState::default();
        let job = JobRecord::queued(JobId(4), JobSpec::default(), JobTarget::Any, 1, 4);
        state.jobs.insert(job.id, job);
        state.rebuild_indexes();
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(2, MachineId(1)), 9)),
                last_membership: Default::default(),
                snapshot_id: "2-9-0".into(),
            },
            state,
        }
    }

    #[test]
    fn round_trips_and_reads_the_meta_alone() {
        let snapshot = snapshot();
        let bytes = encode(&snapshot).unwrap();
        assert_eq!(read_meta::<TypeConfig>(&bytes).unwrap(), snapshot.meta);
        assert_eq!(decode::<TypeConfig>(&bytes).unwrap(), snapshot);
        assert_eq!(digest_hex(&bytes).unwrap().len(), 64);
    }

    #[test]
    fn the_stamp_and_checksum_come_back_and_plain_meta_readers_skip_the_stamp() {
        let snapshot = snapshot();
        let bytes = encode_taken_at(&snapshot, 1_700_000_000_123).unwrap();
        let opened = open::<TypeConfig>(&bytes).unwrap();
        assert_eq!(opened.taken_at_ms, Some(1_700_000_000_123));
        assert_eq!(opened.schema, frame::SCHEMA_VERSION);
        assert_eq!(opened.sha256, digest_hex(&bytes).unwrap());
        assert_eq!(opened.snapshot, snapshot);
        // A file written before the stamp existed: the meta alone, as openraft has it.
        let mut old = Vec::new();
        frame::write_header(&mut old);
        let meta = frame::encode_body(&snapshot.meta).unwrap();
        old.extend_from_slice(&(meta.len() as u64).to_be_bytes());
        old.extend_from_slice(&meta);
        frame::encode_body_to(&snapshot.state, &mut old).unwrap();
        let digest = Sha256::digest(&old);
        old.extend_from_slice(&digest);
        let opened = open::<TypeConfig>(&old).unwrap();
        assert_eq!(opened.taken_at_ms, None);
        assert_eq!(opened.snapshot, snapshot);
    }

    #[test]
    fn damage_and_truncation_are_named() {
        let bytes = encode(&snapshot()).unwrap();
        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x40;
        let err = decode::<TypeConfig>(&damaged).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        for keep in [0, 3, 10, bytes.len() - 1] {
            assert!(decode::<TypeConfig>(&bytes[..keep]).is_err(), "kept {keep}");
        }
        let err = decode::<TypeConfig>(b"PK\x03\x04 a zip file")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Shoal"), "{err}");
    }
}
