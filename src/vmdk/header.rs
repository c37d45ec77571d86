//! The SparseExtentHeader (VMware "Virtual Disk Format 5.0", pp. 7–8; FORMATS.md §2.1): 512 bytes,
//! little-endian, packed — so the u64s at 12..44 and the u16 at 77 are unaligned and written byte-wise.
//!
//! [`Header`] holds every field; the constants below are the values diskbridge writes for a streamOptimized
//! extent. [`Header::parse`] is the reader's side of the same layout.

use crate::error::{Error, Result};
use byteorder::{ByteOrder, LittleEndian};

/// `magicNumber`: `'V' | 'M' << 8 | 'D' << 16 | 'K' << 24` read as a little-endian u32, i.e. the bytes
/// `4B 44 4D 56` ("KDMV") on disk.
pub const MAGIC: u32 = 0x564D_444B;

/// `magicNumber` of ESXi's vmfsSparse extents (`-delta.vmdk` snapshots): "COWD" on disk.
const COWD_MAGIC: u32 = 0x4457_4F43;

/// `version` 3: what VMware and open-vmdk write for streamOptimized; ESXi rejects version 1 streams
/// ("sparse VMDK version too old").
pub const VERSION: u32 = 3;

/// Bit 0 (`SPARSEFLAG_VALID_NEWLINE_DETECTOR`): the four newline bytes at 73..77 are valid.
pub const FLAG_NEWLINE_DETECTOR: u32 = 1 << 0;
/// Bit 16 (`SPARSEFLAG_COMPRESSED`): grains are compressed with `compressAlgorithm`.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Bit 17 (`SPARSEFLAG_EMBEDDED_LBA`): every grain is behind a marker that carries its LBA.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `0x00030001`, as open-vmdk writes. Bit 1 (redundant GD) stays clear: the spec says a stream ignores
/// `rgdOffset`, and qemu's `0x30003` is the odd one out.
pub const FLAGS: u32 = FLAG_NEWLINE_DETECTOR | FLAG_COMPRESSED | FLAG_MARKERS;

/// `grainSize` in sectors: 128 sectors = 64 KiB grains, the only size VMware's tools write.
pub const GRAIN_SECTORS: u64 = 128;
/// `descriptorOffset`: the descriptor starts right after the header.
pub const DESCRIPTOR_OFFSET: u64 = 1;
/// `descriptorSize`: 20 sectors, the qemu and open-vmdk convention.
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// `numGTEsPerGT`: 512 entries = one 2 KiB grain table covering 32 MiB. VMware's disklib supports only
/// 512, and qemu rejects more.
pub const GTES_PER_GT: u64 = 512;
/// `gdOffset` in a stream's leading header: the grain directory is at the end, found through the footer.
pub const GD_AT_END: u64 = u64::MAX;
/// `compressAlgorithm` 1 = `COMPRESSION_DEFLATE` (in practice a zlib stream, see `grain.rs`).
pub const COMPRESSION_DEFLATE: u16 = 1;

/// The newline-detector bytes at 73..77: `'\n'`, `' '`, `'\r'`, `'\n'` — a file mangled by a text-mode
/// transfer no longer matches them.
const NEWLINE_DETECTOR: [u8; 4] = *b"\n \r\n";

/// Bit 1 (`SPARSEFLAG_USE_REDUNDANT`): a redundant GD and GTs sit at `rgdOffset`. Readers use the primary ones.
pub const FLAG_REDUNDANT_GD: u32 = 1 << 1;
/// Bit 2 (`SPARSEFLAG_MAGIC_GTE`): a grain table entry of 1 means a zeroed grain.
pub const FLAG_ZEROED_GRAIN: u32 = 1 << 2;
/// Bits 16..32 are incompatible: a reader must understand each one that is set (open-vmdk's
/// `SPARSEFLAG_INCOMPAT_FLAGS`); bits 0..16 may be ignored.
const INCOMPATIBLE_FLAGS: u32 = 0xFFFF_0000;

