//! Bolt message framing: messages are split into chunks of `u16` length and end with an empty chunk.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message the server accepts (Memgraph's own limit is of the same order).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed mid-message.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The message grew past [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    Oversized,
}

/// Reads one message. `Ok(None)` means the peer closed cleanly between messages.
/// Empty chunks before a message are NOOP keep-alives (Bolt 4.1+) and are skipped.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut msg = Vec::new();
    let mut first = true;
    loop {
        let mut hdr = [0u8; 2];
        if first {
            // Distinguish a clean close (EOF before any byte) from a truncated chunk header.
            match r.read(&mut hdr[..1]).await? {
                0 => return Ok(None),
                _ => r.read_exact(&mut hdr[1..]).await?,
            };
        } else {
            r.read_exact(&mut hdr).await?;
        }
        let len = u16::from_be_bytes(hdr) as usize;
        if len == 0 {
            if msg.is_empty() {
                first = true;
                continue;
            }
            return Ok(Some(msg));
        }
        first = false;
        if msg.len() + len > MAX_MESSAGE {
            return Err(FrameError::Oversized);
        }
        let start = msg.len();
        msg.resize(start + len, 0);
        r.read_exact(&mut msg[start..]).await?;
    }
}

/// Appends `msg` to `out` as chunks plus the terminating empty chunk.
pub fn frame_into(msg: &[u8], out: &mut Vec<u8>) {
    for chunk in msg.chunks(u16::MAX as usize) {
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&[0, 0]);
}

/// Writes one message and flushes.
pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    frame_into(msg, &mut out);
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_messages_are_split_and_reassembled() {
        let msg: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut framed = Vec::new();
        frame_into(&msg, &mut framed);
        // 200000 = 3 full chunks + remainder, each with a 2-byte header, plus the terminator.
        assert_eq!(framed.len(), msg.len() + 4 * 2 + 2);
        let mut noop_then_msg = vec![0, 0];
        noop_then_msg.extend_from_slice(&framed);
        let mut r = noop_then_msg.as_slice();
        assert_eq!(read_message(&mut r).await.unwrap(), Some(msg));
        assert_eq!(read_message(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_chunk_is_an_error() {
        let mut r: &[u8] = &[0x00, 0x05, 1, 2];
        assert!(read_message(&mut r).await.is_err());
        let mut r: &[u8] = &[0x00];
        assert!(read_message(&mut r).await.is_err());
    }
}
