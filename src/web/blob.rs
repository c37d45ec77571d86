//! Reading picked files: a `Blob` as [`ReadAt`] through `FileReaderSync`, and backing files found among the
//! other picked files by base name.

use crate::chain::FileResolver;
use crate::error::{Error, ErrorKind, Result};
use crate::io::ReadAt;
use js_sys::Uint8Array;
use std::cell::RefCell;
use web_sys::{Blob, File, FileReaderSync};

/// A `Blob` (a picked `File`) read in slices; only usable in a dedicated worker, where `FileReaderSync` exists.
///
/// Each `FileReaderSync` call costs far more than its bytes (measured: ~0.8 ms per call, so 64 KiB slices read at
/// a tenth of the speed of 8 MiB ones), and readers ask for one small piece at a time. So while reads move forward
/// in small steps — sequential, overlapping (qcow2's compressed clusters share their last sector with the next
/// one) or skipping (a pool worker reads only its own batches) — a window of up to [`READ_AHEAD`] bytes is read at
/// once and served from memory; reads elsewhere (metadata) stay exact. Each window is sized by how much of the
/// previous one was used, so a worker that takes one batch in sixteen does not read the other fifteen's bytes.
#[derive(Debug)]
pub struct BlobReader {
    blob: Blob,
    reader: FileReaderSync,
    len: u64,
    window: RefCell<Window>,
}

/// The slice read last and how many of its bytes were served, and where the read before this one started and
/// ended.
#[derive(Debug, Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
    served: usize,
    last_start: u64,
    last_end: u64,
}

impl Window {
    fn holds(&self, offset: u64) -> bool {
        offset >= self.start && offset < self.start + self.bytes.len() as u64
    }

    /// Whether a read at `offset` goes on from the previous one: not before its start, and not further past its
    /// end than a window's length (reading the gap too costs less than another call).
    fn follows(&self, offset: u64) -> bool {
        offset >= self.last_start && offset - self.last_end.min(offset) <= READ_AHEAD as u64
    }

    /// The next window's length: twice what was used of this one, so sequential reads soon get whole
    /// [`READ_AHEAD`] windows and sparse ones small windows.
    fn next_len(&self) -> usize {
        if self.bytes.is_empty() { READ_AHEAD } else { (2 * self.served).clamp(MIN_READ_AHEAD, READ_AHEAD) }
    }
}

/// The most bytes read at once, when reads are sequential.
pub const READ_AHEAD: usize = 8 << 20;
/// The least bytes a window reads: below this the per-call cost dominates again.
const MIN_READ_AHEAD: usize = 1 << 20;

impl BlobReader {
    /// Wraps `blob`, taking its size once (a picked file must not change while it is read).
    ///
    /// # Errors
    /// `Io` when `FileReaderSync` is missing — outside a dedicated worker.
    pub fn new(blob: Blob) -> Result<Self> {
        let reader = FileReaderSync::new()
            .map_err(|e| Error::new(ErrorKind::Io, format!("Cannot read files here: {}", describe(&e))))?;
        let len = blob.size() as u64;
        Ok(BlobReader { blob, reader, len, window: RefCell::default() })
    }

    /// Reads `[offset, offset + buf.len())` of the blob (which must lie inside it) with one call.
    fn read_slice(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let failed = |e: wasm_bindgen::JsValue| {
            // NotReadableError here usually means the file changed or was removed after it was picked.
            Error::new(ErrorKind::Io, format!("Read failed: {}", describe(&e))).at(offset)
        };
        let end = offset + buf.len() as u64;
        let slice = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(failed)?;
        let bytes = self.reader.read_as_array_buffer(&slice).map_err(failed)?;
        let bytes = Uint8Array::new(&bytes);
        let got = (bytes.length() as usize).min(buf.len());
        bytes.subarray(0, got as u32).copy_to(&mut buf[..got]);
        Ok(got)
    }
}

