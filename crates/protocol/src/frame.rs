//! Framing: a little-endian `u32` length, then that many bytes of postcard.
//!
//! [`write_msg`] / [`read_msg`] are the blocking forms; [`FrameBuf`] is the
//! incremental decoder an event loop feeds with whatever bytes arrived.
//! Lengths are checked against a limit before any buffer for the body is
//! allocated, so a peer cannot make us reserve memory it never sends.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MAX_FRAME;

const HEADER: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed message: {0}")]
    Decode(postcard::Error),
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    #[error("connection closed by the peer")]
    Closed,
}

/// Encodes `msg` as one frame (header included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = postcard::to_extend(msg, vec![0u8; HEADER]).map_err(FrameError::Encode)?;
    let len = buf.len() - HEADER;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME,
        });
    }
    // `len <= MAX_FRAME < u32::MAX`, checked just above.
    buf[..HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Encodes `msg` as one frame into `buf` (no allocation: for code that
/// must not touch the heap); the frame is the returned prefix of `buf`.
pub fn encode_into<'a, T: Serialize>(msg: &T, buf: &'a mut [u8]) -> Result<&'a [u8], FrameError> {
    if buf.len() < HEADER {
        return Err(FrameError::Encode(postcard::Error::SerializeBufferFull));
    }
    let len = postcard::to_slice(msg, &mut buf[HEADER..])
        .map_err(FrameError::Encode)?
        .len();
    buf[..HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(&buf[..HEADER + len])
}

/// Decodes one frame body; trailing bytes are an error (they would mean the
/// two sides disagree about the message layout).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(body).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

/// Writes `msg` as one frame with a single `write_all`, so that with
/// `TCP_NODELAY` a message leaves in one segment.
pub fn write_msg<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads exactly one frame. A stream that ends cleanly between frames gives
/// [`FrameError::Closed`]; one that ends inside a frame gives an
/// `UnexpectedEof` I/O error.
pub fn read_msg<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(truncated()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated()
        } else {
            e.into()
        }
    })?;
    decode(&body)
}

fn truncated() -> FrameError {
    FrameError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "stream ended inside a frame",
    ))
}

/// Incremental frame decoder: [`push`](Self::push) bytes as they arrive,
/// [`pop`](Self::pop) complete messages.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    limit: usize,
}

impl Default for FrameBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuf {
    /// A decoder accepting frames up to [`MAX_FRAME`].
    pub fn new() -> Self {
        Self::with_limit(MAX_FRAME)
    }

