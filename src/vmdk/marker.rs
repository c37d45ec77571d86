//! Stream markers (VMDK 5.0 technote pp. 11–13; FORMATS.md §2.3). Each starts on a sector boundary:
//!
//! ```text
//! grain marker:     u64 lba (guest sector) | u32 size (compressed bytes, ≠ 0) | data… | zero pad to 512
//! metadata marker:  u64 numSectors | u32 size = 0 | u32 type | 496 zero bytes, then numSectors of metadata
//! ```
//!
//! The end-of-stream marker is a metadata marker with everything 0: an all-zero sector.

use byteorder::{ByteOrder, LittleEndian};

/// Bytes of a grain marker before the compressed data.
pub const GRAIN_HEADER_LEN: usize = 12;

/// Metadata marker types (open-vmdk's `GRAIN_MARKER_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// End of stream; nothing may follow.
    EndOfStream = 0,
    /// A grain table follows.
    GrainTable = 1,
    /// The grain directory follows.
    GrainDirectory = 2,
    /// The footer (a copy of the header with the real `gdOffset`) follows.
    Footer = 3,
}

/// The sector announcing `num_sectors` sectors of metadata of `kind`.
pub fn metadata(kind: Kind, num_sectors: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    LittleEndian::write_u64(&mut b[0..8], num_sectors);
    LittleEndian::write_u32(&mut b[12..16], kind as u32);
    b
}

/// Fills the 12-byte grain marker at the start of `buf` for the grain at guest sector `lba` whose
/// compressed data is `size` bytes long.
pub fn write_grain_header(buf: &mut [u8], lba: u64, size: u32) {
    LittleEndian::write_u64(&mut buf[0..8], lba);
    LittleEndian::write_u32(&mut buf[8..12], size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_marker_bytes() {
        let m = metadata(Kind::GrainTable, 4);
        assert_eq!(m[..16], [4, 0, 0, 0, 0, 0, 0, 0, /* size */ 0, 0, 0, 0, /* type GT */ 1, 0, 0, 0]);
        assert!(m[16..].iter().all(|&b| b == 0));
        assert_eq!(metadata(Kind::Footer, 1)[12], 3);
        assert_eq!(metadata(Kind::GrainDirectory, 1)[12], 2);
        assert_eq!(metadata(Kind::EndOfStream, 0), [0; 512]);
    }
}
