//! qcow2 (QEMU copy-on-write, versions 2 and 3) reader, writer and checker: qemu's `docs/interop/qcow2.rst`.
//!
//! - `header`: the header and its extensions, validated against qemu's limits and the file's length, and
//!   serialized for the writer;
//! - `entry`: L1/L2 entry bit layouts decoded into enums, and encoded;
//! - `refcount`: refcount table and block entries;
//! - `snapshot`: snapshot table entries (for the check; reading uses the active L1 table only);
//! - `table`: the cluster map, one L2 table in memory at a time;
//! - `compressed`: deflate and zstd clusters, capped at one cluster;
//! - `writer`: [`Qcow2Writer`], planned from the virtual size and written forward;
//! - `check`: [`check`], qemu-img check's refcount cross-check.
//!
//! Unallocated clusters read from the backing image, recursively; zero clusters never do. Guest reads of
//! physically contiguous clusters become one file read.

mod check;
mod compressed;
mod entry;
mod header;
mod refcount;
mod snapshot;
mod table;
mod writer;

pub use check::check;
pub use writer::{OPTIONS, Qcow2Options, Qcow2Writer, writer};

use crate::chain::{Opener, parent_extent, read_parent, unless_missing};
use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Fact, Image, ImageInfo, Specific};
use crate::io::{ReadAt, zeroed_buffer};
use compressed::Decompressor;
use entry::{CompressedRun, Piece};
use header::Header;
use table::ClusterMap;

/// Whether a file starts as qcow2 does.
pub fn probe(head: &[u8], _tail: &[u8]) -> bool {
    head.starts_with(b"QFI\xfb")
}

/// Opens a qcow2 image and its backing chain (the table of formats' entry).
///
/// # Errors
/// As [`Qcow2::open`].
pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    Ok(Box::new(Qcow2::open(file, name, opener)?))
}

/// Bytes read to learn the cluster size before reading cluster 0 (the fixed header is 112 bytes).
const HEAD: u64 = 512;

/// An opened qcow2 image.
pub struct Qcow2 {
    file: Box<dyn ReadAt>,
    info: ImageInfo,
    /// Guest bytes the image maps, as stored; the virtual size rounds it up to a sector and the rest reads zeros.
    mapped_size: u64,
    cluster_size: u64,
    decompressor: Decompressor,
    map: ClusterMap,
    /// The last run `own_extent` found: start, end, kind.
    last_run: Option<(u64, u64, ExtentKind)>,
    backing: Option<Box<dyn Image>>,
    /// The last compressed cluster read, inflated.
    inflated: Option<CompressedRun>,
    inflated_data: Vec<u8>,
    compressed_data: Vec<u8>,
}

impl Qcow2 {
    /// Opens `file` (named `name`), and its backing chain through `opener`.
    ///
    /// # Errors
    /// `InvalidFormat` when the file is not qcow2; `Unsupported` for encryption, external data files and unknown
    /// incompatible features; `Corrupt` or `LimitExceeded` for header fields out of range; any error opening
    /// the backing chain.
    pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Qcow2> {
        let file_len = file.len();
        let mut head = zeroed_buffer(HEAD.min(file_len), "qcow2 header")?;
        file.read_exact_at(0, &mut head)?;
        let cluster_size = Header::cluster_size(&head)?;
        let mut cluster0 = zeroed_buffer(cluster_size.min(file_len), "qcow2 header cluster")?;
        file.read_exact_at(0, &mut cluster0)?;
        let header = Header::parse(&cluster0, file_len)?;

        let (full_backing_filename, backing) = match &header.backing_file {
            Some(backing) => {
                // An unknown name ("host_device", …) is probed, as when no format is recorded.
                let opened = opener.open_backing(backing, name, header.backing_format.as_deref());
                unless_missing(opener, opened)?.map_or((None, None), |(resolved, image)| (Some(resolved), Some(image)))
            }
            None => (None, None),
        };

        let mut warnings = Vec::new();
        if header.corrupt() {
            warnings.push("Image is marked corrupt; reading it with full validation".to_string());
        }
        if header.dirty() {
            warnings.push(
                "Image was not closed cleanly (dirty); its refcounts may be stale, its data is read as mapped"
                    .to_string(),
            );
        }
        let info = ImageInfo {
            format: "qcow2",
            virtual_size: header.size.next_multiple_of(512),
            cluster_size: Some(cluster_size),
            dirty: header.dirty(),
            backing_filename: header.backing_file.clone(),
            full_backing_filename,
            // As qemu-img, only alongside a backing file.
            backing_format: header.backing_file.as_ref().and(header.backing_format.clone()),
            specific: Some(Specific(vec![
                ("compat", Fact::Text(if header.version == 2 { "0.10" } else { "1.1" }.to_string())),
                ("compression-type", Fact::Text(header.compression.name().to_string())),
                ("lazy-refcounts", Fact::Flag(header.lazy_refcounts())),
                ("refcount-bits", Fact::Number(1 << header.refcount_order)),
                ("corrupt", Fact::Flag(header.corrupt())),
                ("extended-l2", Fact::Flag(header.layout.extended_l2)),
            ])),
            warnings,
        };
        Ok(Qcow2 {
            info,
            mapped_size: header.size,
            cluster_size,
            decompressor: Decompressor::new(header.compression),
            map: ClusterMap::new(header.layout, header.l1_table_offset, header.l1_entries, file_len),
            last_run: None,
            file,
            backing,
            inflated: None,
            inflated_data: Vec::new(),
            compressed_data: Vec::new(),
        })
    }

