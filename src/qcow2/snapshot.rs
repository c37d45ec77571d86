//! Snapshot table entries (qcow2 spec, "Snapshots"): only what a refcount check needs — each snapshot's L1
//! table, and where the next entry starts. Reading ignores snapshots: only the active L1 table maps the disk.
//!
//! ```text
//! Offset  Size  Field
//!      0     8  l1_table_offset     (cluster-aligned)
//!      8     4  l1_size             (entries)
//!     12     2  id_str_size
//!     14     2  name_size
//!     16     4  date_sec
//!     20     4  date_nsec
//!     24     8  vm_clock_nsec
//!     32     4  vm_state_size
//!     36     4  extra_data_size
//!     40     …  extra data, id string, name (not NUL-terminated); the next entry starts 8-byte aligned
//! ```

use byteorder::{BigEndian, ByteOrder};

/// Bytes of an entry before its variable-length parts.
pub const FIXED_LEN: usize = 40;

/// One snapshot table entry, as far as a check cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Offset of the snapshot's L1 table.
    pub l1_table_offset: u64,
    /// Entries of that table.
    pub l1_size: u32,
    /// Bytes of the whole entry, before the padding to 8.
    pub len: u64,
}

impl Snapshot {
    /// Decodes the fixed part of an entry (`fixed` holds [`FIXED_LEN`] bytes).
    pub fn parse(fixed: &[u8]) -> Snapshot {
        let variable = u64::from(BigEndian::read_u32(&fixed[36..]))
            + u64::from(BigEndian::read_u16(&fixed[12..]))
            + u64::from(BigEndian::read_u16(&fixed[14..]));
        Snapshot {
            l1_table_offset: BigEndian::read_u64(fixed),
            l1_size: BigEndian::read_u32(&fixed[8..]),
            len: FIXED_LEN as u64 + variable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_as_qemu_writes_it() {
        let mut e = [0u8; FIXED_LEN];
        e[0..8].copy_from_slice(&0x5_0000u64.to_be_bytes()); //  l1_table_offset
        e[8..12].copy_from_slice(&1u32.to_be_bytes()); //        l1_size
        e[12..14].copy_from_slice(&1u16.to_be_bytes()); //       id_str_size: "1"
        e[14..16].copy_from_slice(&6u16.to_be_bytes()); //       name_size: "before"
        e[36..40].copy_from_slice(&16u32.to_be_bytes()); //      extra_data_size: vm_state_size_large + disk size
        assert_eq!(Snapshot::parse(&e), Snapshot { l1_table_offset: 0x5_0000, l1_size: 1, len: 40 + 16 + 1 + 6 });
    }
}
