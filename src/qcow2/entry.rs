//! L1 and L2 table entries (qcow2 spec, "Cluster mapping" and "Extended L2 Entries"): the bit layouts, decoded
//! into enums at this one boundary. No other file knows a mask.
//!
//! ```text
//! L1 entry (u64):
//!   Bit  0 -  8:  Reserved (0)
//!        9 - 55:  Offset of the L2 table in the file, cluster-aligned; 0 = the whole range is unallocated
//!       56 - 62:  Reserved (0)
//!           63:   Refcount is exactly one (COPIED); irrelevant for reading
//!
//! L2 entry (u64; with extended L2 followed by a u64 subcluster bitmap):
//!   Bit  0 - 61:  Cluster descriptor
//!           62:   0 = standard cluster, 1 = compressed cluster
//!           63:   Refcount is exactly one (COPIED); irrelevant for reading
//!
//! Standard cluster descriptor:
//!   Bit       0:  Reads as zeros (version 3 only; reserved with extended L2)
//!        1 -  8:  Reserved (0)
//!        9 - 55:  Host cluster offset, cluster-aligned; 0 = unallocated (unless the zero bit is set)
//!       56 - 61:  Reserved (0)
//!
//! Compressed cluster descriptor, x = 62 - (cluster_bits - 8):
//!   Bit  0 - x-1: Byte offset of the compressed data in the file (any alignment)
//!        x - 61:  Additional 512-byte sectors the data occupies beyond the one holding its first byte
//!
//! Extended L2 subcluster bitmap (32 subclusters of cluster_size / 32):
//!   Bit  0 - 31:  Subcluster x is allocated: its data is at host offset + x * subcluster_size
//!       32 - 63:  Subcluster x reads as zeros (never together with its allocated bit)
//! ```
//!
//! Reserved bits are ignored, as qemu ignores them when reading.

/// Bits 9–55: the L2 table offset in an L1 entry, the host cluster offset in a standard L2 entry.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bit 62 of an L2 entry.
const COMPRESSED: u64 = 1 << 62;
/// Bit 63 of L1 and L2 entries: the cluster's refcount is exactly one, so qemu may write it in place.
const COPIED: u64 = 1 << 63;
/// Bits 56–62 of an L1 entry.
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
/// Bits 1–8 and 56–61 of a standard cluster descriptor.
const L2_RESERVED: u64 = 0x3f00_0000_0000_01fe;
/// Bit 0 of a standard cluster descriptor.
const ZERO: u64 = 1;
/// Sectors in a compressed descriptor are always 512 bytes, whatever the cluster size.
const SECTOR: u64 = 512;
/// Every subcluster's bit in one half of the extended L2 bitmap.
const ALL_SUBCLUSTERS: u32 = u32::MAX;
/// Subclusters per cluster with extended L2.
pub const SUBCLUSTERS: u32 = 32;

/// The table geometry an image's header fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// log2 of the cluster size, 9..=21.
    pub cluster_bits: u32,
    /// Whether L2 entries are 16 bytes with a subcluster bitmap (incompatible feature bit 4).
    pub extended_l2: bool,
    /// Version 3: the zero flag exists. In a version 2 image a set zero bit is corruption.
    pub zero_flag: bool,
}

impl Layout {
    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Bytes per L2 entry.
    pub fn l2_entry_size(&self) -> u64 {
        if self.extended_l2 { 16 } else { 8 }
    }

    /// log2 of the entries in one L2 table (a table is one cluster).
    pub fn l2_bits(&self) -> u32 {
        self.cluster_bits - if self.extended_l2 { 4 } else { 3 }
    }

    /// log2 of the guest bytes one L2 table (one L1 entry) maps.
    pub fn l2_span_bits(&self) -> u32 {
        self.cluster_bits + self.l2_bits()
    }

    fn subcluster_bits(&self) -> u32 {
        self.cluster_bits - SUBCLUSTERS.trailing_zeros()
    }
}

/// Where a compressed cluster's bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedRun {
    /// First byte of the compressed stream.
    pub offset: u64,
    /// Bytes to read from `offset`; the stream may end before them (the rest is slack or another cluster).
    pub length: u64,
}

