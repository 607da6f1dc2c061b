//! Sealed gossip on real UDP sockets (127.0.0.1, OS-assigned ports): what strangers send is
//! dropped unanswered and counted, a captured datagram is not accepted twice, and a fleet
//! keeps gossiping while its key rotates, and a fleet moves from plain to sealed gossip one
//! machine at a time.

mod crafted;
mod fleet;
mod insiders;
mod modes;
mod replay;
mod rotation;
mod strangers;
