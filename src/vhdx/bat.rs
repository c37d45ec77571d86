//! The block allocation table [MS-VHDX 2.5]: one u64 LE entry per payload block, with a sector-bitmap
//! entry after every `chunk_ratio` payload entries (used by differencing disks only; the writer leaves them 0).
//!
//! ```text
//! bits 0-2   State
//! bits 3-19  reserved (0)
//! bits 20-63 FileOffsetMB: the block's offset in the file, in MiB
//! ```

use crate::error::{Error, Result};

const STATE_MASK: u64 = 0x7;
const OFFSET_MASK: u64 = 0xFFFF_FFFF_FFF0_0000;

/// A sector-bitmap block describes 2^23 sectors, whatever the sector size.
const SECTORS_PER_BITMAP: u64 = 1 << 23;

/// What a payload block's entry says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatState {
    /// Not in the file; reads as zeros on dynamic disks (Hyper-V's state for untouched blocks).
    NotPresent,
    /// Contents undefined (reads as zeros in practice).
    Undefined,
    /// Reads as zeros (qemu's default for unallocated blocks; not what Hyper-V writes).
    Zero,
    /// Discarded (3, and 5 from the 0.95 draft); reads as zeros.
    Unmapped,
    /// Stored in the file at the entry's offset.
    FullyPresent,
    /// Partly in a parent (differencing disks only).
    PartiallyPresent,
}

/// The state value of a present sector-bitmap block (the other legal one, 0, is "not present").
const BITMAP_PRESENT: u64 = 6;

/// One raw BAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatEntry(pub u64);

impl BatEntry {
    /// The entry for a block stored at `offset` (a multiple of 1 MiB).
    pub fn present(offset: u64) -> BatEntry {
        BatEntry::new(BatState::FullyPresent, offset)
    }

    /// An entry of `state` for a block at `offset` (a multiple of 1 MiB, 0 for states without one).
    pub fn new(state: BatState, offset: u64) -> BatEntry {
        debug_assert_eq!(offset & !OFFSET_MASK, 0);
        let value = match state {
            BatState::NotPresent => 0,
            BatState::Undefined => 1,
            BatState::Zero => 2,
            BatState::Unmapped => 3,
            BatState::FullyPresent => 6,
            BatState::PartiallyPresent => 7,
        };
        BatEntry(offset | value)
    }

    /// The entry of a sector-bitmap block stored at `offset`.
    pub fn bitmap(offset: u64) -> BatEntry {
        BatEntry(offset | BITMAP_PRESENT)
    }

    /// A sector-bitmap entry's offset, `None` when the bitmap block is not present.
    ///
    /// # Errors
    /// `Corrupt` for a state other than present (6) or not present (0).
    pub fn bitmap_offset(self) -> Result<Option<u64>> {
        match self.0 & STATE_MASK {
            0 => Ok(None),
            BITMAP_PRESENT => Ok(Some(self.offset())),
            s => Err(Error::corrupt(format!("Sector bitmap entry has invalid state {s}"))),
        }
    }

    /// The block's state.
    ///
    /// # Errors
    /// `Corrupt` for the state value MS-VHDX leaves unassigned (4).
    pub fn state(self) -> Result<BatState> {
        Ok(match self.0 & STATE_MASK {
            0 => BatState::NotPresent,
            1 => BatState::Undefined,
            2 => BatState::Zero,
            3 | 5 => BatState::Unmapped,
            6 => BatState::FullyPresent,
            7 => BatState::PartiallyPresent,
            s => return Err(Error::corrupt(format!("BAT entry has invalid state {s}"))),
        })
    }

    /// The byte offset in the file.
    pub fn offset(self) -> u64 {
        self.0 & OFFSET_MASK
    }
}

/// How the guest disk maps onto BAT entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Guest size in bytes.
    pub virtual_size: u64,
    /// Payload block size.
    pub block_size: u64,
    /// Logical sector size (decides how many blocks a sector-bitmap block covers).
    pub logical_sector_size: u64,
}

impl Geometry {
    /// Payload blocks per sector-bitmap block: `2^23 · LogicalSectorSize / BlockSize`.
    pub fn chunk_ratio(&self) -> u64 {
        SECTORS_PER_BITMAP * self.logical_sector_size / self.block_size
    }

