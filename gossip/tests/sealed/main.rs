//! Sealed gossip on real UDP sockets (127.0.0.1, OS-assigned ports): what strangers send is
//! dropped unanswered and counted, a captured datagram is not accepted twice, and a fleet
//! keeps gossiping while its key rotates.

mod crafted;
mod fleet;
mod replay;
mod rotation;
mod strangers;
