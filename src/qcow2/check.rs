//! `qemu-img check` for qcow2: every reference the image makes (header, L1, L2 tables, data and compressed
//! clusters, refcount table and blocks) is counted per host cluster and compared with the refcounts the
//! image stores. A stored refcount below the references is a corruption (a write would free a cluster still
//! in use), above them a leak; a COPIED flag that disagrees with a refcount of one is a corruption too. The
//! counts and messages follow qemu's `qcow2_check_refcounts`, damaged tables included: an unaligned table is
//! walked where it points, reads past the end of the file see zeros, so the verdict and the figures are
//! qemu-img's.
//!
//! Internal snapshots' L1 and L2 tables and data are counted too (their COPIED flags and the allocation
//! figures concern the active table only, as in qemu).
//!
//! Memory: a u16 per host cluster of a window of the file — all of it up to 32 Mi clusters (2 TiB with
//! 64 KiB clusters); a larger file is counted a window at a time, walking the tables once per window — plus
//! one table or block at a time. Images with persistent bitmaps, whose tables hold clusters too, are not
//! checked.

use super::HEAD;
use super::entry::{self, Layout};
use super::header::{Header, MAX_L1_BYTES};
use super::refcount;
use super::snapshot::{self, Snapshot};
use crate::error::{Error, Result};
use crate::io::{MAX_BUFFER, ReadAt, zeroed_buffer};
use crate::report::Report;
use byteorder::{BigEndian, ByteOrder};
use std::ops::Range;

/// Table entries read at once.
const CHUNK_ENTRIES: u64 = 8192;

/// Host clusters counted per pass: 64 MiB of u16 counts.
const WINDOW_CLUSTERS: u64 = MAX_BUFFER / 2;

/// Checks the qcow2 image in `file`; `problem` receives each error or leak as qemu-img words it.
///
/// # Errors
/// Whatever stops the image from being opened (the reader's header validation), `Unsupported` for
/// bitmaps, read errors.
pub fn check(file: &dyn ReadAt, problem: &mut dyn FnMut(&str)) -> Result<Report> {
    check_in_windows(file, problem, WINDOW_CLUSTERS)
}

fn check_in_windows(file: &dyn ReadAt, problem: &mut dyn FnMut(&str), window: u64) -> Result<Report> {
    let file_len = file.len();
    let mut head = zeroed_buffer(HEAD.min(file_len), "qcow2 header")?;
    file.read_exact_at(0, &mut head)?;
    let mut cluster0 = zeroed_buffer(Header::cluster_size(&head)?.min(file_len), "qcow2 header cluster")?;
    file.read_exact_at(0, &mut cluster0)?;
    let header = Header::parse(&cluster0, file_len)?;
    if header.bitmaps {
        return Err(Error::unsupported("Checking images with persistent bitmaps is not supported"));
    }
    let mut checker = Checker::new(file, &header, problem)?;
    // Stored refcounts are needed while walking L1 (for the COPIED flags), so the refcount table is read
    // first; its own clusters and blocks are counted after the L1 walk, as qemu does, so that a refcount
    // block also used as data shows up as a block with two references.
    checker.read_refcount_table()?;
    // One more cluster than the file holds, for a reference that runs into the cluster after the end (qemu
    // accepts up to a cluster past the end).
    let clusters = file_len.div_ceil(checker.cluster_size) + 1;
    let mut start = 0;
    while start < clusters {
        checker.start_window(start..clusters.min(start + window))?;
        checker.reference(0, checker.cluster_size);
        checker.walk_l1(header.l1_table_offset, header.l1_size, true)?;
        checker.walk_snapshots()?;
        checker.count_refcount_structures();
        checker.compare()?;
        start += window;
    }
    Ok(checker.report)
}

/// A refcount table entry.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// The block's offset, reserved bits left out; 0 for none.
    offset: u64,
    /// Whether the block counts as a reference to its cluster (a valid entry; qemu skips the others).
    counted: bool,
}

