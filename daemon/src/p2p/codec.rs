//! The request-response codec: a u32 length prefix, then a versioned frame.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::frame;

use super::messages::{PeerRequest, PeerResponse};

/// The protocol name peers negotiate.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/rpc/1");
/// Largest message accepted (a snapshot chunk or a batch of log entries).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct PeerCodec;

/// A message this side would not send: it encodes to more than [`MAX_MESSAGE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("peer message of {bytes} bytes is over the {MAX_MESSAGE_BYTES} byte limit")]
pub struct TooLarge {
    pub bytes: usize,
}

impl TooLarge {
    /// The `TooLarge` inside an I/O error from the codec, if that is what it is.
    pub fn within(err: &io::Error) -> Option<&TooLarge> {
        err.get_ref()?.downcast_ref()
    }
}

async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(io: &mut R) -> io::Result<T> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer message of {len} bytes is over the {MAX_MESSAGE_BYTES} byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    frame::decode(&buf).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(io: &mut W, value: &T) -> io::Result<()> {
    // Encoded once, after room for the length, which is filled in after.
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&[0; 4]);
    frame::write_header(&mut out);
    frame::encode_body_to(value, &mut out)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    let bytes = out.len() - 4;
    if bytes > MAX_MESSAGE_BYTES {
        let too_large = TooLarge { bytes };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, too_large));
    }
    out[..4].copy_from_slice(&(bytes as u32).to_be_bytes());
    io.write_all(&out).await?;
    io.close().await
}

impl libp2p::request_response::Codec for PeerCodec {
    type Protocol = StreamProtocol;
    type Request = PeerRequest;
    type Response = PeerResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PeerRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PeerResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: PeerRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: PeerResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::Command;
    use shoal_protocol::MachineId;

    #[tokio::test]
    async fn frames_round_trip_and_refuse_oversized_messages() {
        let req = PeerRequest::Forward(Command::RemoveMachine { id: MachineId(7) });
        let mut buf = Vec::new();
        write_frame(&mut futures::io::Cursor::new(&mut buf), &req)
            .await
            .unwrap();
        let back: PeerRequest = read_frame(&mut futures::io::Cursor::new(&buf))
            .await
            .unwrap();
        assert!(
            matches!(back, PeerRequest::Forward(Command::RemoveMachine { id }) if id == MachineId(7))
        );

        // Too large to send: refused before a byte goes out, saying how large.
        let oversized = PeerRequest::Forward(Command::LabelMachine {
            id: MachineId(7),
            set: Default::default(),
            remove: vec!["y".repeat(MAX_MESSAGE_BYTES)],
        });
        let mut sent = Vec::new();
        let err = write_frame(&mut futures::io::Cursor::new(&mut sent), &oversized)
            .await
            .unwrap_err();
        assert!(TooLarge::within(&err).is_some_and(|t| t.bytes > MAX_MESSAGE_BYTES));
        assert!(sent.is_empty());

        let huge = u32::MAX.to_be_bytes();
        let err = read_frame::<PeerRequest, _>(&mut futures::io::Cursor::new(&huge[..]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
