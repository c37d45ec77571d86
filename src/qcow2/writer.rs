//! qcow2 output (version 3, or 2 with `compat=0.10`), planned from the virtual size and written forward:
//!
//! ```text
//! cluster 0: header (written last) | refcount table | L1 table | {L2 table, its data clusters…}… | refcount
//! blocks, each appended as soon as the stream has passed the host clusters it counts
//! ```
//!
//! Everything before the data has a size that follows from the virtual size: the L1 table maps it, and the
//! refcount table must address every refcount block the file can need, so it is sized for the largest file
//! the data can make (every guest cluster stored). Data clusters are appended in guest order, each L2 table
//! reserved in front of its range and written once the stream leaves the range; compressed clusters are
//! packed byte after byte, as qemu packs them, and a host cluster they share is referenced once by each.
//! Host clusters are never freed or reused, so the refcounts of a stretch of the file are final as soon as
//! the stream has passed it: only the current L2 table and the refcount block(s) at the stream's end are
//! kept, whatever the disk size.
//!
//! The header points at tables whose contents are known only at the end, so the sink must be seekable; a
//! pipe is refused (a single-pass layout would need a first pass reading — and compressing — the whole
//! source just to learn where things go).

use super::compressed::Compression;
use super::entry::{self, CompressedRun, Layout};
use super::header::{Header, MAX_CLUSTER_BITS, MAX_L1_BYTES, MAX_REFTABLE_BYTES, MIN_CLUSTER_BITS, REFCOUNT_ORDER_16};
use super::refcount;
use crate::error::{Error, ErrorKind, Result};
use crate::io::Sink;
use crate::options::OptionList;
use crate::writer::{Finished, Finishing, ImageWriter, Outputs, Settings, UnitEncoder, is_zero};

/// The `-o` keys the qcow2 writer takes (some only with their one supported value).
pub const OPTIONS: &[&str] =
    &["compat", "cluster_size", "compression_type", "lazy_refcounts", "preallocation", "extended_l2", "refcount_bits"];

/// The qcow2 writer on `outputs` (the table of formats' entry).
///
/// # Errors
/// `InvalidArgument` or `Unsupported` for a bad option; as [`Qcow2Writer::new`].
pub fn writer(
    options: &mut OptionList,
    settings: &Settings,
    virtual_size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    let opts = Qcow2Options::from_options(options)?;
    Ok(Box::new(Qcow2Writer::new(outputs.main()?, virtual_size, &opts, settings.compressed)?))
}
use byteorder::{BigEndian, ByteOrder};
use flate2::{Compress, FlushCompress, Status};
use std::collections::VecDeque;
use std::sync::Arc;

/// qemu's default: 64 KiB.
const DEFAULT_CLUSTER_BITS: u32 = 16;
/// qemu deflates clusters with a 4 KiB window (`deflateInit2(…, -12, …)`) and inflates with the same, so a
/// stream using a larger window would not read back in qemu.
const DEFLATE_WINDOW_BITS: u8 = 12;

/// `-o` options for qcow2 output, with qemu-img's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Options {
    /// 3 (`compat=1.1`, the default) or 2 (`compat=0.10`).
    pub version: u32,
    /// log2 of `cluster_size`.
    pub cluster_bits: u32,
    /// `compression_type`: how `-c` compresses, recorded in the header either way.
    pub compression: Compression,
    /// `lazy_refcounts`: only a header bit here, since the file is written closed.
    pub lazy_refcounts: bool,
}