/// The grain table entry of a zeroed grain when [`FLAG_ZEROED_GRAIN`] is set.
pub const GTE_ZEROED: u32 = 1;

/// The largest `grainSize` accepted: 16384 sectors (8 MiB). VMware writes 128; a compressed grain is inflated
/// into a buffer of one grain (read from up to two), so this bounds what a hostile header can make us allocate.
pub const MAX_GRAIN_SECTORS: u64 = 1 << 14;
/// The largest `numGTEsPerGT` accepted; qemu refuses more ("L2 table size too big"), VMware writes 512.
pub const MAX_GTES_PER_GT: u64 = 512;

/// A SparseExtentHeader, field for field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `version`: 1 classic, 2 adds zeroed-grain entries, 3 for streamOptimized and extents over 2 GiB.
    pub version: u32,
    /// `flags`: the `FLAG_*` bits.
    pub flags: u32,
    /// `capacity`: guest size in sectors.
    pub capacity: u64,
    /// `grainSize`: sectors per grain, a power of two.
    pub grain_sectors: u64,
    /// `descriptorOffset`: sector of the embedded descriptor, 0 if there is none.
    pub descriptor_offset: u64,
    /// `descriptorSize`: sectors of the embedded descriptor.
    pub descriptor_sectors: u64,
    /// `numGTEsPerGT`: entries per grain table.
    pub gtes_per_gt: u32,
    /// `rgdOffset`: sector of the redundant grain directory.
    pub rgd_offset: u64,
    /// `gdOffset`: sector of the grain directory, or [`GD_AT_END`].
    pub gd_offset: u64,
    /// `overHead`: sectors before the first grain.
    pub overhead: u64,
    /// `uncleanShutdown`: the extent was open for writing when its host stopped.
    pub unclean_shutdown: bool,
    /// The four newline-detection bytes at 73..77.
    pub newline: [u8; 4],
    /// `compressAlgorithm`: 0 none, [`COMPRESSION_DEFLATE`].
    pub compress_algorithm: u16,
}

impl Header {
    /// The header diskbridge writes: a streamOptimized extent as open-vmdk writes it.
    pub fn stream_optimized(capacity: u64, gd_offset: u64, overhead: u64) -> Self {
        Header {
            version: VERSION,
            flags: FLAGS,
            capacity,
            grain_sectors: GRAIN_SECTORS,
            descriptor_offset: DESCRIPTOR_OFFSET,
            descriptor_sectors: DESCRIPTOR_SECTORS,
            gtes_per_gt: GTES_PER_GT as u32,
            rgd_offset: 0,
            gd_offset,
            overhead,
            unclean_shutdown: false,
            newline: NEWLINE_DETECTOR,
            compress_algorithm: COMPRESSION_DEFLATE,
        }
    }

