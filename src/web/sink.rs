//! The output as a queue of positioned chunks: the writer writes into it during a wasm call, and the worker
//! drains it afterwards to whatever it writes to — the picker's writable (`write({position})`), an OPFS sync
//! handle (`write(buf, {at})`), or memory. Both real targets take positions, so the sink is seekable.

use crate::error::Result;
use crate::io::Sink;
use std::cell::RefCell;
use std::rc::Rc;

/// Chunks of output not yet drained, and the final length once the writer has finished.
#[derive(Debug, Default)]
struct Queue {
    chunks: Vec<(u64, Vec<u8>)>,
    queued: u64,
    final_len: Option<u64>,
}

/// A [`Sink`] that queues `(offset, bytes)` chunks. Clones share the queue, so the job keeps one to drain while
/// the writer owns another.
#[derive(Debug, Default, Clone)]
pub struct ChunkSink {
    queue: Rc<RefCell<Queue>>,
}

/// A queued chunk is not extended past this, so one drained write stays a reasonable size.
const MAX_CHUNK: usize = 8 << 20;

impl ChunkSink {
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
        true
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        self.queue.borrow_mut().final_len = Some(len);
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
    }
}