impl Qcow2Options {
    /// Takes the qcow2 keys out of `options`.
    ///
    /// # Errors
    /// `InvalidArgument` for values qemu-img refuses; `Unsupported` for settings it accepts and this writer
    /// does not implement (preallocation, extended L2, other refcount widths, backing files, encryption).
    pub fn from_options(options: &mut OptionList) -> Result<Self> {
        let version = match options.take("compat").as_deref() {
            None | Some("1.1" | "v3") => 3,
            Some("0.10" | "v2") => 2,
            Some(v) => return Err(Error::argument(format!("Invalid compatibility level: '{v}'"))),
        };
        let cluster_bits = match options.take_size("cluster_size")? {
            None => DEFAULT_CLUSTER_BITS,
            Some(size)
                if size.is_power_of_two() && (MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&size.trailing_zeros()) =>
            {
                size.trailing_zeros()
            }
            Some(size) => {
                return Err(Error::argument(format!(
                    "Cluster size must be a power of two between 512 and 2048k, not {size}"
                )));
            }
        };
        let compression = match options.take("compression_type") {
            None => Compression::Deflate,
            Some(name) => Compression::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| Error::argument(format!("Invalid compression type '{name}' (zlib or zstd)")))?,
        };
        let lazy_refcounts = options.take_bool("lazy_refcounts")?.unwrap_or(false);
        if let Some(p) = options.take("preallocation").filter(|p| p != "off") {
            return Err(Error::unsupported(format!("preallocation={p} is not supported; only off")));
        }
        if options.take_bool("extended_l2")?.unwrap_or(false) {
            return Err(Error::unsupported("extended_l2=on is not supported; only off"));
        }
        if let Some(bits) = options.take_u64("refcount_bits")?.filter(|&b| b != 1 << REFCOUNT_ORDER_16) {
            return Err(Error::unsupported(format!("refcount_bits={bits} is not supported; only 16")));
        }
        for key in ["backing_file", "backing_fmt", "data_file", "encrypt.format", "encryption"] {
            if options.take(key).is_some() {
                return Err(Error::unsupported(format!("qcow2 option '{key}' is not supported")));
            }
        }
        if version == 2 && compression != Compression::Deflate {
            return Err(Error::argument("Compression type 'zstd' requires compat=1.1 or later"));
        }
        if version == 2 && lazy_refcounts {
            return Err(Error::argument("Lazy refcounts only supported with compatibility level 1.1 and above"));
        }
        Ok(Qcow2Options { version, cluster_bits, compression, lazy_refcounts })
    }
}

/// Encodes one cluster: zero detection, and with `-c` compression, kept only when it saves space.
///
/// The writer tells the two outcomes apart by length: a stored cluster is exactly one cluster long and a
/// compressed one is shorter (qemu too stores a cluster uncompressed when it does not compress below one
/// cluster).
#[derive(Debug, Clone, Copy)]
pub struct ClusterEncoder {
    cluster_size: usize,
    compression: Option<Compression>,
}

impl UnitEncoder for ClusterEncoder {
    fn encode(&self, index: u64, mut data: Vec<u8>) -> Result<Option<Vec<u8>>> {
        if is_zero(&data) {
            return Ok(None);
        }
        // The disk's last cluster may be partial; the file always holds whole clusters, and a compressed
        // cluster must inflate to exactly one.
        data.resize(self.cluster_size, 0);
        let compressed = match self.compression {
            None => None,
            Some(Compression::Deflate) => deflate(&data, index)?,
            Some(Compression::Zstd) => {
                Some(ruzstd::encoding::compress_to_vec(data.as_slice(), ruzstd::encoding::CompressionLevel::Fastest))
            }
        };
        Ok(Some(compressed.filter(|c| c.len() < self.cluster_size).unwrap_or(data)))
    }
}

/// Raw deflate (no zlib header) of one cluster at zlib's default level, or `None` when it does not fit in
/// less than a cluster.
fn deflate(data: &[u8], index: u64) -> Result<Option<Vec<u8>>> {
    let mut z = Compress::new_with_window_bits(flate2::Compression::default(), false, DEFLATE_WINDOW_BITS);
    let mut out = Vec::with_capacity(data.len() - 1);
    match z.compress_vec(data, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => Ok(Some(out)),
        // The output buffer filled up first: the cluster does not compress.
        Ok(_) => Ok(None),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("Compressing cluster {index} failed: {e}"))),
    }
}

/// Refcounts of the host clusters from `first` on, a refcount block at a time. The stream only ever counts
/// clusters at or after its end, so blocks before the one holding the end are final.
struct Refcounts {
    per_block: u64,
    /// Index of the first block in `blocks`.
    first: u64,
    blocks: VecDeque<Vec<u8>>,
}

impl Refcounts {
    fn count(&mut self, cluster: u64, cluster_size: usize) {
        let (block, index) = (cluster / self.per_block, cluster % self.per_block);
        while self.first + (self.blocks.len() as u64) <= block {
            self.blocks.push_back(vec![0; cluster_size]);
        }
        let b = &mut self.blocks[(block - self.first) as usize];
        // 16 bits are enough: a compressed 2 MiB cluster takes at least 74 bytes (zstd: 16 blocks of 4 bytes
        // or more, frame header, checksum), so at most about 28000 streams touch one host cluster.
        let n = refcount::get(b, index, REFCOUNT_ORDER_16);
        refcount::set(b, index, REFCOUNT_ORDER_16, n + 1);
    }
}