struct Checker<'a> {
    file: &'a dyn ReadAt,
    header: &'a Header,
    problem: &'a mut dyn FnMut(&str),
    layout: Layout,
    cluster_size: u64,
    file_len: u64,
    /// The host clusters this pass counts.
    window: Range<u64>,
    /// References found, per host cluster of the window.
    references: Vec<u16>,
    /// Refcount table entries, decoded.
    blocks: Vec<Block>,
    /// The refcount block last read: its offset and bytes.
    cached: Option<(u64, Vec<u8>)>,
    next_contiguous: u64,
    /// Whether the L1 table being walked is the active one: only its COPIED flags and allocation count.
    active: bool,
    /// L2 tables walked for the current L1 table.
    l2_walks: u64,
    /// The highest host cluster in use or referenced (qemu starts at 0, so the end offset is never 0).
    highest: u64,
    report: Report,
}

impl<'a> Checker<'a> {
    fn new(file: &'a dyn ReadAt, header: &'a Header, problem: &'a mut dyn FnMut(&str)) -> Result<Self> {
        let cluster_size = header.layout.cluster_size();
        let report =
            Report { total_clusters: header.size.next_multiple_of(512).div_ceil(cluster_size), ..Report::default() };
        Ok(Checker {
            file,
            header,
            problem,
            layout: header.layout,
            cluster_size,
            file_len: file.len(),
            window: 0..0,
            references: Vec::new(),
            blocks: Vec::new(),
            cached: None,
            next_contiguous: 0,
            active: true,
            l2_walks: 0,
            highest: 0,
            report,
        })
    }

    fn start_window(&mut self, window: Range<u64>) -> Result<()> {
        let len = (window.end - window.start) as usize;
        self.references.clear();
        self.references
            .try_reserve_exact(len)
            .map_err(|_| Error::limit(format!("Cannot allocate counts for {len} clusters")))?;
        self.references.resize(len, 0);
        self.window = window;
        Ok(())
    }

    /// The tables are walked once per window; what the walk itself finds is reported on the first.
    fn first_pass(&self) -> bool {
        self.window.start == 0
    }

    /// Whether this walk reports the active table's COPIED flags and allocation figures.
    fn reports_active(&self) -> bool {
        self.active && self.first_pass()
    }

    fn corruption(&mut self, message: &str) {
        self.report.corruptions += 1;
        (self.problem)(message);
    }

    /// A corruption the table walk finds (reported once, not once per window).
    fn walk_corruption(&mut self, message: &str) {
        if self.first_pass() {
            self.corruption(message);
        }
    }

    fn walk_check_error(&mut self, message: &str) {
        if self.first_pass() {
            self.report.check_errors += 1;
            (self.problem)(message);
        }
    }

    /// Counts a reference to every cluster of the window `[offset, offset + size)` touches; a range ending a
    /// cluster or more past the end of the file is a corruption instead, as in qemu. Returns whether the
    /// range is in the file.
    fn reference(&mut self, offset: u64, size: u64) -> bool {
        if size == 0 {
            return true;
        }
        let end = offset.saturating_add(size);
        if end.saturating_sub(self.file_len) >= self.cluster_size {
            self.walk_corruption(&format!(
                "ERROR: counting reference for region exceeding the end of the file by one cluster or more: \
                 offset {offset:#x} size {size:#x}"
            ));
            return false;
        }
        let first = (offset / self.cluster_size).max(self.window.start);
        let last = end.div_ceil(self.cluster_size).min(self.window.end);
        for cluster in first..last {
            let n = &mut self.references[(cluster - self.window.start) as usize];
            *n = n.saturating_add(1);
        }
        true
    }