    /// A decoder accepting frames up to `limit` bytes (e.g. a small limit
    /// for unauthenticated peers).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            limit: limit.min(MAX_FRAME),
        }
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_FRAME);
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes complete the next header or frame (at least 1).
    /// A reader that never asks for more than this never reads past the
    /// frame it is decoding, so several readers may share one socket in turn.
    pub fn wanted(&self) -> usize {
        let have = self.buffered();
        if have < HEADER {
            return HEADER - have;
        }
        let len = self.header_len().unwrap_or(0);
        (HEADER + len).saturating_sub(have).max(1)
    }

    fn header_len(&self) -> Option<usize> {
        let h = self.buf.get(self.start..self.start + HEADER)?;
        Some(u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }

    /// The next complete frame body, if one is buffered. An oversized
    /// length is reported as soon as its header is complete.
    pub fn pop_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.header_len() else {
            return Ok(None);
        };
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        if self.buffered() < HEADER + len {
            return Ok(None);
        }
        let body_start = self.start + HEADER;
        let body = self.buf[body_start..body_start + len].to_vec();
        self.start = body_start + len;
        self.compact();
        Ok(Some(body))
    }

    /// The next complete message, if one is buffered.
    pub fn pop<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.pop_frame()? {
            Some(body) => decode(&body).map(Some),
            None => Ok(None),
        }
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CheckpointOptions, FromCoord, ToCoord};

    #[test]
    fn encode_into_matches_encode() {
        let msg = ToCoord::Forked {
            spare: 7,
            real_pid: 1234,
            virtual_pid: 1234,
        };
        let mut buf = [0u8; 64];
        assert_eq!(
            encode_into(&msg, &mut buf).unwrap(),
            &encode(&msg).unwrap()[..]
        );
        let mut small = [0u8; 5];
        assert!(encode_into(&msg, &mut small).is_err());
    }

    fn sample() -> FromCoord {
        FromCoord::Checkpoint {
            generation: 7,
            options: CheckpointOptions {
                dir: "/tmp/x".into(),
                compress: Some(true),
                sync: None,
            },
        }
    }

    #[test]
    fn round_trip_blocking() {
        let mut wire = Vec::new();
        write_msg(&mut wire, &sample()).unwrap();
        write_msg(&mut wire, &ToCoord::Status).unwrap();
        let mut r = &wire[..];
        assert_eq!(read_msg::<_, FromCoord>(&mut r).unwrap(), sample());
        assert_eq!(read_msg::<_, ToCoord>(&mut r).unwrap(), ToCoord::Status);
        assert!(matches!(
            read_msg::<_, ToCoord>(&mut r),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn round_trip_incremental_byte_by_byte() {
        let mut wire = encode(&sample()).unwrap();
        wire.extend(encode(&ToCoord::Kill).unwrap());
        let mut fb = FrameBuf::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for b in &wire {
            assert!(fb.wanted() >= 1);
            fb.push(std::slice::from_ref(b));
            while let Some(f) = fb.pop_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(decode::<FromCoord>(&out[0]).unwrap(), sample());
        assert_eq!(decode::<ToCoord>(&out[1]).unwrap(), ToCoord::Kill);
        assert_eq!(fb.buffered(), 0);
    }

    #[test]
    fn wanted_never_overreads() {
        let wire = encode(&sample()).unwrap();
        let mut fb = FrameBuf::new();
        let mut pos = 0;
        while pos < wire.len() {
            let n = fb.wanted();
            assert!(pos + n <= wire.len());
            fb.push(&wire[pos..pos + n]);
            pos += n;
        }
        assert_eq!(fb.pop::<FromCoord>().unwrap(), Some(sample()));
    }

    #[test]
    fn oversize_refused_before_allocation() {
        let mut wire = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        wire.extend([0u8; 8]);
        let err = read_msg::<_, ToCoord>(&mut &wire[..]).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == MAX_FRAME + 1));

        let mut fb = FrameBuf::with_limit(16);
        fb.push(&17u32.to_le_bytes());
        assert!(matches!(
            fb.pop_frame(),
            Err(FrameError::TooLarge { len: 17, limit: 16 })
        ));
    }

    #[test]
    fn truncated_stream() {
        let wire = encode(&sample()).unwrap();
        for cut in [2, HEADER, wire.len() - 1] {
            let err = read_msg::<_, FromCoord>(&mut &wire[..cut]).unwrap_err();
            assert!(
                matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
                "cut at {cut}: {err}"
            );
        }
        let mut fb = FrameBuf::new();
        fb.push(&wire[..wire.len() - 1]);
        assert!(fb.pop::<FromCoord>().unwrap().is_none());
    }

    #[test]
    fn garbage_and_trailing_bytes_rejected() {
        let mut wire = 3u32.to_le_bytes().to_vec();
        wire.extend([0xff, 0xff, 0xff]);
        assert!(matches!(
            read_msg::<_, ToCoord>(&mut &wire[..]),
            Err(FrameError::Decode(_))
        ));
        // `Status` is one byte; a second one is trailing garbage.
        let mut wire = 2u32.to_le_bytes().to_vec();
        wire.extend(postcard::to_allocvec(&ToCoord::Status).unwrap());
        wire.push(0);
        assert!(matches!(
            read_msg::<_, ToCoord>(&mut &wire[..]),
            Err(FrameError::Decode(_))
        ));
    }
}
