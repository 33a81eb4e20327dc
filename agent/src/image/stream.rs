//! The decompressed tar stream under the `tar` crate's parser: it counts the bytes
//! (a stream larger than the unpacked-size limit is a bomb, whatever its headers
//! say), notes the end of file (a tar that stops without its end blocks is
//! truncated), and records the bytes between entries for [`super::pax`].

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

/// What the stream saw, shared with the code that drives the parser.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// The inner reader reported end of file.
    pub eof: Cell<bool>,
    /// The stream passed the limit (the read that did failed).
    pub over: Cell<bool>,
    limit: u64,
    pos: Cell<u64>,
    recording: Cell<bool>,
    rec_start: Cell<u64>,
    rec: RefCell<Vec<u8>>,
}

impl StreamState {
    /// A state for a stream allowed `limit` bytes, recording from its start.
    pub fn new(limit: u64) -> Rc<StreamState> {
        Rc::new(StreamState {
            eof: Cell::new(false),
            over: Cell::new(false),
            limit,
            pos: Cell::new(0),
            recording: Cell::new(true),
            rec_start: Cell::new(0),
            rec: RefCell::new(Vec::new()),
        })
    }

    /// Records from the current position on (call once an entry's data is read).
    pub fn start_recording(&self) {
        self.rec.borrow_mut().clear();
        self.rec_start.set(self.pos.get());
        self.recording.set(true);
    }

    /// Stops recording; returns where the recording started and what it holds.
    pub fn take_recording(&self) -> (u64, Vec<u8>) {
        self.recording.set(false);
        (
            self.rec_start.get(),
            std::mem::take(&mut self.rec.borrow_mut()),
        )
    }
}

/// The reader the tar parser reads from.
pub(crate) struct TarStream<R> {
    /// The decompressed bytes.
    pub inner: R,
    /// Shared with the driver.
    pub state: Rc<StreamState>,
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let s = &self.state;
        if n == 0 && !buf.is_empty() {
            s.eof.set(true);
        }
        let pos = s.pos.get() + n as u64;
        if pos > s.limit {
            s.over.set(true);
            return Err(io::Error::other(
                "decompressed past the unpacked-size limit",
            ));
        }
        s.pos.set(pos);
        if s.recording.get() {
            s.rec.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_and_stops_at_the_limit() {
        let state = StreamState::new(10);
        let mut s = TarStream {
            inner: &b"0123456789abc"[..],
            state: state.clone(),
        };
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(state.take_recording(), (0, b"0123".to_vec()));
        s.read_exact(&mut buf).unwrap();
        state.start_recording();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).unwrap();
        assert_eq!(state.take_recording(), (8, b"89".to_vec()));
        assert!(s.read(&mut buf).is_err());
        assert!(state.over.get());
    }
}