/// Writes a qcow2 image onto a seekable sink.
pub struct Qcow2Writer {
    sink: Box<dyn Sink>,
    header: Header,
    encoder: ClusterEncoder,
    /// Bytes before the first L2 table or data cluster: header, refcount table, L1 table.
    front: u64,
    /// The next free byte of the file; 0 until the front is placed.
    end: u64,
    refcounts: Refcounts,
    /// The L2 table being filled: its L1 index, file offset and entries.
    l2: Option<(u64, u64, Vec<u64>)>,
}

impl Qcow2Writer {
    /// A writer on `sink` for a disk of `virtual_size` bytes, compressing clusters when `compressed` (`-c`).
    /// Nothing is written yet.
    ///
    /// # Errors
    /// `InvalidArgument` for an append-only sink; `LimitExceeded` when the disk needs an L1 or refcount table
    /// beyond qemu's limits (32 MiB, 8 MiB) for this cluster size, or a file compressed descriptors cannot
    /// address.
    pub fn new(sink: Box<dyn Sink>, virtual_size: u64, opts: &Qcow2Options, compressed: bool) -> Result<Self> {
        if !sink.is_seekable() {
            return Err(Error::argument(
                "qcow2 output must be a file: its header and tables are written after the data, so it cannot go \
                 to a pipe",
            ));
        }
        let layout = Layout { cluster_bits: opts.cluster_bits, extended_l2: false, zero_flag: opts.version >= 3 };
        let c = layout.cluster_size();
        let l1_entries = virtual_size.div_ceil(1 << layout.l2_span_bits());
        if l1_entries * 8 > MAX_L1_BYTES {
            return Err(Error::limit(format!(
                "A qcow2 image of {virtual_size} bytes with {c}-byte clusters needs an L1 table over qemu's 32 MiB; \
                 use a larger cluster_size"
            )));
        }
        let l1_clusters = (l1_entries * 8).div_ceil(c);
        let per_block = refcount::entries_per_block(opts.cluster_bits, REFCOUNT_ORDER_16);
        // The largest file: every guest cluster stored (compressed ones take less, even packed behind an L2
        // table's alignment), every L2 table, and the refcount blocks counting all that and themselves.
        let fixed = 1 + l1_clusters + l1_entries + virtual_size.div_ceil(c);
        let mut reftable_clusters = 1;
        loop {
            let blocks = (fixed + reftable_clusters).div_ceil(per_block - 1);
            let needed = (blocks * 8).div_ceil(c);
            if needed <= reftable_clusters {
                break;
            }
            reftable_clusters = needed;
        }
        if reftable_clusters * c > MAX_REFTABLE_BYTES {
            return Err(Error::limit(format!(
                "A qcow2 image of {virtual_size} bytes with {c}-byte clusters could need a refcount table over \
                 qemu's 8 MiB; use a larger cluster_size"
            )));
        }
        let largest = (fixed + reftable_clusters).div_ceil(per_block - 1) * per_block * c;
        if compressed && largest > CompressedRun::offset_limit(opts.cluster_bits) {
            return Err(Error::limit(format!(
                "A compressed qcow2 image of {virtual_size} bytes with {c}-byte clusters could grow past the \
                 {} bytes its compressed cluster entries address; use a smaller cluster_size",
                CompressedRun::offset_limit(opts.cluster_bits)
            )));
        }
        let (incompatible, compatible) = Header::features(opts.compression, opts.lazy_refcounts);
        let header = Header {
            version: opts.version,
            layout,
            size: virtual_size,
            l1_table_offset: if l1_entries == 0 { 0 } else { (1 + reftable_clusters) * c },
            l1_entries,
            l1_size: l1_entries as u32,
            refcount_table_offset: c,
            refcount_table_clusters: reftable_clusters as u32,
            nb_snapshots: 0,
            snapshots_offset: 0,
            bitmaps: false,
            incompatible,
            compatible,
            refcount_order: REFCOUNT_ORDER_16,
            compression: opts.compression,
            backing_file: None,
            backing_format: None,
        };
        let encoder = ClusterEncoder { cluster_size: c as usize, compression: compressed.then_some(opts.compression) };
        Ok(Qcow2Writer {
            sink,
            header,
            encoder,
            front: (1 + reftable_clusters + l1_clusters) * c,
            end: 0,
            refcounts: Refcounts { per_block, first: 0, blocks: VecDeque::new() },
            l2: None,
        })
    }

