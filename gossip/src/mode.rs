//! Whether a node seals its datagrams, so a fleet can move from plain chitchat to sealed
//! gossip one machine at a time: what each [`GossipMode`] sends and reads, how a datagram
//! shows which form it is in, and what an upgrading node remembers of each peer.
//!
//! ```text
//!  mode    sends                                       reads
//!  Plain   chitchat's bytes                            chitchat's bytes (a sealed one fails
//!                                                      chitchat's decoder, as on a build
//!                                                      without sealing)
//!  Open    to each peer the form it last sent here,    both
//!          both to a peer not heard from lately
//!  Sealed  sealed                                      sealed only: plain is dropped ("plain")
//! ```
//!
//! A sealed datagram starts with [`datagram::VERSION`] (1); a plain one with chitchat's
//! magic number, whose first byte (0x53 in chitchat 0.13) is not 1, so one byte tells them
//! apart (checked when the socket opens).
//!
//! An `Open` node sends both forms only to peers it has not heard from within
//! [`PEER_FORM_TTL`]: a newcomer so reaches a fleet that already seals (which drops the
//! plain copy) and one that does not yet (where a build without sealing drops the sealed
//! copy), and each answer tells it which form that peer reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::datagram;

/// How long an `Open` node trusts the form a peer last sent it.
pub const PEER_FORM_TTL: Duration = Duration::from_secs(30);
/// Peers an `Open` node remembers; past it, forgotten peers get both forms again.
const MAX_PEERS: usize = 4_096;

/// Whether this node seals what it sends and refuses what is not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GossipMode {
    /// A build without sealing: sends chitchat's bytes, and reads only those. Tests play an
    /// older build with it.
    Plain,
    /// Upgrading: reads both forms, and sends each peer the form it speaks.
    Open,
    /// Sends and reads sealed datagrams only.
    Sealed,
}

impl GossipMode {
    pub const ALL: [GossipMode; 3] = [GossipMode::Plain, GossipMode::Open, GossipMode::Sealed];

    /// A stable lowercase name, e.g. for a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            GossipMode::Plain => "plain",
            GossipMode::Open => "open",
            GossipMode::Sealed => "sealed",
        }
    }
}

/// The form a datagram is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Plain,
    Sealed,
}

/// The form of `datagram`, if it is either; `magic` is chitchat's first two bytes.
pub(crate) fn form_of(datagram: &[u8], magic: [u8; 2]) -> Option<Form> {
    if datagram.first() == Some(&datagram::VERSION) {
        Some(Form::Sealed)
    } else if datagram.starts_with(&magic) {
        Some(Form::Plain)
    } else {
        None
    }
}

/// The forms a datagram to a peer goes out in; the last one is what an `Open` peer
/// remembers of this node.
pub(crate) fn forms_to_send(mode: GossipMode, heard: Option<Form>) -> &'static [Form] {
    match (mode, heard) {
        (GossipMode::Plain, _) => &[Form::Plain],
        (GossipMode::Sealed, _) => &[Form::Sealed],
        (GossipMode::Open, Some(Form::Plain)) => &[Form::Plain],
        (GossipMode::Open, Some(Form::Sealed)) => &[Form::Sealed],
        (GossipMode::Open, None) => &[Form::Plain, Form::Sealed],
    }
}

/// What an `Open` node last heard from each peer address, and when.
#[derive(Debug, Default)]
pub(crate) struct PeerForms(HashMap<SocketAddr, (Form, Instant)>);

impl PeerForms {
    pub(crate) fn heard(&mut self, from: SocketAddr, form: Form, now: Instant) {
        if self.0.len() >= MAX_PEERS && !self.0.contains_key(&from) {
            self.0
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < PEER_FORM_TTL);
            if self.0.len() >= MAX_PEERS {
                self.0.clear();
            }
        }
        self.0.insert(from, (form, now));
    }

    /// The form `peer` last sent, if it did within [`PEER_FORM_TTL`].
    pub(crate) fn last(&self, peer: SocketAddr, now: Instant) -> Option<Form> {
        self.0
            .get(&peer)
            .filter(|(_, at)| now.saturating_duration_since(*at) < PEER_FORM_TTL)
            .map(|(form, _)| *form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 2] = 45_139u16.to_le_bytes();

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn one_byte_tells_the_forms_apart() {
        assert_ne!(MAGIC[0], datagram::VERSION);
        assert_eq!(
            form_of(&[datagram::VERSION, 0, 0], MAGIC),
            Some(Form::Sealed)
        );
        assert_eq!(
            form_of(&[MAGIC[0], MAGIC[1], 0, 0], MAGIC),
            Some(Form::Plain)
        );
        assert_eq!(form_of(&[MAGIC[0]], MAGIC), None);
        assert_eq!(form_of(b"", MAGIC), None);
        assert_eq!(form_of(&[2, 0, 0], MAGIC), None);
    }

    #[test]
    fn each_mode_sends_what_its_peers_read() {
        for heard in [None, Some(Form::Plain), Some(Form::Sealed)] {
            assert_eq!(forms_to_send(GossipMode::Plain, heard), [Form::Plain]);
            assert_eq!(forms_to_send(GossipMode::Sealed, heard), [Form::Sealed]);
        }
        let open = |heard| forms_to_send(GossipMode::Open, heard);
        assert_eq!(open(Some(Form::Plain)), [Form::Plain]);
        assert_eq!(open(Some(Form::Sealed)), [Form::Sealed]);
        assert_eq!(open(None), [Form::Plain, Form::Sealed]);
    }

    #[test]
    fn the_last_form_heard_counts_until_it_is_old() {
        let start = Instant::now();
        let mut forms = PeerForms::default();
        assert_eq!(forms.last(addr(1), start), None);
        forms.heard(addr(1), Form::Plain, start);
        forms.heard(addr(2), Form::Sealed, start);
        assert_eq!(forms.last(addr(1), start), Some(Form::Plain));
        forms.heard(addr(1), Form::Sealed, start + Duration::from_secs(1));
        assert_eq!(forms.last(addr(1), start), Some(Form::Sealed));
        let later = start + PEER_FORM_TTL;
        assert_eq!(forms.last(addr(2), later), None);
        assert_eq!(forms.last(addr(1), later), Some(Form::Sealed));
    }

    #[test]
    fn the_memory_stays_bounded() {
        let start = Instant::now();
        let mut forms = PeerForms::default();
        for port in 0..MAX_PEERS as u16 {
            forms.heard(addr(port), Form::Plain, start);
        }
        // Full of fresh entries: it starts over rather than grow.
        let now = start + Duration::from_secs(1);
        forms.heard(addr(u16::MAX), Form::Sealed, now);
        assert_eq!(forms.0.len(), 1);
        assert_eq!(forms.last(addr(u16::MAX), now), Some(Form::Sealed));
        // Old entries make room first.
        let mut forms = PeerForms::default();
        for port in 0..MAX_PEERS as u16 {
            let at = if port == 0 { now } else { start };
            forms.heard(addr(port), Form::Plain, at);
        }
        let later = start + PEER_FORM_TTL;
        forms.heard(addr(u16::MAX), Form::Sealed, later);
        assert_eq!(forms.0.len(), 2);
        assert_eq!(forms.last(addr(0), later), Some(Form::Plain));
    }
}
