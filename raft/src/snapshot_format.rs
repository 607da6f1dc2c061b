//! The bytes of a fleet snapshot: `snapshot.bin`, what a leader sends a lagging follower,
//! and what `shoal snapshot save` writes.
//!
//! ```text
//!  frame header (magic, format, schema)
//!  meta length (u64, big endian)   meta (MessagePack: last log id, membership, id)
//!  state (MessagePack: FleetState)
//!  SHA-256 of everything above (32 bytes)
//! ```
//!
//! The metadata comes first and alone, so reading it does not decode the state; the digest
//! at the end catches a truncated or damaged file before any of it is believed.

use openraft::SnapshotMeta;
use sha2::{Digest, Sha256};
use shoal_protocol::frame;
use shoal_protocol::{FleetState, MemberAddr};

use crate::state_machine::StoredSnapshot;
use crate::{FleetConfig, StoreError};

type Meta<C> = SnapshotMeta<<C as openraft::RaftTypeConfig>::NodeId, MemberAddr>;

const LENGTH_LEN: usize = 8;
const DIGEST_LEN: usize = 32;

/// Encodes a snapshot. This walks the whole state: call it off the apply path.
pub fn encode<C: FleetConfig>(snapshot: &StoredSnapshot<C>) -> Result<Vec<u8>, StoreError> {
    let meta = frame::encode_body(&snapshot.meta)?;
    let mut out = Vec::with_capacity(1024);
    frame::write_header(&mut out);
    out.extend_from_slice(&(meta.len() as u64).to_be_bytes());
    out.extend_from_slice(&meta);
    frame::encode_body_into(&snapshot.state, &mut out)?;
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// The parts of an encoded snapshot, checked for shape but not decoded.
struct Parts<'a> {
    meta: &'a [u8],
    state: &'a [u8],
    digest: &'a [u8],
    covered: &'a [u8],
}

fn split(bytes: &[u8]) -> Result<Parts<'_>, StoreError> {
    let (_schema, body) = frame::read_header(bytes)?;
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
    let parts = split(bytes)?;
    if Sha256::digest(parts.covered).as_slice() != parts.digest {
        return Err(StoreError::Snapshot(
            "the snapshot's checksum does not match: the file is damaged or truncated".into(),
        ));
    }
    let meta = frame::decode_body(parts.meta)?;
    let mut state: FleetState = frame::decode_body(parts.state)?;
    state.rebuild_open_jobs();
    Ok(StoredSnapshot { meta, state })
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
    use crate::TypeConfig;

    fn snapshot() -> StoredSnapshot {
        let mut state = FleetState::default();
        let job = JobRecord::queued(JobId(4), JobSpec::default(), JobTarget::Any, 1, 4);
        state.jobs.insert(job.id, job);
        state.rebuild_open_jobs();
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