    fn cluster_size(&self) -> u64 {
        self.header.layout.cluster_size()
    }

    /// Places the front metadata, counting its clusters, before anything else is placed. Not done in `new`,
    /// so that a writer built only for its encoder (a browser worker) writes nothing.
    fn place_front(&mut self) -> Result<()> {
        if self.end == 0 {
            self.allocate(self.front, true)?;
        }
        Ok(())
    }

    /// Takes `len` bytes at the end of the file, from a cluster boundary if `aligned`, counts a reference to
    /// each host cluster they touch, and writes out the refcount blocks the stream has left behind.
    fn allocate(&mut self, len: u64, aligned: bool) -> Result<u64> {
        let c = self.cluster_size();
        let start = if aligned { self.end.next_multiple_of(c) } else { self.end };
        self.end = start + len;
        for cluster in start / c..self.end.div_ceil(c) {
            self.refcounts.count(cluster, c as usize);
        }
        while (self.refcounts.first + 1) * self.refcounts.per_block <= self.end / c {
            self.close_refcount_block()?;
        }
        Ok(start)
    }

    /// Writes the first refcount block in memory into a cluster of its own at the end of the file (counted in
    /// whichever block covers that cluster) and enters it in the refcount table.
    fn close_refcount_block(&mut self) -> Result<()> {
        let c = self.cluster_size();
        let at = self.end.next_multiple_of(c);
        self.end = at + c;
        self.refcounts.count(at / c, c as usize);
        let index = self.refcounts.first;
        let block = self.refcounts.blocks.pop_front().unwrap_or_else(|| vec![0; c as usize]);
        self.refcounts.first += 1;
        self.sink.write_at(at, &block)?;
        let mut entry = [0u8; 8];
        BigEndian::write_u64(&mut entry, at);
        self.sink.write_at(self.header.refcount_table_offset + index * 8, &entry)
    }

    /// Writes the L2 table being filled.
    fn close_l2(&mut self) -> Result<()> {
        if let Some((_, offset, entries)) = self.l2.take() {
            let mut table = vec![0u8; self.cluster_size() as usize];
            BigEndian::write_u64_into(&entries, &mut table);
            self.sink.write_at(offset, &table)?;
        }
        Ok(())
    }

    /// Makes the L2 table for `l1_index` the one being filled, reserving its cluster and entering it in L1.
    fn open_l2(&mut self, l1_index: u64) -> Result<()> {
        if self.l2.as_ref().is_some_and(|(i, _, _)| *i == l1_index) {
            return Ok(());
        }
        self.close_l2()?;
        let offset = self.allocate(self.cluster_size(), true)?;
        let mut entry = [0u8; 8];
        BigEndian::write_u64(&mut entry, entry::l1_entry(offset));
        self.sink.write_at(self.header.l1_table_offset + l1_index * 8, &entry)?;
        self.l2 = Some((l1_index, offset, vec![0; 1 << self.header.layout.l2_bits()]));
        Ok(())
    }
}

impl ImageWriter for Qcow2Writer {
    fn unit_size(&self) -> u64 {
        self.cluster_size()
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        Arc::new(self.encoder)
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        let Some(data) = encoded else { return Ok(()) };
        let c = self.cluster_size();
        if index >= self.header.size.div_ceil(c) {
            return Err(Error::argument(format!("Cluster {index} is beyond the end of the disk")));
        }
        let l2_bits = self.header.layout.l2_bits();
        self.place_front()?;
        self.open_l2(index >> l2_bits)?;
        let len = data.len() as u64;
        let at = self.allocate(len, len == c)?;
        self.sink.write_at(at, &data)?;
        let entry = if len == c {
            entry::l2_data_entry(at)
        } else {
            CompressedRun::encode(at, len, self.header.layout.cluster_bits)
        };
        if let Some((_, _, entries)) = self.l2.as_mut() {
            entries[(index & ((1 << l2_bits) - 1)) as usize] = entry;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Box<dyn Finishing>> {
        self.place_front()?;
        self.close_l2()?;
        // The last block may count its own cluster, or spill into one more block that does.
        while !self.refcounts.blocks.is_empty() {
            self.close_refcount_block()?;
        }
        // The header goes last, so an interrupted file does not carry a valid magic.
        self.sink.write_at(0, &self.header.to_cluster())?;
        self.sink.finish(self.end)?;
        Ok(Box::new(Finished(self.sink)))
    }
}

#[cfg(test)]
mod tests;