    /// Payload blocks covering the guest disk.
    pub fn data_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size)
    }

    /// Logical sectors per payload block (a multiple of 8: blocks are at least 1 MiB, sectors at most 4 KiB).
    pub fn sectors_per_block(&self) -> u64 {
        self.block_size / self.logical_sector_size
    }

    /// BAT entries of a differencing disk: every chunk, the last one included, ends in its sector-bitmap
    /// entry.
    pub fn entries_with_bitmaps(&self) -> u64 {
        self.data_blocks().div_ceil(self.chunk_ratio()) * (self.chunk_ratio() + 1)
    }

    /// The BAT index of the sector-bitmap entry of the chunk holding payload block `block`.
    pub fn bitmap_index(&self, block: u64) -> u64 {
        (block / self.chunk_ratio() + 1) * (self.chunk_ratio() + 1) - 1
    }

    /// Where payload block `block`'s bits start in its chunk's sector-bitmap block, in bytes.
    pub fn bitmap_byte(&self, block: u64) -> u64 {
        block % self.chunk_ratio() * self.sectors_per_block() / 8
    }

    /// BAT entries of a dynamic or fixed disk: the last entry is the last payload block's, so a trailing
    /// sector-bitmap entry is not counted.
    pub fn entries(&self) -> u64 {
        match self.data_blocks() {
            0 => 0,
            n => n + (n - 1) / self.chunk_ratio(),
        }
    }

    /// The BAT index of payload block `block`: payload entries are interleaved with one sector-bitmap entry
    /// per chunk.
    pub fn index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_state_and_offset() {
        let e = BatEntry(0x0000_0000_0080_0006);
        assert_eq!((e.state().unwrap(), e.offset()), (BatState::FullyPresent, 8 << 20));
        assert_eq!(BatEntry::present(8 << 20), e);
        assert_eq!(BatEntry(0).state().unwrap(), BatState::NotPresent);
        assert_eq!(BatEntry(2).state().unwrap(), BatState::Zero);
        assert_eq!(BatEntry(5).state().unwrap(), BatState::Unmapped);
        assert_eq!(BatEntry::new(BatState::PartiallyPresent, 3 << 20).0, (3 << 20) | 7);
        assert_eq!(BatEntry::bitmap(1 << 20).bitmap_offset().unwrap(), Some(1 << 20));
        assert_eq!(BatEntry(0).bitmap_offset().unwrap(), None);
        assert!(BatEntry(7).bitmap_offset().is_err());
        assert!(BatEntry(4).state().is_err());
        assert_eq!(BatEntry(0xFFFF_FFFF_FFFF_FFFF).offset(), OFFSET_MASK, "offset ignores bits 0-19");
    }

    #[test]
    fn chunk_ratio_and_interleaving() {
        let g = |size: u64, block: u64, lss: u64| Geometry {
            virtual_size: size,
            block_size: block,
            logical_sector_size: lss,
        };
        assert_eq!(g(1 << 30, 32 << 20, 512).chunk_ratio(), 128);
        assert_eq!(g(1 << 30, 1 << 20, 512).chunk_ratio(), 4096);
        assert_eq!(g(1 << 30, 256 << 20, 512).chunk_ratio(), 16);
        assert_eq!(g(1 << 30, 1 << 20, 4096).chunk_ratio(), 32768);

        // FORMATS.md §3.6: 5 GiB, 32 MiB blocks: 160 payload blocks, one bitmap slot at 128.
        let five = g(5 << 30, 32 << 20, 512);
        assert_eq!((five.data_blocks(), five.entries()), (160, 161));
        assert_eq!(five.index(127), 127);
        assert_eq!(five.index(128), 129, "the block at 4 GiB sits after the bitmap slot 128");
        assert_eq!(five.index(159), 160);

        // Exactly one chunk: no bitmap entry at all; one block more: a bitmap entry, then the block.
        assert_eq!(g(4 << 30, 1 << 20, 512).entries(), 4096);
        assert_eq!(g((4 << 30) + 1, 1 << 20, 512).entries(), 4098);
        // Three chunks and a bit.
        let multi = g((12 << 30) + (3 << 20), 1 << 20, 512);
        assert_eq!(multi.entries(), 12 * 1024 + 3 + 3);
        assert_eq!(multi.index(4095), 4095);
        assert_eq!(multi.index(4096), 4097, "slot 4096 is the first chunk's bitmap");
        assert_eq!(multi.index(2 * 4096), 2 * 4097, "slot 2·4097-1 is the second chunk's bitmap");
        assert_eq!(multi.index(3 * 4096 + 2), 3 * 4097 + 2);
        assert_eq!(g(0, 1 << 20, 512).entries(), 0);
        // Differencing: each chunk ends in its bitmap entry, the last one too.
        assert_eq!(five.entries_with_bitmaps(), 2 * 129);
        assert_eq!((five.bitmap_index(0), five.bitmap_index(127), five.bitmap_index(128)), (128, 128, 257));
        assert_eq!((five.bitmap_byte(0), five.bitmap_byte(129)), (0, 65536 / 8));
        assert_eq!(g(3 << 20, 1 << 20, 512).entries_with_bitmaps(), 4097);
        // Partial last block.
        assert_eq!(g(1_000_000_000, 1 << 20, 512).data_blocks(), 954);
    }
}