    /// Reads `count` big-endian u64 entries of the table at `offset` in chunks, handing each to `f` with
    /// its index.
    fn each_entry(
        &mut self,
        offset: u64,
        count: u64,
        f: &mut dyn FnMut(&mut Self, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let mut start = 0;
        while start < count {
            let n = CHUNK_ENTRIES.min(count - start);
            let mut raw = zeroed_buffer(n * 8, "table")?;
            self.file.read_exact_at(offset + start * 8, &mut raw)?;
            for (i, e) in raw.chunks_exact(8).enumerate() {
                f(self, start + i as u64, BigEndian::read_u64(e))?;
            }
            start += n;
        }
        Ok(())
    }

    fn walk_l1(&mut self, offset: u64, size: u32, active: bool) -> Result<()> {
        let size = u64::from(size);
        self.active = active;
        self.l2_walks = 0;
        if size == 0 || !self.reference(offset, size * 8) {
            return Ok(());
        }
        if offset + size * 8 > self.file_len {
            self.walk_check_error("ERROR: I/O error in check_refcounts_l1: the L1 table is beyond the end of the file");
            return Ok(());
        }
        self.each_entry(offset, size, &mut |c, index, l1_entry| c.l1_entry(index, l1_entry))
    }

    /// Counts the snapshot table and walks each snapshot's L1 table.
    fn walk_snapshots(&mut self) -> Result<()> {
        let mut offset = self.header.snapshots_offset;
        // Each snapshot has an L1 table of its own, so together they fit in the file; crafted entries that
        // all name one huge table would otherwise make the walk endless.
        let mut l1_bytes = 0;
        for i in 0..self.header.nb_snapshots {
            let mut fixed = [0u8; snapshot::FIXED_LEN];
            self.file.read_exact_at(offset, &mut fixed)?;
            let sn = Snapshot::parse(&fixed);
            l1_bytes += u64::from(sn.l1_size) * 8;
            if l1_bytes > self.file_len {
                return Err(Error::corrupt("The snapshots' L1 tables add up to more than the file").at(offset));
            }
            if sn.l1_table_offset % self.cluster_size != 0 {
                self.walk_corruption(&format!(
                    "ERROR snapshot {i} l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry \
                     corrupted",
                    sn.l1_table_offset
                ));
            } else if u64::from(sn.l1_size) * 8 > MAX_L1_BYTES {
                self.walk_corruption(&format!(
                    "ERROR snapshot {i} l1_size={:#x}: L1 table is too large; snapshot table entry corrupted",
                    sn.l1_size
                ));
            } else {
                self.walk_l1(sn.l1_table_offset, sn.l1_size, false)?;
            }
            offset = (offset + sn.len).next_multiple_of(8);
        }
        let table = self.header.snapshots_offset;
        // As qemu, the table ends with the last entry's name, without its padding.
        let end = if self.header.nb_snapshots == 0 { table } else { offset.max(table) };
        self.reference(table, end - table);
        Ok(())
    }

    fn l1_entry(&mut self, index: u64, l1_entry: u64) -> Result<()> {
        if l1_entry == 0 {
            return Ok(());
        }
        if entry::l1_reserved_bits(l1_entry) {
            self.walk_corruption(&format!("ERROR found L1 entry with reserved bits set: {l1_entry:x}"));
        }
        // As qemu, an entry that is only reserved bits walks offset 0, and an unaligned table is walked
        // where it points: counting what it names is how the damage shows.
        let l2 = entry::l1_offset_bits(l1_entry);
        self.reference(l2, self.cluster_size);
        if entry::l2_table_offset(l1_entry, &self.layout).is_err() {
            self.walk_corruption(&format!("ERROR l2_offset={l2:x}: Table is not cluster aligned; L1 entry corrupted"));
        }
        if l2 != 0 && self.reports_active() {
            if let Some(refcount) = self.stored_refcount(l2 / self.cluster_size)? {
                if (refcount == 1) != entry::copied(l1_entry) {
                    self.walk_corruption(&format!(
                        "ERROR OFLAG_COPIED L2 cluster: l1_index={index} l1_entry={l1_entry:x} refcount={refcount}"
                    ));
                }
            }
        }
        // A crafted L1 table can name one L2 table millions of times; walking it each time would take hours.
        // In a real one every L2 table is a cluster of its own, so there are never more than the file holds.
        self.l2_walks += 1;
        if self.l2_walks > self.file_len.div_ceil(self.cluster_size) {
            return Err(Error::corrupt("An L1 table names more L2 tables than the file has clusters"));
        }
        // qemu counts fragmentation within each L2 table: the first cluster of a table never counts.
        self.next_contiguous = 0;
        let mut table = zeroed_buffer(self.cluster_size, "L2 table")?;
        self.read_zero_filled(l2, &mut table)?;
        let size = self.layout.l2_entry_size() as usize;
        for e in table.chunks_exact(size) {
            let bitmap = if self.layout.extended_l2 { BigEndian::read_u64(&e[8..]) } else { 0 };
            self.l2_entry(BigEndian::read_u64(e), bitmap)?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`, zeros past the end of the file, as qemu's block layer reads.
    fn read_zero_filled(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let in_file = self.file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        self.file.read_exact_at(offset, &mut buf[..in_file])?;
        buf[in_file..].fill(0);
        Ok(())
    }

    fn l2_entry(&mut self, word: u64, bitmap: u64) -> Result<()> {
        if let Some(run) = entry::compressed_run(word, &self.layout) {
            if entry::copied(word) {
                self.walk_corruption(&format!(
                    "ERROR: coffset={:#x}: copied flag must never be set for compressed clusters",
                    run.offset
                ));
            }
            if self.reports_active() {
                self.report.allocated_clusters += 1;
                self.report.compressed_clusters += 1;
                // As qemu: compressed clusters are fragmented by nature.
                self.report.fragmented_clusters += 1;
            }
            self.reference(run.offset, run.length);
            return Ok(());
        }
        let a = entry::allocation(word, bitmap, &self.layout);
        if a.reserved_bits {
            self.walk_corruption(&format!("ERROR found l2 entry with reserved bits set: {word:x}"));
        }
        let host = a.host;
        if host == 0 {
            if a.orphan_subclusters {
                self.walk_corruption("ERROR: Unallocated cluster has non-zero subcluster allocation map");
            }
            return Ok(());
        }
        if a.conflicting_subclusters {
            self.walk_corruption(&format!(
                "ERROR offset={host:x}: Allocated cluster has corrupted subcluster allocation bitmap"
            ));
        }
        if host % self.cluster_size != 0 {
            let what = if a.holds_data { "Data" } else { "Preallocated" };
            self.walk_corruption(&format!(
                "ERROR offset={host:x}: {what} cluster is not properly aligned; L2 entry corrupted."
            ));
        }
        if self.reports_active() {
            self.report.allocated_clusters += 1;
            if self.next_contiguous != 0 && host != self.next_contiguous {
                self.report.fragmented_clusters += 1;
            }
            self.next_contiguous = host + self.cluster_size;
        }
        self.reference(host, self.cluster_size);
        if self.reports_active() {
            if let Some(refcount) = self.stored_refcount(host / self.cluster_size)? {
                if (refcount == 1) != entry::copied(word) {
                    self.walk_corruption(&format!(
                        "ERROR OFLAG_COPIED data cluster: l2_entry={word:x} refcount={refcount}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads and checks the refcount table's entries.
    fn read_refcount_table(&mut self) -> Result<()> {
        let offset = self.header.refcount_table_offset;
        let entries = self.refcount_table_entries();
        if offset + entries * 8 > self.file_len {
            return Err(Error::corrupt("Refcount table extends beyond the end of the file").at(offset));
        }
        let mut blocks = Vec::new();
        self.each_entry(offset, entries, &mut |c, index, e| {
            blocks.push(c.refcount_block(index, e));
            Ok(())
        })?;
        self.blocks = blocks;
        Ok(())
    }

    fn refcount_table_entries(&self) -> u64 {
        u64::from(self.header.refcount_table_clusters) * self.cluster_size / 8
    }

    /// Decodes and checks refcount table entry `index`, as qemu's `check_refblocks`.
    fn refcount_block(&mut self, index: u64, e: u64) -> Block {
        let offset = refcount::block_offset(e);
        let mut block = Block { offset, counted: false };
        if refcount::reserved_bits(e) {
            self.corruption(&format!("ERROR refcount table entry {index} has reserved bits set"));
        } else if offset % self.cluster_size != 0 {
            self.corruption(&format!(
                "ERROR refcount block {index} is not cluster aligned; refcount table entry corrupted"
            ));
        } else if offset / self.cluster_size >= self.file_len.div_ceil(self.cluster_size) {
            self.corruption(&format!("ERROR refcount block {index} is outside image"));
        } else {
            block.counted = offset != 0;
        }
        block
    }

    /// Counts the refcount table's clusters and each refcount block, which must have no other reference.
    fn count_refcount_structures(&mut self) {
        self.reference(self.header.refcount_table_offset, self.refcount_table_entries() * 8);
        for index in 0..self.blocks.len() {
            let Block { offset, counted: true } = self.blocks[index] else { continue };
            self.reference(offset, self.cluster_size);
            let cluster = offset / self.cluster_size;
            if !self.window.contains(&cluster) {
                continue;
            }
            let n = self.references[(cluster - self.window.start) as usize];
            if n != 1 {
                self.corruption(&format!("ERROR refcount block {index} refcount={n}"));
            }
        }
    }

    /// The refcount the image stores for `cluster`, read as qemu reads it: reserved bits ignored, a block
    /// past the end of the file reads as zeros; `None` when the block's offset is unaligned (qemu: EIO).
    fn stored_refcount(&mut self, cluster: u64) -> Result<Option<u64>> {
        let order = self.header.refcount_order;
        let per_block = refcount::entries_per_block(self.layout.cluster_bits, order);
        let offset = match self.blocks.get((cluster / per_block) as usize) {
            None | Some(Block { offset: 0, .. }) => return Ok(Some(0)),
            Some(b) if b.offset % self.cluster_size != 0 => return Ok(None),
            Some(b) => b.offset,
        };
        if self.cached.as_ref().is_none_or(|(o, _)| *o != offset) {
            let mut b = zeroed_buffer(self.cluster_size, "refcount block")?;
            self.read_zero_filled(offset, &mut b)?;
            self.cached = Some((offset, b));
        }
        let (_, b) = self.cached.as_ref().expect("loaded above");
        Ok(Some(refcount::get(b, cluster % per_block, order)))
    }

    /// Compares the window's references with the stored refcounts.
    fn compare(&mut self) -> Result<()> {
        let in_file = self.file_len.div_ceil(self.cluster_size);
        for cluster in self.window.clone() {
            let reference = u64::from(self.references[(cluster - self.window.start) as usize]);
            if cluster >= in_file && reference == 0 {
                break;
            }
            let Some(refcount) = self.stored_refcount(cluster)? else {
                self.report.check_errors += 1;
                (self.problem)(&format!("Can't get refcount for cluster {cluster}: Input/output error"));
                continue;
            };
            if refcount > 0 || reference > 0 {
                self.highest = cluster;
            }
            if refcount < reference {
                self.corruption(&format!("ERROR cluster {cluster} refcount={refcount} reference={reference}"));
            } else if refcount > reference {
                self.report.leaks += 1;
                (self.problem)(&format!("Leaked cluster {cluster} refcount={refcount} reference={reference}"));
            }
        }
        self.report.image_end_offset = (self.highest + 1) * self.cluster_size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{RunOptions, run};
    use crate::image::Image;
    use crate::io::MemorySink;
    use crate::options::OptionList;
    use crate::qcow2::{Qcow2Options, Qcow2Writer};
    use crate::raw::RawImage;

    /// A compressed image of 512-byte clusters written by our writer, with a few stored refcounts changed.
    fn image() -> Vec<u8> {
        let guest: Vec<u8> = (0..300 * 512u32).map(|i| (i / 512 % 13) as u8 ^ (i % 5) as u8).collect();
        let opts = Qcow2Options::from_options(&mut OptionList::parse("cluster_size=512").unwrap()).unwrap();
        let sink = MemorySink::default();
        let source = Box::new(RawImage::new(Box::new(guest)));
        let w = Qcow2Writer::new(Box::new(sink.clone()), source.virtual_size(), &opts, false).unwrap();
        run(source, Box::new(w), RunOptions::default()).unwrap();
        let mut file = sink.take();
        // Refcount block 0 (the table's first entry): cluster 4 (data) one too low, cluster 7 one too high.
        let block = BigEndian::read_u64(&file[512..]) as usize;
        file[block + 2 * 4 + 1] -= 1;
        file[block + 2 * 7 + 1] += 1;
        file
    }

    fn run_check(file: &[u8], window: u64) -> (Report, Vec<String>) {
        let mut problems = Vec::new();
        let report = check_in_windows(&file.to_vec(), &mut |p| problems.push(p.to_string()), window).unwrap();
        (report, problems)
    }

    #[test]
    fn corrupted_metadata_never_panics() {
        let clean = image();
        let block = BigEndian::read_u64(&clean[512..]) as usize;
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..3000 {
            let mut file = clean.clone();
            for _ in 0..1 + x % 4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // The header, refcount table, L1 table, first L2 table; or the first refcount block.
                let at = if x & 1 == 0 { (x % 4096) as usize } else { block + (x % 512) as usize };
                file[at] ^= (x >> 32) as u8 | 1;
            }
            let _ = check_in_windows(&file, &mut |_| {}, 1 + x % 300);
        }
    }

    #[test]
    fn one_l2_table_named_by_every_l1_entry_is_refused_quickly() {
        // 128 GiB with 512-byte clusters: an L1 table of 2^22 entries (32 MiB), every one naming cluster 3.
        let l1_entries = 1u64 << 22;
        let mut file = vec![0u8; 2048 + (l1_entries as usize) * 8 + 2048];
        file[..4].copy_from_slice(b"QFI\xfb");
        BigEndian::write_u32(&mut file[4..], 3); //                 version
        BigEndian::write_u32(&mut file[20..], 9); //                cluster_bits
        BigEndian::write_u64(&mut file[24..], l1_entries << 15); // size
        BigEndian::write_u32(&mut file[36..], l1_entries as u32); // l1_size
        BigEndian::write_u64(&mut file[40..], 2048); //             l1_table_offset
        BigEndian::write_u64(&mut file[48..], 512); //              refcount_table_offset
        BigEndian::write_u32(&mut file[56..], 1); //                refcount_table_clusters
        BigEndian::write_u32(&mut file[96..], 4); //                refcount_order
        BigEndian::write_u32(&mut file[100..], 104); //             header_length
        for e in file[2048..2048 + (l1_entries as usize) * 8].chunks_exact_mut(8) {
            BigEndian::write_u64(e, 1536);
        }
        let err = check(&file, &mut |_| {}).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
    }

    #[test]
    fn windows_of_any_size_find_the_same() {
        let file = image();
        let (whole, problems) = run_check(&file, WINDOW_CLUSTERS);
        // Cluster 4 too low, cluster 7 too high; both hold data, so both COPIED flags now disagree.
        assert_eq!((whole.corruptions, whole.leaks, whole.check_errors), (3, 1, 0), "{problems:?}");
        assert!(problems.contains(&"ERROR cluster 4 refcount=0 reference=1".to_string()), "{problems:?}");
        for window in [1, 2, 3, 100, 255, 256, 257] {
            let (report, mut windowed) = run_check(&file, window);
            let mut expected = problems.clone();
            expected.sort();
            windowed.sort();
            assert_eq!((&report, &windowed), (&whole, &expected), "window of {window} clusters");
        }
    }
}