impl ReadAt for BlobReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        let mut window = self.window.borrow_mut();
        if !window.holds(offset) && n < READ_AHEAD && window.follows(offset) {
            let ahead = window.next_len().min((self.len - offset) as usize);
            window.bytes.resize(ahead, 0);
            let got = self.read_slice(offset, &mut window.bytes)?;
            window.bytes.truncate(got);
            window.start = offset;
            window.served = 0;
        }
        let got = if window.holds(offset) {
            let from = (offset - window.start) as usize;
            let got = n.min(window.bytes.len() - from);
            buf[..got].copy_from_slice(&window.bytes[from..from + got]);
            window.served += got;
            got
        } else {
            self.read_slice(offset, &mut buf[..n])?
        };
        window.last_start = offset;
        window.last_end = offset + got as u64;
        Ok(got)
    }
}

/// A JS exception as text: `Name: message` for DOMExceptions and Errors, else its string form.
pub(crate) fn describe(value: &wasm_bindgen::JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(e) => format!("{}: {}", String::from(e.name()), String::from(e.message())),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}

use wasm_bindgen::JsCast;

/// The files picked together with the image: a backing file is the one whose name is the base name of the
/// reference stored in the image, as DECISIONS.md says (a page cannot follow paths).
#[derive(Debug, Default)]
pub struct PickedFiles {
    files: Vec<File>,
    missing: RefCell<Vec<String>>,
}

impl PickedFiles {
    /// A resolver over `files`.
    pub fn new(files: Vec<File>) -> Self {
        PickedFiles { files, missing: RefCell::new(Vec::new()) }
    }

    /// Base names of backing files that were asked for and not picked, so the page can ask for them.
    pub fn missing(&self) -> Vec<String> {
        self.missing.borrow().clone()
    }
}

/// The last component of a path written on any system.
pub fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