    /// The 512 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        LittleEndian::write_u32(&mut b[0..4], MAGIC);
        LittleEndian::write_u32(&mut b[4..8], self.version);
        LittleEndian::write_u32(&mut b[8..12], self.flags);
        LittleEndian::write_u64(&mut b[12..20], self.capacity);
        LittleEndian::write_u64(&mut b[20..28], self.grain_sectors);
        LittleEndian::write_u64(&mut b[28..36], self.descriptor_offset);
        LittleEndian::write_u64(&mut b[36..44], self.descriptor_sectors);
        LittleEndian::write_u32(&mut b[44..48], self.gtes_per_gt);
        LittleEndian::write_u64(&mut b[48..56], self.rgd_offset);
        LittleEndian::write_u64(&mut b[56..64], self.gd_offset);
        LittleEndian::write_u64(&mut b[64..72], self.overhead);
        b[72] = u8::from(self.unclean_shutdown);
        b[73..77].copy_from_slice(&self.newline);
        LittleEndian::write_u16(&mut b[77..79], self.compress_algorithm);
        b
    }

    /// Reads a header from its 512 bytes, found at byte `at` of the file (the start, or the footer's place),
    /// and checks everything that does not depend on the file around it.
    ///
    /// # Errors
    /// `InvalidFormat` without the `KDMV` magic; `Unsupported` for ESXi's `COWD` sparse extents, versions
    /// other than 1..=3, unknown incompatible flags and compression algorithms; `Corrupt` for grain and table
    /// sizes out of range and damaged newline-detection bytes.
    pub fn parse(b: &[u8; 512], at: u64) -> Result<Header> {
        match LittleEndian::read_u32(&b[0..4]) {
            MAGIC => {}
            COWD_MAGIC => {
                return Err(Error::unsupported(
                    "ESXi vmfsSparse (COWD) snapshot extents are not supported; consolidate the snapshot first",
                )
                .at(at));
            }
            _ => return Err(Error::invalid("Not a VMDK sparse extent (no KDMV magic)").at(at)),
        }
        let h = Header {
            version: LittleEndian::read_u32(&b[4..8]),
            flags: LittleEndian::read_u32(&b[8..12]),
            capacity: LittleEndian::read_u64(&b[12..20]),
            grain_sectors: LittleEndian::read_u64(&b[20..28]),
            descriptor_offset: LittleEndian::read_u64(&b[28..36]),
            descriptor_sectors: LittleEndian::read_u64(&b[36..44]),
            gtes_per_gt: LittleEndian::read_u32(&b[44..48]),
            rgd_offset: LittleEndian::read_u64(&b[48..56]),
            gd_offset: LittleEndian::read_u64(&b[56..64]),
            overhead: LittleEndian::read_u64(&b[64..72]),
            unclean_shutdown: b[72] != 0,
            newline: b[73..77].try_into().expect("4 bytes"),
            compress_algorithm: LittleEndian::read_u16(&b[77..79]),
        };
        if !(1..=VERSION).contains(&h.version) {
            return Err(
                Error::unsupported(format!("VMDK sparse extent version {} is not supported", h.version)).at(at + 4)
            );
        }
        let unknown = h.flags & INCOMPATIBLE_FLAGS & !(FLAG_COMPRESSED | FLAG_MARKERS);
        if unknown != 0 {
            return Err(Error::unsupported(format!("Unknown incompatible VMDK flags {unknown:#x}")).at(at + 8));
        }
        if h.flags & FLAG_NEWLINE_DETECTOR != 0 && h.newline != NEWLINE_DETECTOR {
            return Err(Error::corrupt(
                "The newline-detection bytes are damaged (was the file transferred in text mode?)",
            )
            .at(at + 73));
        }
        if !h.grain_sectors.is_power_of_two() || h.grain_sectors > MAX_GRAIN_SECTORS {
            return Err(Error::corrupt(format!(
                "Grain size of {} sectors is not a power of two up to {MAX_GRAIN_SECTORS}",
                h.grain_sectors
            ))
            .at(at + 20));
        }
        if h.gtes_per_gt == 0 || u64::from(h.gtes_per_gt) > MAX_GTES_PER_GT {
            return Err(Error::corrupt(format!(
                "{} entries per grain table is not between 1 and {MAX_GTES_PER_GT}",
                h.gtes_per_gt
            ))
            .at(at + 44));
        }
        match h.compress_algorithm {
            0 | COMPRESSION_DEFLATE => {}
            n => {
                return Err(Error::unsupported(format!("VMDK compression algorithm {n} is not supported")).at(at + 77));
            }
        }
        if h.flags & FLAG_MARKERS != 0 && !h.compressed() {
            return Err(Error::unsupported("VMDK grain markers without compression are not supported").at(at + 8));
        }
        Ok(h)
    }

    /// Whether grains are zlib streams. qemu goes by `compressAlgorithm` alone, the technote by flag 16; a
    /// header with either is taken as compressed.
    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0 || self.compress_algorithm == COMPRESSION_DEFLATE
    }

    /// Whether each compressed grain is behind a 12-byte marker carrying its LBA and length.
    pub fn has_markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }

    /// Whether grain table entries of [`GTE_ZEROED`] mean zeroed grains.
    pub fn has_zeroed_grains(&self) -> bool {
        self.flags & FLAG_ZEROED_GRAIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_field_by_field() {
        let h = Header::stream_optimized(0x0123_4567_89AB_CDEF, 21, 26);
        let b = h.to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 79] = [
            0x4B, 0x44, 0x4D, 0x56,                         // 0   magicNumber "KDMV"
            0x03, 0x00, 0x00, 0x00,                         // 4   version 3
            0x01, 0x00, 0x03, 0x00,                         // 8   flags 0x00030001
            0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, // 12  capacity (unaligned u64)
            0x80, 0, 0, 0, 0, 0, 0, 0,                      // 20  grainSize 128
            0x01, 0, 0, 0, 0, 0, 0, 0,                      // 28  descriptorOffset 1
            0x14, 0, 0, 0, 0, 0, 0, 0,                      // 36  descriptorSize 20
            0x00, 0x02, 0x00, 0x00,                         // 44  numGTEsPerGT 512
            0, 0, 0, 0, 0, 0, 0, 0,                         // 48  rgdOffset 0
            0x15, 0, 0, 0, 0, 0, 0, 0,                      // 56  gdOffset 21
            0x1A, 0, 0, 0, 0, 0, 0, 0,                      // 64  overHead 26
            0x00,                                           // 72  uncleanShutdown
            0x0A, 0x20, 0x0D, 0x0A,                         // 73  '\n' ' ' '\r' '\n'
            0x01, 0x00,                                     // 77  compressAlgorithm 1 (unaligned u16)
        ];
        assert_eq!(b[..79], expected);
        assert!(b[79..].iter().all(|&x| x == 0), "pad");
    }

    #[test]
    fn gd_at_end_is_all_ones() {
        let b = Header::stream_optimized(128, GD_AT_END, 128).to_bytes();
        assert_eq!(b[56..64], [0xFF; 8]);
    }

    #[test]
    fn parse_reads_back_what_to_bytes_writes() {
        let h = Header::stream_optimized(0x0123_4567_89AB_CDEF, GD_AT_END, 128);
        assert_eq!(Header::parse(&h.to_bytes(), 0).unwrap(), h);
        let odd = Header {
            version: 1,
            flags: FLAG_NEWLINE_DETECTOR | FLAG_REDUNDANT_GD | FLAG_ZEROED_GRAIN,
            grain_sectors: 8,
            descriptor_offset: 0,
            descriptor_sectors: 0,
            gtes_per_gt: 7,
            rgd_offset: 9,
            unclean_shutdown: true,
            compress_algorithm: 0,
            ..h
        };
        let parsed = Header::parse(&odd.to_bytes(), 0).unwrap();
        assert_eq!(parsed, odd);
        assert!(!parsed.compressed() && !parsed.has_markers() && parsed.has_zeroed_grains());
    }

    /// qemu-img 10's `subformat=streamOptimized` header of an empty 64 KiB disk (FORMATS.md §2.5, layout A).
    #[rustfmt::skip]
    const QEMU_STREAM: [u8; 80] = [
        0x4B, 0x44, 0x4D, 0x56,                         // 0   "KDMV"
        0x03, 0x00, 0x00, 0x00,                         // 4   version 3
        0x03, 0x00, 0x03, 0x00,                         // 8   flags 0x00030003: newline, RGD, compressed, markers
        0x80, 0, 0, 0, 0, 0, 0, 0,                      // 12  capacity 128 sectors
        0x80, 0, 0, 0, 0, 0, 0, 0,                      // 20  grainSize 128
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // 28  descriptorOffset 1
        0x14, 0, 0, 0, 0, 0, 0, 0,                      // 36  descriptorSize 20
        0x00, 0x02, 0x00, 0x00,                         // 44  numGTEsPerGT 512
        0x15, 0, 0, 0, 0, 0, 0, 0,                      // 48  rgdOffset 21
        0x1A, 0, 0, 0, 0, 0, 0, 0,                      // 56  gdOffset 26
        0x80, 0, 0, 0, 0, 0, 0, 0,                      // 64  overHead 128
        0x00,                                           // 72  uncleanShutdown
        0x0A, 0x20, 0x0D, 0x0A,                         // 73  newline detector
        0x01, 0x00,                                     // 77  compressAlgorithm deflate
        0x00,                                           // 79  pad
    ];

    fn qemu_stream() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..80].copy_from_slice(&QEMU_STREAM);
        b
    }

    #[test]
    fn qemus_stream_header_parses() {
        let h = Header::parse(&qemu_stream(), 0).unwrap();
        assert_eq!((h.version, h.flags, h.capacity, h.grain_sectors), (3, 0x30003, 128, 128));
        assert_eq!((h.descriptor_offset, h.descriptor_sectors, h.gtes_per_gt), (1, 20, 512));
        assert_eq!((h.rgd_offset, h.gd_offset, h.overhead), (21, 26, 128));
        assert!(h.compressed() && h.has_markers() && !h.has_zeroed_grains() && !h.unclean_shutdown);
        assert_eq!(h.to_bytes(), qemu_stream(), "every field kept");
    }

    #[test]
    fn bad_headers_are_refused_at_their_field() {
        use crate::error::ErrorKind::*;
        let with = |offset: usize, bytes: &[u8]| {
            let mut b = qemu_stream();
            b[offset..offset + bytes.len()].copy_from_slice(bytes);
            let e = Header::parse(&b, 0x1000).unwrap_err();
            (e.kind(), e.offset())
        };
        assert_eq!(with(0, b"QFI\xfb"), (InvalidFormat, Some(0x1000)));
        assert_eq!(with(0, b"COWD"), (Unsupported, Some(0x1000)));
        assert_eq!(with(4, &[4]), (Unsupported, Some(0x1000 + 4)));
        assert_eq!(with(4, &[0]), (Unsupported, Some(0x1000 + 4)));
        assert_eq!(with(10, &[0x07]), (Unsupported, Some(0x1000 + 8)), "flag bit 18");
        assert_eq!(with(20, &[0x81]), (Corrupt, Some(0x1000 + 20)), "grain of 129 sectors");
        assert_eq!(with(20, &[0, 0, 2]), (Corrupt, Some(0x1000 + 20)));
        assert_eq!(with(20, &[0]), (Corrupt, Some(0x1000 + 20)), "grain of 0 sectors");
        assert_eq!(with(44, &[0, 0]), (Corrupt, Some(0x1000 + 44)));
        assert_eq!(with(44, &[1, 2]), (Corrupt, Some(0x1000 + 44)), "513 entries");
        assert_eq!(with(73, b"\n \n\n"), (Corrupt, Some(0x1000 + 73)));
        assert_eq!(with(77, &[2]), (Unsupported, Some(0x1000 + 77)));
        let mut b = qemu_stream();
        (b[10], b[77]) = (0x02, 0);
        assert_eq!(Header::parse(&b, 0).unwrap_err().kind(), Unsupported, "markers without compression");
        let mut b = qemu_stream();
        b[20..22].copy_from_slice(&[0, 0x40]);
        assert!(Header::parse(&b, 0).is_ok(), "16384 sectors is the largest grain");
        b[21] = 0x80;
        assert_eq!(Header::parse(&b, 0).unwrap_err().kind(), Corrupt);
        // Without flag bit 0 the newline bytes are not looked at.
        let mut b = qemu_stream();
        (b[8], b[73]) = (0x02, b'x');
        assert!(Header::parse(&b, 0).is_ok());
    }
}