    /// The kind of the run at `offset` in this image alone (unallocated left as it is), and where it ends:
    /// within the L2 table covering `offset`, or a run of unallocated L1 entries.
    fn own_extent(&mut self, offset: u64) -> Result<(ExtentKind, u64)> {
        // The converter asks again at every unit inside a long run; without this each question would re-walk
        // the rest of the L2 table (262144 entries with 2 MiB clusters).
        if let Some((start, end, kind)) = self.last_run {
            if (start..end).contains(&offset) {
                return Ok((kind, end));
            }
        }
        let (piece, len) = self.map.piece_at(&*self.file, offset)?;
        let kind = kind_of(&piece);
        let limit = self.map.table_end(offset).max(offset + len).min(self.info.virtual_size);
        let mut end = (offset + len).min(limit);
        while end < limit {
            let (piece, len) = self.map.piece_at(&*self.file, end)?;
            if kind_of(&piece) != kind {
                break;
            }
            end = (end + len).min(limit);
        }
        self.last_run = Some((offset, end, kind));
        Ok((kind, end))
    }

    /// Fills the part of `buf` (guest bytes from `offset`) that `run` covers.
    fn fill(&mut self, offset: u64, run: Run, buf: &mut [u8]) -> Result<()> {
        let out = &mut buf[run.start..run.start + run.len];
        match run.source {
            Source::File(host) => self.file.read_exact_at(host, out),
            Source::Backing => read_parent(self.backing.as_deref_mut(), offset + run.start as u64, out),
            Source::Zeros => {
                out.fill(0);
                Ok(())
            }
        }
    }

    /// The guest bytes of a compressed cluster.
    fn inflate(&mut self, run: CompressedRun) -> Result<&[u8]> {
        if self.inflated != Some(run) {
            self.inflated = None;
            if self.inflated_data.is_empty() {
                self.inflated_data = zeroed_buffer(self.cluster_size, "a compressed cluster")?;
            }
            // The run is at most two clusters (its sector count has cluster_bits - 8 bits).
            self.compressed_data.resize(run.length as usize, 0);
            let in_file = self.file.len().saturating_sub(run.offset).min(run.length) as usize;
            self.file.read_exact_at(run.offset, &mut self.compressed_data[..in_file])?;
            self.compressed_data[in_file..].fill(0);
            self.decompressor
                .decompress(&self.compressed_data, &mut self.inflated_data)
                .map_err(|e| e.at(run.offset))?;
            self.inflated = Some(run);
        }
        Ok(&self.inflated_data)
    }
}

fn kind_of(piece: &Piece) -> ExtentKind {
    match piece {
        Piece::Data(_) | Piece::Compressed(_) => ExtentKind::Data,
        Piece::Zero => ExtentKind::Zero,
        Piece::Unallocated => ExtentKind::Unallocated,
    }
}

/// Where a stretch of a guest read comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The image file, from this host offset.
    File(u64),
    /// Zeros.
    Zeros,
    /// The backing image at the same guest offset (zeros without one).
    Backing,
}

/// Consecutive pieces of a read served by one file read, one backing read or one fill.
struct Run {
    source: Source,
    start: usize,
    len: usize,
}

impl Run {
    /// Whether `source` at buffer position `at` extends this run.
    fn continues(&self, source: Source, at: usize) -> bool {
        self.start + self.len == at
            && match (self.source, source) {
                (Source::File(host), Source::File(next)) => host + self.len as u64 == next,
                (a, b) => a == b,
            }
    }
}

impl Image for Qcow2 {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        if offset >= self.info.virtual_size {
            return Err(Error::argument(format!("Extent requested at {offset:#x}, beyond the virtual size")));
        }
        let (kind, end) = self.own_extent(offset)?;
        if kind == ExtentKind::Unallocated {
            return parent_extent(self.backing.as_deref_mut(), offset, end);
        }
        Ok(Extent { offset, length: end - offset, kind })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.info.virtual_size) {
            return Err(Error::argument(format!(
                "Read of {} bytes at {offset:#x} is beyond the virtual size",
                buf.len()
            )));
        }
        let mapped = self.mapped_size.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (buf, tail) = buf.split_at_mut(mapped);
        tail.fill(0);

        let mut pending: Option<Run> = None;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (piece, len) = self.map.piece_at(&*self.file, pos)?;
            let n = len.min((buf.len() - done) as u64) as usize;
            let source = match piece {
                Piece::Compressed(run) => {
                    let at = (pos & (self.cluster_size - 1)) as usize;
                    let cluster = self.inflate(run)?;
                    buf[done..done + n].copy_from_slice(&cluster[at..at + n]);
                    done += n;
                    continue;
                }
                Piece::Data(host) => Source::File(host),
                Piece::Zero => Source::Zeros,
                Piece::Unallocated => Source::Backing,
            };
            match &mut pending {
                Some(run) if run.continues(source, done) => run.len += n,
                _ => {
                    if let Some(run) = pending.replace(Run { source, start: done, len: n }) {
                        self.fill(offset, run, buf)?;
                    }
                }
            }
            done += n;
        }
        match pending {
            Some(run) => self.fill(offset, run, buf),
            None => Ok(()),
        }
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.backing.as_deref_mut().map(|b| b as &mut dyn Image)
    }

    fn file_length(&self) -> u64 {
        self.file.len()
    }
}

#[cfg(test)]
mod tests;
