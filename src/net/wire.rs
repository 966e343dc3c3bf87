//! Frames over a QUIC stream: the async shell around the pure [`frame`] codec.

use crate::hub::frame::{self, Frame, FrameError};

/// A connection-level failure.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer sent bytes that are not a frame.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// Reading from the stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing to the stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream ended in the middle of a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
}

/// Reads whole frames from a receive stream.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    max: usize,
}

/// The largest frame a peer may send before it is known and its role checked: a `Hello`.
pub const MAX_HELLO_FRAME: usize = 1024;
/// The largest frame a subscriber sends (`Subscribe`, `Ack`, `Close`).
pub const MAX_SUBSCRIBER_FRAME: usize = 4096;

impl FrameReader {
    /// A reader over `recv`.
    pub fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            buf: Vec::new(),
            max: frame::MAX_FRAME_LEN,
        }
    }

    /// Sets the largest frame accepted from now on; a larger one is an error as soon as its
    /// length prefix arrives, before its body is buffered.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The next frame, or `None` when the peer finished the stream between frames.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered.
    pub async fn next(&mut self) -> Result<Option<Frame>, WireError> {
        loop {
            if let Some(n) = frame::check_within(&self.buf, self.max)? {
                let f = frame::decode(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(Some(f?));
            }
            // Never more than the rest of the largest acceptable frame.
            let room = self.max.saturating_sub(self.buf.len()).max(1);
            match self.recv.read_chunk(room.min(1 << 20), true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(WireError::Truncated),
            }
        }
    }
}

/// Encodes and writes one frame.
pub async fn send(stream: &mut quinn::SendStream, f: &Frame) -> Result<(), WireError> {
    let bytes = frame::to_bytes(f)?;
    stream.write_all(&bytes).await?;
    Ok(())
}

/// Encodes several frames into one write.
pub async fn send_all(stream: &mut quinn::SendStream, frames: &[Frame]) -> Result<(), WireError> {
    let mut bytes = Vec::new();
    for f in frames {
        frame::encode(f, &mut bytes)?;
    }
    stream.write_all(&bytes).await?;
    Ok(())
}
