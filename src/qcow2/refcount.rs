//! Refcount table and refcount block entries (qcow2 spec, "Host cluster management"): how many references
//! each host cluster has, two levels deep like the L1/L2 map.
//!
//! ```text
//! Refcount table entry (u64):
//!   Bit  0 -  8:  Reserved (0)
//!        9 - 63:  Offset of the refcount block, cluster-aligned; 0 = the block's clusters are all unused
//!
//! Refcount block: cluster_size * 8 / refcount_bits entries of refcount_bits = 1 << refcount_order bits each,
//!   big-endian; entries narrower than a byte are packed from the least significant bit up (qemu).
//! ```

/// Bits 9–63 of a refcount table entry.
const OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// Bits 0–8.
const RESERVED_MASK: u64 = 0x1ff;

/// The refcount block offset of a refcount table entry (0 = none), reserved bits left out as qemu does.
pub fn block_offset(entry: u64) -> u64 {
    entry & OFFSET_MASK
}

/// Whether a refcount table entry has reserved bits set (qemu-img check counts that as corruption).
pub fn reserved_bits(entry: u64) -> bool {
    entry & RESERVED_MASK != 0
}

/// Host clusters one refcount block covers.
pub fn entries_per_block(cluster_bits: u32, order: u32) -> u64 {
    (1u64 << (cluster_bits + 3)) >> order
}

/// Entry `index` of a refcount block of `1 << order`-bit entries.
pub fn get(block: &[u8], index: u64, order: u32) -> u64 {
    let bits = 1u64 << order;
    if bits >= 8 {
        let size = (bits / 8) as usize;
        let at = index as usize * size;
        return block[at..at + size].iter().fold(0, |v, &b| v << 8 | u64::from(b));
    }
    let per_byte = 8 / bits;
    let shift = (index % per_byte) * bits;
    u64::from(block[(index / per_byte) as usize] >> shift) & ((1 << bits) - 1)
}

/// Sets entry `index` of a refcount block of `1 << order`-bit entries to `value` (which must fit).
pub fn set(block: &mut [u8], index: u64, order: u32, value: u64) {
    let bits = 1u64 << order;
    if bits >= 8 {
        let size = (bits / 8) as usize;
        let at = index as usize * size;
        for (i, b) in block[at..at + size].iter_mut().enumerate() {
            *b = (value >> (8 * (size - 1 - i))) as u8;
        }
        return;
    }
    let per_byte = 8 / bits;
    let shift = (index % per_byte) * bits;
    let byte = &mut block[(index / per_byte) as usize];
    let mask = (((1u64 << bits) - 1) << shift) as u8;
    *byte = (*byte & !mask) | ((value << shift) as u8 & mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries() {
        assert_eq!(block_offset(0x20000), 0x20000); // qemu's first refcount block in a fresh image
        assert_eq!(block_offset(0), 0);
        assert_eq!((block_offset(0x20001), reserved_bits(0x20001)), (0x20000, true));
        assert!(!reserved_bits(0x20000));
    }

    #[test]
    fn block_geometry() {
        assert_eq!(entries_per_block(16, 4), 32768); // 64 KiB of 16-bit entries
        assert_eq!(entries_per_block(9, 0), 4096); // 512 bytes of 1-bit entries
        assert_eq!(entries_per_block(9, 6), 64);
    }

    #[test]
    fn entries_of_every_width() {
        // 16 bits, big-endian: entry 1 = 0x0102.
        let b = [0x00, 0x01, 0x01, 0x02];
        assert_eq!((get(&b, 0, 4), get(&b, 1, 4)), (1, 0x0102));
        // 1 bit, least significant first: 0b0000_0101 -> entries 0 and 2.
        assert_eq!((0..8).map(|i| get(&[0b101], i, 0)).collect::<Vec<_>>(), [1, 0, 1, 0, 0, 0, 0, 0]);
        // 4 bits: 0x21 -> entry 0 = 1, entry 1 = 2.
        assert_eq!((get(&[0x21], 0, 2), get(&[0x21], 1, 2)), (1, 2));
        for order in 0..=6 {
            let mut block = vec![0u8; 128];
            let max = if order == 6 { u64::MAX } else { (1u64 << (1 << order)) - 1 };
            for i in 0..8 {
                set(&mut block, i, order, max - i % 2);
            }
            set(&mut block, 3, order, 0);
            let got: Vec<u64> = (0..9).map(|i| get(&block, i, order)).collect();
            let want: Vec<u64> = (0..9).map(|i| if i == 3 || i == 8 { 0 } else { max - i % 2 }).collect();
            assert_eq!(got, want, "order {order}");
        }
    }
}
