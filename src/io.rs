//! Positioned reads from an input and positioned writes to an output, the only I/O the core does.
//!
//! A native file, an in-memory buffer and a browser `Blob` all implement [`ReadAt`]; a native file, a
//! buffer, a browser writable and a pipe all implement [`Sink`]. The core never touches a file system.

use crate::error::{Error, ErrorKind, Result};
use std::io::Write;

/// The largest single buffer the core allocates on behalf of the input (an L2 table, a cluster, a block).
pub const MAX_BUFFER: u64 = 64 << 20;

/// Random-access reads from an input that does not change while it is read.
pub trait ReadAt {
    /// The input's length in bytes.
    fn len(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`; may return fewer, and 0 only at the end of the input.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Whether the input is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the file system stores from `offset` on, for sparse files: `Some((true, end))` when data is stored
    /// up to `end`, `Some((false, end))` for a hole (reading zeros) up to `end`. `None` where that is not known —
    /// the default, which readers take as all data.
    fn allocation_at(&self, _offset: u64) -> Option<(bool, u64)> {
        None
    }

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// `Corrupt` ("Unexpected end of file") when the input ends first, at the offset where it ends.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            match self.read_at(pos, &mut buf[done..])? {
                0 => return Err(Error::corrupt("Unexpected end of file").at(pos)),
                n => done += n,
            }
        }
        Ok(())
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(<[u8]>::len(self));
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        ReadAt::read_at(self.as_slice(), offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }
    fn allocation_at(&self, offset: u64) -> Option<(bool, u64)> {
        (**self).allocation_at(offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::rc::Rc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }
    fn allocation_at(&self, offset: u64) -> Option<(bool, u64)> {
        (**self).allocation_at(offset)
    }
}

/// A range of another input, read as an input of its own (an OVA member, an extent inside a file).
pub struct Window {
    inner: std::rc::Rc<dyn ReadAt>,
    offset: u64,
    len: u64,
}

impl Window {
    /// The `len` bytes of `inner` from `offset` (the caller checks they lie inside it).
    pub fn new(inner: std::rc::Rc<dyn ReadAt>, offset: u64, len: u64) -> Self {
        Window { inner, offset, len }
    }
}

impl ReadAt for Window {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(offset) as usize);
        if n == 0 {
            return Ok(0);
        }
        self.inner.read_at(self.offset + offset, &mut buf[..n])
    }
}

/// Allocates a zeroed buffer of `len` bytes for a structure named `what`, refusing sizes above
/// [`MAX_BUFFER`].
pub fn zeroed_buffer(len: u64, what: &str) -> Result<Vec<u8>> {
    if len > MAX_BUFFER {
        return Err(Error::limit(format!("{what} of {len} bytes exceeds the {MAX_BUFFER}-byte limit")));
    }
    // Within the cap, `vec!` asks the allocator for zeroed memory directly (calloc), which is fast even in
    // unoptimised builds; filling a reserved buffer byte by byte is not.
    Ok(vec![0u8; len as usize])
}

/// Where a writer puts its output: positioned writes, and a final length.
pub trait Sink {
    /// Writes all of `data` at `offset`. Offsets past the current end leave a gap that reads as zeros.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// Whether offsets before the current end may be written again. Writers that must go back choose an
    /// append-only layout, or fail with `InvalidArgument`, when this is false.
    fn is_seekable(&self) -> bool;

    /// Makes the output exactly `len` bytes long (a gap at the end reads as zeros), and flushes it.
    fn finish(&mut self, len: u64) -> Result<()>;

    /// Reads back bytes already written — an OVA checksums its finished disk member this way. Not every
    /// output can (a pipe cannot).
    fn read_back(&mut self, offset: u64, _buf: &mut [u8]) -> Result<()> {
        Err(Error::argument("This output cannot be read back").at(offset))
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write_at(offset, data)
    }

    fn is_seekable(&self) -> bool {
        (**self).is_seekable()
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        (**self).finish(len)
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_back(offset, buf)
    }
}

/// A growable in-memory output (tests, and the page's fallback when it has no file to write to). Clones share
/// the same bytes, so a caller can keep a handle while a writer owns the sink.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    data: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl MemorySink {
    /// A copy of the bytes written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// Takes the bytes out, leaving the sink empty.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.data.borrow_mut())
    }
}

impl Sink for MemorySink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let mut buf = self.data.borrow_mut();
        let end = offset
            .checked_add(data.len() as u64)
            .and_then(|e| usize::try_from(e).ok())
            .ok_or_else(|| Error::limit("Output does not fit in memory"))?;
        if end > buf.len() {
            let grow = end - buf.len();
            buf.try_reserve(grow).map_err(|_| Error::limit("Output does not fit in memory"))?;
            buf.resize(end, 0);
        }
        buf[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Error::limit("Output does not fit in memory"))?;
        self.data.borrow_mut().resize(len, 0);
        Ok(())
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        ReadAt::read_exact_at(self.data.borrow().as_slice(), offset, buf)
    }
}

/// An append-only output (a pipe, stdout): writes must come in order; gaps are filled with zeros.
#[derive(Debug)]
pub struct StreamSink<W: Write> {
    inner: W,
    position: u64,
}

impl<W: Write> StreamSink<W> {
    /// Wraps a writer positioned at offset 0.
    pub fn new(inner: W) -> Self {
        StreamSink { inner, position: 0 }
    }

    fn fill_to(&mut self, offset: u64) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        while self.position < offset {
            let n = (offset - self.position).min(ZEROS.len() as u64) as usize;
            self.inner.write_all(&ZEROS[..n]).map_err(|e| Error::io(e, "Write failed").at(self.position))?;
            self.position += n as u64;
        }
        Ok(())
    }
}

impl<W: Write> Sink for StreamSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset < self.position {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("This output cannot seek back to offset {offset:#x}: it is append-only"),
            ));
        }
        self.fill_to(offset)?;
        self.inner.write_all(data).map_err(|e| Error::io(e, "Write failed").at(offset))?;
        self.position += data.len() as u64;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        if len < self.position {
            return Err(Error::argument("An append-only output cannot be shortened"));
        }
        self.fill_to(len)?;
        self.inner.flush().map_err(|e| Error::io(e, "Flush failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns at most 3 bytes a call, as a pipe or a slow Blob might.
    struct Trickle(Vec<u8>);
    impl ReadAt for Trickle {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
            let n = buf.len().min(3);
            ReadAt::read_at(self.0.as_slice(), offset, &mut buf[..n])
        }
    }

    #[test]
    fn read_exact_at_survives_short_reads_and_reports_eof_offset() {
        let src = Trickle((0..10).collect());
        let mut buf = [0u8; 7];
        src.read_exact_at(2, &mut buf).unwrap();
        assert_eq!(buf, [2, 3, 4, 5, 6, 7, 8]);
        let err = src.read_exact_at(5, &mut buf).unwrap_err();
        assert_eq!((err.kind(), err.offset()), (ErrorKind::Corrupt, Some(10)));
    }

    #[test]
    fn stream_sink_fills_gaps_and_refuses_to_seek_back() {
        let mut s = StreamSink::new(Vec::new());
        s.write_at(0, b"ab").unwrap();
        s.write_at(4, b"c").unwrap();
        assert_eq!(s.write_at(1, b"x").unwrap_err().kind(), ErrorKind::InvalidArgument);
        s.finish(7).unwrap();
        assert_eq!(s.inner, b"ab\0\0c\0\0");
    }

    #[test]
    fn zeroed_buffer_refuses_huge_sizes() {
        assert_eq!(zeroed_buffer(1 << 40, "L1 table").unwrap_err().kind(), ErrorKind::LimitExceeded);
        assert_eq!(zeroed_buffer(16, "x").unwrap(), vec![0; 16]);
    }
}
