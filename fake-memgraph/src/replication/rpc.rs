//! Wire format between fake instances on the replication port: length-prefixed JSON frames.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::storage::{Commit, SnapshotImage};

/// Largest frame accepted (a full snapshot travels in one frame).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// A request from a MAIN to a replica. Every request names the MAIN's UUID; the replica refuses
/// requests from any MAIN but the one that last swapped its UUID in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Registration: the replica now follows `main_uuid`.
    SwapMainUuid {
        /// The registering MAIN.
        main_uuid: String,
    },
    /// Registration: align the default database UUID (adopted only by a clean replica).
    SystemRecovery {
        /// Sender.
        main_uuid: String,
        /// MAIN's database UUID.
        db_uuid: String,
    },
    /// Frequent check / timestamp query.
    Heartbeat {
        /// Sender.
        main_uuid: String,
        /// MAIN's database UUID.
        db_uuid: String,
    },
    /// Ship one committed transaction.
    AppendCommit {
        /// Sender.
        main_uuid: String,
        /// MAIN's database UUID.
        db_uuid: String,
        /// The commit.
        commit: Commit,
    },
    /// STRICT_SYNC phase 1: stage a transaction.
    PrepareCommit {
        /// Sender.
        main_uuid: String,
        /// MAIN's database UUID.
        db_uuid: String,
        /// The transaction.
        commit: Commit,
    },
    /// STRICT_SYNC phase 2: apply (`commit`) or drop the staged transaction.
    FinalizeCommit {
        /// Sender.
        main_uuid: String,
        /// MAIN's database UUID.
        db_uuid: String,
        /// Timestamp of the staged transaction.
        ts: i64,
        /// Apply or abort.
        commit: bool,
    },
    /// Full resync: replace the replica's storage.
    Snapshot {
        /// Sender.
        main_uuid: String,
        /// The image.
        image: SnapshotImage,
    },
}

/// What a replica reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Last durable timestamp.
    pub ts: i64,
    /// Current epoch.
    pub epoch: String,
    /// Epoch history.
    pub history: Vec<(String, i64)>,
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done; the replica's state afterwards.
    Ok(ReplicaInfo),
    /// Refused, with the replica's log message and (when it has one) its state.
    Failed {
        /// Why.
        reason: String,
        /// The replica's state, when known.
        info: Option<ReplicaInfo>,
    },
}

/// Frame I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Socket failure or EOF.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Frame larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    /// Undecodable JSON.
    #[error("bad frame: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean close before the frame started.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..]).await?,
    };
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_garbage() {
        let req = Request::Heartbeat { main_uuid: "m".into(), db_uuid: "d".into() };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame::<_, Request>(&mut r).await.unwrap(), Some(req));
        assert_eq!(read_frame::<_, Request>(&mut r).await.unwrap(), None);
        let mut bad: &[u8] = &[0, 0, 0, 2, b'{', b'x'];
        assert!(read_frame::<_, Request>(&mut bad).await.is_err());
        let mut huge: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(read_frame::<_, Request>(&mut huge).await, Err(FrameError::TooLarge(_))));
    }
}
