//! The output as a queue of positioned chunks: the writer writes into it during a wasm call, and the worker
//! drains it afterwards to whatever it writes to — the picker's writable (`write({position})`), an OPFS sync
//! handle (`write(buf, {at})`), or memory — all of which take positions, so the sink is seekable — or a
//! download streamed through the page's service worker, which takes bytes only in order: for it the sink is
//! append-only, and writers choose the layouts the CLI writes to a pipe.
//! An OVA reads its finished disk member back to hash it; the worker then gives a synchronous reader of the
//! OPFS file (the only output a worker can read synchronously).

use crate::error::{Error, ErrorKind, Result};
use crate::io::Sink;
use js_sys::{Function, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;

/// Chunks of output not yet drained, the final length once the writer has finished, and how to read drained
/// output back where the worker can.
#[derive(Debug, Default)]
struct Queue {
    chunks: Vec<(u64, Vec<u8>)>,
    queued: u64,
    final_len: Option<u64>,
    /// `(offset, length) → Uint8Array` over the bytes drained so far, where the output can be read back.
    reader: Option<Function>,
}

/// A [`Sink`] that queues `(offset, bytes)` chunks. Clones share the queue, so the job keeps one to drain while
/// the writer owns another.
#[derive(Debug, Default, Clone)]
pub struct ChunkSink {
    queue: Rc<RefCell<Queue>>,
    append_only: bool,
}

/// A queued chunk is not extended past this, so one drained write stays a reasonable size.
const MAX_CHUNK: usize = 8 << 20;

impl ChunkSink {
    /// An empty queue for an output that takes positioned writes, or only bytes in order (`append_only`).
    pub fn new(append_only: bool) -> Self {
        ChunkSink { queue: Rc::default(), append_only }
    }

    /// Lets the writer read the drained output back through `reader(offset, length)` (synchronous).
    pub fn set_reader(&self, reader: Function) {
        self.queue.borrow_mut().reader = Some(reader);
    }

    /// Takes the queued chunks, oldest first. Overlapping chunks must be applied in this order.
    pub fn drain(&self) -> Vec<(u64, Vec<u8>)> {
        let mut q = self.queue.borrow_mut();
        q.queued = 0;
        std::mem::take(&mut q.chunks)
    }

    /// Bytes queued since the last drain.
    pub fn queued(&self) -> u64 {
        self.queue.borrow().queued
    }

    /// The output's length, once the writer has finished.
    pub fn final_len(&self) -> Option<u64> {
        self.queue.borrow().final_len
    }
}

impl Sink for ChunkSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let mut q = self.queue.borrow_mut();
        q.queued += data.len() as u64;
        // Writers emit many small pieces (a marker, then a grain); joining contiguous ones saves the worker an
        // awaited write per piece.
        if let Some((start, bytes)) = q.chunks.last_mut() {
            if *start + bytes.len() as u64 == offset && bytes.len() + data.len() <= MAX_CHUNK {
                bytes.extend_from_slice(data);
                return Ok(());
            }
        }
        q.chunks.push((offset, data.to_vec()));
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        !self.append_only
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        self.queue.borrow_mut().final_len = Some(len);
        Ok(())
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let failed =
            |what: String| Error::new(ErrorKind::Io, format!("Cannot read the output back: {what}")).at(offset);
        let reader = self.queue.borrow().reader.clone();
        let reader = reader.ok_or_else(|| Error::argument("This output cannot be read back").at(offset))?;
        let bytes = reader
            .call2(&wasm_bindgen::JsValue::NULL, &(offset as f64).into(), &(buf.len() as f64).into())
            .map_err(|e| failed(format!("{e:?}")))?;
        let bytes = Uint8Array::new(&bytes);
        if bytes.length() as usize != buf.len() {
            return Err(failed(format!("{} of {} bytes", bytes.length(), buf.len())));
        }
        bytes.copy_to(buf);
        // Chunks not drained yet are newer than the file: laid over it in queue order.
        let end = offset + buf.len() as u64;
        for (start, data) in &self.queue.borrow().chunks {
            let (from, to) = ((*start).max(offset), (start + data.len() as u64).min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::*;

    #[wasm_bindgen_test]
    fn contiguous_writes_join_and_seeks_start_a_new_chunk() {
        let mut sink = ChunkSink::default();
        let handle = sink.clone();
        sink.write_at(0, b"ab").unwrap();
        sink.write_at(2, b"cd").unwrap();
        sink.write_at(1, b"X").unwrap();
        assert_eq!(handle.queued(), 5);
        assert_eq!(handle.drain(), vec![(0, b"abcd".to_vec()), (1, b"X".to_vec())]);
        assert_eq!((handle.queued(), handle.final_len()), (0, None));
        sink.finish(9).unwrap();
        assert_eq!(handle.final_len(), Some(9));
        assert!(sink.is_seekable());
        assert!(!ChunkSink::new(true).is_seekable());
    }

    #[wasm_bindgen_test]
    fn reads_back_the_drained_file_with_queued_chunks_laid_over_it() {
        // The "file" holds 0..8; a queued chunk not yet drained changes bytes 2..4.
        let reader = Function::new_with_args("o, n", "return new Uint8Array(n).map((_, i) => o + i)");
        let mut sink = ChunkSink::default();
        sink.set_reader(reader);
        sink.write_at(2, b"\xff\xfe").unwrap();
        let mut buf = [0u8; 4];
        sink.read_back(1, &mut buf).unwrap();
        assert_eq!(buf, [1, 0xff, 0xfe, 4]);
        assert!(ChunkSink::default().read_back(0, &mut buf).is_err());
    }
}