impl CompressedRun {
    /// Decodes a compressed cluster descriptor (bits 0–61 of the L2 entry).
    pub fn decode(entry: u64, cluster_bits: u32) -> Self {
        let x = 62 - (cluster_bits - 8);
        let offset = entry & ((1 << x) - 1);
        let sectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1;
        CompressedRun { offset, length: sectors * SECTOR - (offset & (SECTOR - 1)) }
    }

    /// One past the last byte to read.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }

    /// The L2 entry for `length` (≥ 1) compressed bytes at `offset`, as qemu writes it: the sector field counts
    /// the sectors after the one holding the first byte, up to the one holding the last. The caller keeps
    /// `offset` below `2^x` and `length` within one cluster.
    pub fn encode(offset: u64, length: u64, cluster_bits: u32) -> u64 {
        let x = 62 - (cluster_bits - 8);
        let extra = (offset + length - 1) / SECTOR - offset / SECTOR;
        COMPRESSED | extra << x | offset
    }

    /// The highest file offset a compressed descriptor can hold, plus one.
    pub fn offset_limit(cluster_bits: u32) -> u64 {
        1 << (62 - (cluster_bits - 8))
    }
}

/// The L1 entry for an L2 table at `offset`, which the writer gives a refcount of one.
pub fn l1_entry(offset: u64) -> u64 {
    COPIED | offset
}

/// The L2 entry for a data cluster at `offset`, which the writer gives a refcount of one.
pub fn l2_data_entry(offset: u64) -> u64 {
    COPIED | offset
}

/// Whether an L1 or L2 entry claims a refcount of exactly one (qemu-img check compares this with the
/// refcounts, and a compressed cluster must never claim it).
pub fn copied(entry: u64) -> bool {
    entry & COPIED != 0
}

/// Whether an L1 entry has reserved bits set (qemu-img check counts that as corruption).
pub fn l1_reserved_bits(entry: u64) -> bool {
    entry & L1_RESERVED != 0
}

/// The offset bits of an L1 entry, unvalidated: qemu-img check walks even an unaligned table.
pub fn l1_offset_bits(entry: u64) -> u64 {
    entry & OFFSET_MASK
}

/// The compressed run of an L2 entry, if it is compressed.
pub fn compressed_run(entry: u64, layout: &Layout) -> Option<CompressedRun> {
    (entry & COMPRESSED != 0).then(|| CompressedRun::decode(entry, layout.cluster_bits))
}

/// An uncompressed L2 entry as qemu-img check classifies it (qemu's cluster types, without the validation
/// [`decode_l2`] does for reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The host cluster offset as stored, maybe unaligned; 0 for none. A zero cluster may keep one.
    pub host: u64,
    /// Whether the host cluster holds guest data (not only reserved for a zero cluster).
    pub holds_data: bool,
    /// Reserved bits of the standard cluster descriptor are set.
    pub reserved_bits: bool,
    /// Extended L2: some subclusters are marked both allocated and zero.
    pub conflicting_subclusters: bool,
    /// Extended L2: allocated subclusters without a host cluster.
    pub orphan_subclusters: bool,
}

/// Classifies an uncompressed L2 entry; `bitmap` is the second half of an extended entry (0 otherwise).
pub fn allocation(entry: u64, bitmap: u64, layout: &Layout) -> Allocation {
    let host = entry & OFFSET_MASK;
    let (alloc, zero) = (bitmap as u32, (bitmap >> 32) as u32);
    Allocation {
        host,
        holds_data: if layout.extended_l2 { alloc != 0 } else { entry & ZERO == 0 },
        reserved_bits: entry & L2_RESERVED != 0,
        conflicting_subclusters: layout.extended_l2 && host != 0 && alloc & zero != 0,
        orphan_subclusters: layout.extended_l2 && host == 0 && alloc != 0,
    }
}

