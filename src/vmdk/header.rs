//! The SparseExtentHeader (VMware "Virtual Disk Format 5.0", pp. 7–8; FORMATS.md §2.1): 512 bytes,
//! little-endian, packed — so the u64s at 12..44 and the u16 at 77 are unaligned and written byte-wise.
//!
//! Only the fields that differ between files are in [`Header`]; everything else is fixed for a
//! streamOptimized extent and lives in the constants below.

use byteorder::{ByteOrder, LittleEndian};

/// `magicNumber`: `'V' | 'M' << 8 | 'D' << 16 | 'K' << 24` read as a little-endian u32, i.e. the bytes
/// `4B 44 4D 56` ("KDMV") on disk.
pub const MAGIC: u32 = 0x564D_444B;

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

/// The fields of a SparseExtentHeader that vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `capacity`: guest size in sectors.
    pub capacity: u64,
    /// `gdOffset`: sector of the grain directory, or [`GD_AT_END`].
    pub gd_offset: u64,
    /// `overHead`: sectors before the first grain.
    pub overhead: u64,
}

impl Header {
    /// The 512 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        LittleEndian::write_u32(&mut b[0..4], MAGIC);
        LittleEndian::write_u32(&mut b[4..8], VERSION);
        LittleEndian::write_u32(&mut b[8..12], FLAGS);
        LittleEndian::write_u64(&mut b[12..20], self.capacity);
        LittleEndian::write_u64(&mut b[20..28], GRAIN_SECTORS);
        LittleEndian::write_u64(&mut b[28..36], DESCRIPTOR_OFFSET);
        LittleEndian::write_u64(&mut b[36..44], DESCRIPTOR_SECTORS);
        LittleEndian::write_u32(&mut b[44..48], GTES_PER_GT as u32);
        // rgdOffset (48..56) stays 0: no redundant grain directory.
        LittleEndian::write_u64(&mut b[56..64], self.gd_offset);
        LittleEndian::write_u64(&mut b[64..72], self.overhead);
        // uncleanShutdown (72) stays 0.
        b[73..77].copy_from_slice(&NEWLINE_DETECTOR);
        LittleEndian::write_u16(&mut b[77..79], COMPRESSION_DEFLATE);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_field_by_field() {
        let h = Header { capacity: 0x0123_4567_89AB_CDEF, gd_offset: 21, overhead: 26 };
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
        let b = Header { capacity: 128, gd_offset: GD_AT_END, overhead: 128 }.to_bytes();
        assert_eq!(b[56..64], [0xFF; 8]);
    }
}