impl FileResolver for PickedFiles {
    fn open(&self, name: &str, _referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        let wanted = base_name(name);
        if let Some(file) = self.files.iter().find(|f| f.name() == wanted) {
            let reader = BlobReader::new(file.clone().into())?;
            return Ok((wanted.to_string(), Box::new(reader)));
        }
        self.missing.borrow_mut().push(wanted.to_string());
        Err(Error::new(
            ErrorKind::NotFound,
            format!("Backing file '{wanted}' is needed: pick it together with the image"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::*;

    wasm_bindgen_test_configure!(run_in_dedicated_worker);

    fn file(bytes: &[u8], name: &str) -> File {
        let parts = js_sys::Array::of1(&Uint8Array::from(bytes));
        File::new_with_u8_array_sequence(&parts, name).unwrap()
    }

    #[wasm_bindgen_test]
    fn blob_reader_reads_slices_and_stops_at_the_end() {
        let data: Vec<u8> = (0..=255).cycle().take(5000).map(|b: u32| b as u8).collect();
        let reader = BlobReader::new(file(&data, "a.img").into()).unwrap();
        assert_eq!(reader.len(), 5000);
        let mut buf = [0u8; 100];
        reader.read_exact_at(4000, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[4000..4100]);
        assert_eq!(reader.read_at(4950, &mut buf).unwrap(), 50);
        assert_eq!(&buf[..50], &data[4950..]);
        assert_eq!(reader.read_at(5000, &mut buf).unwrap(), 0);
        let err = reader.read_exact_at(4990, &mut buf).unwrap_err();
        assert_eq!((err.kind(), err.offset()), (ErrorKind::Corrupt, Some(5000)));
    }

    #[wasm_bindgen_test]
    fn read_ahead_serves_sequential_and_scattered_reads_alike() {
        let len = 2 * READ_AHEAD + 12345;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
        let reader = BlobReader::new(file(&data, "big.img").into()).unwrap();
        let mut sequential = vec![0u8; len];
        for (i, chunk) in sequential.chunks_mut(65536).enumerate() {
            reader.read_exact_at((i * 65536) as u64, chunk).unwrap();
        }
        assert!(sequential == data);
        // Backwards, across the window's edges, and larger than a window.
        for (offset, size) in [(READ_AHEAD - 10, 20), (5, 100), (len - 3, 3), (READ_AHEAD + 1, READ_AHEAD + 7)] {
            let mut buf = vec![0u8; size];
            reader.read_exact_at(offset as u64, &mut buf).unwrap();
            assert!(buf == data[offset..offset + size], "read of {size} at {offset}");
        }
    }

    /// A reader over `data` and a function giving `(calls, bytes)` read from the blob so far: each
    /// `FileReaderSync` call reads one slice.
    fn counted_reader(data: &[u8]) -> (BlobReader, impl Fn() -> (u32, u64)) {
        let blob: Blob = file(data, "c.qcow2").into();
        let counter = js_sys::Function::new_with_args(
            "blob",
            "let n = 0, bytes = 0; const slice = blob.slice.bind(blob);
             blob.slice = (a, b) => (n++, bytes += b - a, slice(a, b)); return () => [n, bytes];",
        );
        let counter: js_sys::Function = counter.call1(&wasm_bindgen::JsValue::NULL, &blob).unwrap().into();
        let counts = move || {
            let counts = js_sys::Array::from(&counter.call0(&wasm_bindgen::JsValue::NULL).unwrap());
            (counts.get(0).as_f64().unwrap() as u32, counts.get(1).as_f64().unwrap() as u64)
        };
        (BlobReader::new(blob).unwrap(), counts)
    }

    #[wasm_bindgen_test]
    fn reads_moving_forward_in_small_steps_share_one_call() {
        let data: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (reader, counts) = counted_reader(&data);
        let calls = || counts().0;
        let mut buf = vec![0u8; 20_000];
        // Overlapping like compressed clusters, then skipping like a pool worker's share: one window.
        for offset in (0..3 << 20).step_by(19_500).chain(((3 << 20)..(6 << 20) - 20_000).step_by(60_000)) {
            reader.read_exact_at(offset as u64, &mut buf).unwrap();
            assert!(buf == data[offset..offset + 20_000], "read at {offset}");
        }
        assert_eq!(calls(), 1);
        // A jump past the window is an exact read, reading on from there fills a new window, going back is exact.
        for (offset, expected) in [(18 << 20, 2), ((18 << 20) + 100, 3), ((18 << 20) + 50_000, 3), (1 << 20, 4)] {
            reader.read_exact_at(offset as u64, &mut buf).unwrap();
            assert!(buf == data[offset..offset + 20_000], "read at {offset}");
            assert_eq!(calls(), expected, "after the read at {offset}");
        }
    }

    #[wasm_bindgen_test]
    fn a_reader_taking_one_stretch_in_eight_reads_little_more_than_its_share() {
        // 512 KiB read in 16 KiB pieces from every 4 MiB: one pool worker's batches among eight.
        let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 249) as u8).collect();
        let (reader, counts) = counted_reader(&data);
        let mut buf = vec![0u8; 16 << 10];
        for stretch in (0..64 << 20).step_by(4 << 20) {
            for offset in (stretch..stretch + (512 << 10)).step_by(16 << 10) {
                reader.read_exact_at(offset as u64, &mut buf).unwrap();
                assert!(buf == data[offset..offset + buf.len()], "read at {offset}");
            }
        }
        // 8 MiB served: the first window (8 MiB) and then about 1 MiB per stretch, not 8 MiB per two stretches.
        let (calls, bytes) = counts();
        assert!(bytes <= 24 << 20, "{bytes} bytes read in {calls} calls");
        assert!(calls <= 16, "{calls} calls");
    }

    #[wasm_bindgen_test]
    fn backing_files_match_by_base_name_only() {
        let files = PickedFiles::new(vec![file(b"base", "base.qcow2"), file(b"other", "x.img")]);
        let (name, reader) = files.open("/var/lib/images/base.qcow2", "top.qcow2").unwrap();
        assert_eq!((name.as_str(), reader.len()), ("base.qcow2", 4));
        assert_eq!(files.open("C:\\vm\\x.img", "top").unwrap().0, "x.img");
        assert!(files.missing().is_empty());
        assert_eq!(files.open("dir/gone.qcow2", "top").err().map(|e| e.kind()), Some(ErrorKind::NotFound));
        assert_eq!(files.missing(), ["gone.qcow2"]);
    }
}