/// Decodes an L1 entry into the offset of its L2 table, 0 when the range is unallocated.
///
/// # Errors
/// A message when the offset is not cluster-aligned.
pub fn l2_table_offset(entry: u64, layout: &Layout) -> Result<u64, String> {
    let offset = l1_offset_bits(entry);
    if offset & (layout.cluster_size() - 1) != 0 {
        return Err(format!("L2 table offset {offset:#x} is not cluster-aligned"));
    }
    Ok(offset)
}

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Nothing here: the backing file's data, or zeros.
    Unallocated,
    /// Reads as zeros, never from the backing file.
    Zero,
    /// The whole cluster is stored at this cluster-aligned host offset.
    Data(u64),
    /// The whole cluster is stored compressed.
    Compressed(CompressedRun),
    /// Extended L2 with subclusters of different kinds. `host` is 0 when no host cluster is allocated (then
    /// `alloc` is 0); `alloc` and `zero` never share a bit.
    Subclusters {
        /// Host cluster offset, or 0.
        host: u64,
        /// Allocated-subcluster bits.
        alloc: u32,
        /// Reads-as-zero subcluster bits.
        zero: u32,
    },
}

/// Decodes an L2 entry; `bitmap` is the second half of an extended entry (ignored otherwise).
///
/// # Errors
/// A message for combinations qemu treats as corruption: the zero flag in a version 2 image, an unaligned host
/// offset, subclusters both allocated and zero, allocated subclusters without a host cluster.
pub fn decode_l2(entry: u64, bitmap: u64, layout: &Layout) -> Result<Mapping, String> {
    if entry & COMPRESSED != 0 {
        return Ok(Mapping::Compressed(CompressedRun::decode(entry, layout.cluster_bits)));
    }
    let host = entry & OFFSET_MASK;
    if host & (layout.cluster_size() - 1) != 0 {
        return Err(format!("Data cluster offset {host:#x} is not cluster-aligned"));
    }
    if !layout.extended_l2 {
        return Ok(match (entry & ZERO != 0, host) {
            (true, _) if !layout.zero_flag => return Err("Zero cluster in a version 2 image".into()),
            (true, _) => Mapping::Zero,
            (false, 0) => Mapping::Unallocated,
            (false, host) => Mapping::Data(host),
        });
    }
    let (alloc, zero) = (bitmap as u32, (bitmap >> 32) as u32);
    if alloc & zero != 0 {
        return Err(format!("Subclusters both allocated and zero (bitmap {bitmap:#018x})"));
    }
    if host == 0 && alloc != 0 {
        return Err(format!("Allocated subclusters in an unallocated cluster (bitmap {bitmap:#018x})"));
    }
    Ok(match (alloc, zero) {
        (ALL_SUBCLUSTERS, _) => Mapping::Data(host),
        (_, ALL_SUBCLUSTERS) => Mapping::Zero,
        (0, 0) => Mapping::Unallocated,
        _ => Mapping::Subclusters { host, alloc, zero },
    })
}

/// What one guest byte holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Stored uncompressed at this host offset (of this very byte).
    Data(u64),
    /// Inside this compressed cluster.
    Compressed(CompressedRun),
    /// Reads as zeros.
    Zero,
    /// Left to the backing file.
    Unallocated,
}

