//! The GUIDs VHDX names its regions and metadata items by [MS-VHDX 2.2.2, 2.6.1], and its on-disk GUID order:
//! `u32 Data1 LE | u16 Data2 LE | u16 Data3 LE | u8 Data4[8]` — what `uuid`'s little-endian byte methods read and
//! write. A [`Guid`] itself is kept in the order its text form lists the bytes.

pub use uuid::Uuid as Guid;

/// Region table entry of the block allocation table.
pub const BAT_REGION: Guid = Guid::from_u128(0x2dc27766_f623_4200_9d64_115e9bfd4a08);
/// Region table entry of the metadata region.
pub const METADATA_REGION: Guid = Guid::from_u128(0x8b7ca206_4790_4b9a_b8fe_575f050f886e);

/// Metadata item: block size and flags.
pub const FILE_PARAMETERS: Guid = Guid::from_u128(0xcaa16737_fa36_4d43_b3b6_33f0aa44e76b);
/// Metadata item: guest size in bytes.
pub const VIRTUAL_DISK_SIZE: Guid = Guid::from_u128(0x2fa54224_cd1b_4876_b211_5dbed83bf4b8);
/// Metadata item: the SCSI page 83 identifier the guest sees.
pub const PAGE83_DATA: Guid = Guid::from_u128(0xbeca12ab_b2e6_4523_93ef_c309e000c746);
/// Metadata item: logical sector size.
pub const LOGICAL_SECTOR_SIZE: Guid = Guid::from_u128(0x8141bf1d_a96f_4709_ba47_f233a8faab5f);
/// Metadata item: physical sector size.
pub const PHYSICAL_SECTOR_SIZE: Guid = Guid::from_u128(0xcda348c7_445d_4471_9cc9_e9885251c556);
/// Metadata item: where a differencing disk's parent is.
pub const PARENT_LOCATOR: Guid = Guid::from_u128(0xa8d35f2d_b30b_454d_abf7_d3d84834ab0c);
/// The parent locator type of a VHDX parent (the only one MS-VHDX defines).
pub const VHDX_PARENT_LOCATOR_TYPE: Guid = Guid::from_u128(0xb04aefb7_d19e_4a81_b789_25b8e9445913);

/// Reads the 16 bytes at the start of `disk` as the file stores a GUID.
///
/// # Panics
/// If `disk` is shorter than 16 bytes; callers pass slices of fixed-size structures.
pub fn from_disk(disk: &[u8]) -> Guid {
    Guid::from_bytes_le(disk[..16].try_into().expect("16 bytes"))
}

/// Parses a GUID's text form, with or without braces (`{2dc27766-f623-…}`, as parent locators store it).
pub fn parse(text: &str) -> Option<Guid> {
    Guid::try_parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_guids_have_the_on_disk_bytes_qemu_and_hyper_v_write() {
        // FORMATS.md §3.4/§3.5, from qemu-img output hexdumps.
        assert_eq!(
            BAT_REGION.to_bytes_le(),
            [0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]
        );
        assert_eq!(
            METADATA_REGION.to_bytes_le(),
            [0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e]
        );
        assert_eq!(
            FILE_PARAMETERS.to_bytes_le(),
            [0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b]
        );
        assert_eq!(PHYSICAL_SECTOR_SIZE.to_string(), "cda348c7-445d-4471-9cc9-e9885251c556");
    }

    #[test]
    fn text_form_parses_with_or_without_braces() {
        let g = BAT_REGION;
        assert_eq!(parse(&g.to_string()), Some(g));
        assert_eq!(parse(&format!("{{{}}}", g.to_string().to_uppercase())), Some(g));
        for bad in ["", "{}", "2dc27766-f623-4200-9d64-115e9bfd4a0", "+dc27766-f623-4200-9d64-115e9bfd4a08"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn disk_order_round_trips() {
        let g = Guid::from_bytes(*b"0123456789abcdef");
        assert_eq!(&g.to_bytes_le(), b"3210547689abcdef");
        assert_eq!(from_disk(&g.to_bytes_le()), g);
    }
}
