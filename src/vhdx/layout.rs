//! Where everything goes in a file this writer produces, every piece 1 MiB aligned [MS-VHDX 2.2]:
//!
//! ```text
//! 0      header section (file id, 2 headers, 2 region tables)      1 MiB
//! 1 MiB  log, zero, LogGuid 0                                        log_size (default 1 MiB)
//!        BAT                                                         roundup(entries · 8, 1 MiB)
//!        metadata                                                    1 MiB
//!        payload blocks, in ascending guest order
//! ```
//!
//! qemu-img puts the same pieces in the same order but leaves 4 MiB more before the first block; the file
//! size is therefore `payload_offset + allocated blocks · block_size`, smaller than qemu's for the same block
//! size and the same allocated blocks.

use super::bat::Geometry;
use super::header::{ALIGNMENT, HEADER_SECTION_SIZE};
use super::metadata;

/// Offsets and lengths of the log, the BAT, the metadata and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// How guest blocks map onto BAT entries.
    pub geometry: Geometry,
    /// Log offset (right after the header section).
    pub log_offset: u64,
    /// Log length.
    pub log_length: u64,
    /// BAT region offset.
    pub bat_offset: u64,
    /// BAT region length.
    pub bat_length: u64,
    /// Metadata region offset.
    pub metadata_offset: u64,
    /// Metadata region length.
    pub metadata_length: u64,
    /// Where the first payload block goes.
    pub payload_offset: u64,
}

impl Layout {
    /// Places everything for `geometry` with a log of `log_length` bytes (a multiple of 1 MiB).
    pub fn new(geometry: Geometry, log_length: u64) -> Layout {
        let log_offset = HEADER_SECTION_SIZE;
        let bat_offset = log_offset + log_length;
        // A BAT region of length 0 is not valid even for an empty disk.
        let bat_length = (geometry.entries() * 8).div_ceil(ALIGNMENT).max(1) * ALIGNMENT;
        let metadata_offset = bat_offset + bat_length;
        let metadata_length = metadata::REGION_SIZE;
        Layout {
            geometry,
            log_offset,
            log_length,
            bat_offset,
            bat_length,
            metadata_offset,
            metadata_length,
            payload_offset: metadata_offset + metadata_length,
        }
    }

    /// The file offset of the `rank`-th allocated block (blocks are stored in guest order, so a block's rank
    /// among the allocated ones decides its place).
    pub fn block_offset(&self, rank: u64) -> u64 {
        self.payload_offset + rank * self.geometry.block_size
    }
}

/// Virtual sizes up to this keep a 1 MiB-block BAT within 1 MiB (DECISIONS.md: the auto block size).
pub const SMALL_DISK: u64 = 128 << 30;

/// The automatic block size: 1 MiB for disks up to 128 GiB; above, the power of two from 2 MiB to 256 MiB
/// whose file is the smallest, given a function counting the blocks of a size that hold data. Ties go to the
/// smaller block, which lets the file grow in smaller steps once the guest writes to it.
pub fn auto_block_size(
    virtual_size: u64,
    logical_sector_size: u64,
    log_length: u64,
    mut allocated_blocks: impl FnMut(u64) -> u64,
) -> u64 {
    if virtual_size <= SMALL_DISK {
        return 1 << 20;
    }
    (21..=28)
        .map(|bits| 1u64 << bits)
        .min_by_key(|&block_size| {
            let geometry = Geometry { virtual_size, block_size, logical_sector_size };
            Layout::new(geometry, log_length).block_offset(allocated_blocks(block_size))
        })
        .expect("eight candidates")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(virtual_size: u64, block_size: u64) -> Geometry {
        Geometry { virtual_size, block_size, logical_sector_size: 512 }
    }

    #[test]
    fn small_disk_layout_is_4_mib_of_metadata() {
        let l = Layout::new(geometry(10 << 30, 1 << 20), 1 << 20);
        assert_eq!((l.log_offset, l.bat_offset, l.bat_length), (1 << 20, 2 << 20, 1 << 20));
        assert_eq!((l.metadata_offset, l.payload_offset), (3 << 20, 4 << 20));
        assert_eq!(l.block_offset(3), 7 << 20);
    }

    #[test]
    fn bat_grows_in_whole_mebibytes_and_pushes_the_rest() {
        // 128 GiB in 1 MiB blocks: 131072 payload entries + 31 bitmap entries > 1 MiB of entries.
        let l = Layout::new(geometry(SMALL_DISK, 1 << 20), 4 << 20);
        assert_eq!(l.geometry.entries(), 131072 + 31);
        assert_eq!((l.bat_offset, l.bat_length, l.payload_offset), (5 << 20, 2 << 20, 8 << 20));
        assert_eq!(Layout::new(geometry(0, 1 << 20), 1 << 20).bat_length, 1 << 20);
    }

    #[test]
    fn auto_block_size_prefers_the_smallest_file() {
        assert_eq!(auto_block_size(SMALL_DISK, 512, 1 << 20, |_| unreachable!()), 1 << 20);
        // An empty 60 TiB disk: only the BAT counts, so the largest block wins.
        assert_eq!(auto_block_size(60 << 40, 512, 1 << 20, |_| 0), 256 << 20);
        // 200 GiB with one 1 MiB run of data every GiB: every candidate allocates 200 blocks, the smallest
        // block wastes least.
        assert_eq!(auto_block_size(200 << 30, 512, 1 << 20, |_| 200), 2 << 20);
        // Data in every other 2 MiB: 2 MiB blocks store half the disk, anything larger all of it.
        assert_eq!(
            auto_block_size(200 << 30, 512, 1 << 20, |b| if b == 2 << 20 { 51200 } else { (200 << 30) / b }),
            2 << 20
        );
        // 60 TiB with a 32 MiB run of data every GiB: blocks up to 32 MiB store exactly the data, so the
        // largest of them has the smallest BAT; 64 MiB blocks would store twice the data.
        let sixty = 60u64 << 40;
        let best = auto_block_size(sixty, 512, 1 << 20, |b| if b <= 32 << 20 { (sixty / 32) / b } else { sixty >> 30 });
        assert_eq!(best, 32 << 20);
        // A fully written 200 GiB disk: every candidate stores 200 GiB behind a 1 MiB BAT; the tie goes to
        // the smallest block.
        assert_eq!(auto_block_size(200 << 30, 512, 1 << 20, |b| (200 << 30) / b), 2 << 20);
    }
}