impl Mapping {
    /// What the byte `in_cluster` bytes into the cluster holds, and for how many bytes from there (to the end
    /// of the cluster at most) the same holds, with host offsets continuing contiguously for data.
    pub fn piece(&self, in_cluster: u64, layout: &Layout) -> (Piece, u64) {
        let rest = layout.cluster_size() - in_cluster;
        match *self {
            Mapping::Unallocated => (Piece::Unallocated, rest),
            Mapping::Zero => (Piece::Zero, rest),
            Mapping::Data(host) => (Piece::Data(host + in_cluster), rest),
            Mapping::Compressed(run) => (Piece::Compressed(run), rest),
            Mapping::Subclusters { host, alloc, zero } => {
                let bits = layout.subcluster_bits();
                let first = (in_cluster >> bits) as u32;
                let kind = |x: u32| ((alloc >> x) & 1, (zero >> x) & 1);
                let end = (first + 1..SUBCLUSTERS).find(|&x| kind(x) != kind(first)).unwrap_or(SUBCLUSTERS);
                let len = (u64::from(end) << bits) - in_cluster;
                let piece = match kind(first) {
                    (1, _) => Piece::Data(host + in_cluster),
                    (_, 1) => Piece::Zero,
                    _ => Piece::Unallocated,
                };
                (piece, len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3: Layout = Layout { cluster_bits: 16, extended_l2: false, zero_flag: true };
    const V2: Layout = Layout { cluster_bits: 16, extended_l2: false, zero_flag: false };
    const EXT: Layout = Layout { cluster_bits: 16, extended_l2: true, zero_flag: true };

    #[test]
    fn geometry_follows_entry_size() {
        assert_eq!((V3.l2_bits(), V3.l2_span_bits()), (13, 29)); // 8192 entries x 64 KiB = 512 MiB
        assert_eq!((EXT.l2_bits(), EXT.l2_span_bits(), EXT.subcluster_bits()), (12, 28, 11));
    }

    #[test]
    fn l1_entries() {
        assert_eq!(l2_table_offset(0x8000_0000_0004_0000, &V3), Ok(0x40000)); // COPIED | 0x40000
        assert_eq!(l2_table_offset(0x7f00_0000_0000_01ff, &V3), Ok(0)); // only reserved bits: unallocated
        assert!(l2_table_offset(0x0000_0000_0004_0200, &V3).is_err()); // 0x40200 inside a 64 KiB cluster
    }

    #[test]
    fn standard_l2_entries() {
        assert_eq!(decode_l2(0x8000_0000_0005_0000, 0, &V3), Ok(Mapping::Data(0x50000))); // COPIED | 0x50000
        assert_eq!(decode_l2(0, 0, &V3), Ok(Mapping::Unallocated));
        assert_eq!(decode_l2(1, 0, &V3), Ok(Mapping::Zero)); // qemu-io write -z: zero, no host cluster
        assert_eq!(decode_l2(0x0000_0000_0006_0001, 0, &V3), Ok(Mapping::Zero)); // zero, host cluster kept
        assert!(decode_l2(1, 0, &V2).is_err()); // no zero flag before version 3
        assert!(decode_l2(0x0000_0000_0005_8000, 0, &V3).is_err()); // unaligned host cluster
    }

    #[test]
    fn compressed_descriptor_math() {
        // qemu, 64 KiB clusters: x = 54; offset 0x50113, sector field 1 -> 2 sectors - 0x113 = 749 bytes.
        let run = CompressedRun { offset: 0x50113, length: 749 };
        assert_eq!(decode_l2(0x4040_0000_0005_0113, 0, &V3), Ok(Mapping::Compressed(run)));
        assert_eq!(run.end(), 0x50400);
        // 512-byte clusters: x = 61, a one-bit sector field (bit 61).
        assert_eq!(CompressedRun::decode(0x2000_0000_0000_0200, 9), CompressedRun { offset: 0x200, length: 1024 });
        // 2 MiB clusters: x = 49, 13-bit field; all ones = 8192 sectors, less the offset into the first.
        assert_eq!(
            CompressedRun::decode(0x3ffe_0000_0000_0010, 21),
            CompressedRun { offset: 0x10, length: 8192 * 512 - 16 }
        );
    }

    #[test]
    fn encoders_round_trip_through_the_decoders() {
        // L1: COPIED | 0x40000, as qemu writes a fresh image's first L2 table.
        assert_eq!(l1_entry(0x40000), 0x8000_0000_0004_0000);
        assert_eq!(l2_table_offset(l1_entry(0x40000), &V3), Ok(0x40000));
        assert!(copied(l1_entry(0x40000)) && !l1_reserved_bits(l1_entry(0x40000)));
        // L2: COPIED | 0x50000.
        assert_eq!(l2_data_entry(0x50000), 0x8000_0000_0005_0000);
        assert_eq!(decode_l2(l2_data_entry(0x50000), 0, &V3), Ok(Mapping::Data(0x50000)));
        let a = allocation(l2_data_entry(0x50000), 0, &V3);
        assert_eq!((a.host, a.holds_data), (0x50000, true));
        // qemu's 749 bytes at 0x50113: last byte at 0x503ff, one sector after the first.
        let entry = CompressedRun::encode(0x50113, 749, 16);
        assert_eq!(entry, 0x4040_0000_0005_0113);
        assert!(!copied(entry));
        assert_eq!(compressed_run(entry, &V3), Some(CompressedRun { offset: 0x50113, length: 749 }));
        assert_eq!(compressed_run(l2_data_entry(0x50000), &V3), None);
        // One byte more spills into a third sector; the reader then reads to that sector's end.
        let run = CompressedRun::decode(CompressedRun::encode(0x50113, 750, 16), 16);
        assert_eq!(run, CompressedRun { offset: 0x50113, length: 3 * 512 - 0x113 });
        // 512-byte clusters: at most 511 bytes, which span two sectors at most (one bit).
        assert_eq!(CompressedRun::encode(0x3ff, 511, 9), 0x6000_0000_0000_03ff);
        assert_eq!(CompressedRun::offset_limit(16), 1 << 54);
    }

    #[test]
    fn allocations_as_qemu_img_check_sees_them() {
        // A zero cluster that keeps its host cluster (qemu's ZERO_ALLOC): allocated, no data.
        let a = allocation(0x0000_0000_0006_0001, 0, &V3);
        assert_eq!((a.host, a.holds_data), (0x60000, false));
        // Unaligned offsets are kept as they are, for the check to report.
        assert_eq!(allocation(0x8000_0000_0005_0200, 0, &V3).host, 0x50200);
        assert!(allocation(0x0100_0000_0005_0000, 0, &V3).reserved_bits); // bit 56
        assert!(allocation(0x0000_0000_0000_0002, 0, &V3).reserved_bits); // bit 1
        assert!(!allocation(0x8000_0000_0005_0001, 0, &V3).reserved_bits);
        assert_eq!(l1_offset_bits(0x8000_0000_0004_0200), 0x40200);
        // Extended L2: subcluster 0 both allocated and zero; allocated subclusters without a host cluster.
        assert!(allocation(0x50000, 0x0000_0001_0000_0001, &EXT).conflicting_subclusters);
        assert!(allocation(0, 0x0000_0000_0000_0001, &EXT).orphan_subclusters);
        let ok = allocation(0x50000, 0x0000_0000_0000_0003, &EXT);
        assert!(ok.holds_data && !ok.conflicting_subclusters && !ok.orphan_subclusters);
    }

    #[test]
    fn extended_l2_entries() {
        let host = 0x8000_0000_0005_0000;
        assert_eq!(decode_l2(host, 0xffff_ffff, &EXT), Ok(Mapping::Data(0x50000)));
        assert_eq!(decode_l2(0, 0xffff_ffff_0000_0000, &EXT), Ok(Mapping::Zero));
        assert_eq!(decode_l2(host, 0, &EXT), Ok(Mapping::Unallocated)); // host cluster, nothing written yet
        assert_eq!(decode_l2(1, 0, &EXT), Ok(Mapping::Unallocated)); // bit 0 is reserved with extended L2
        assert_eq!(
            decode_l2(host, 0x0000_0004_0000_0003, &EXT),
            Ok(Mapping::Subclusters { host: 0x50000, alloc: 3, zero: 4 })
        );
        assert!(decode_l2(host, 0x0000_0001_0000_0001, &EXT).is_err()); // subcluster 0 allocated and zero
        assert!(decode_l2(0, 0x0000_0000_0000_0001, &EXT).is_err()); // allocated without a host cluster
    }

    #[test]
    fn subcluster_pieces_run_to_the_next_change() {
        // 2 KiB subclusters: 0-1 allocated, 2 zero, 3-31 unallocated.
        let m = Mapping::Subclusters { host: 0x50000, alloc: 0b011, zero: 0b100 };
        assert_eq!(m.piece(0, &EXT), (Piece::Data(0x50000), 4096));
        assert_eq!(m.piece(100, &EXT), (Piece::Data(0x50064), 3996));
        assert_eq!(m.piece(4096, &EXT), (Piece::Zero, 2048));
        assert_eq!(m.piece(6144 + 1, &EXT), (Piece::Unallocated, 65536 - 6145));
        assert_eq!(Mapping::Data(0x50000).piece(10, &V3), (Piece::Data(0x5000a), 65526));
    }
}
