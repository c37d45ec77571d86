//! What the guest disk can boot with, read from its first sectors: an MBR (boot code, an EFI System
//! partition of type 0xEF) or a protective MBR + GPT (BIOS boot partition, EFI System Partition). Decides the
//! OVF firmware default and the Hyper-V generation a user should create.
//!
//! GPT headers and partition arrays are trusted only when their CRC-32s match (UEFI 2.x §5.3); a damaged
//! primary header falls back to the backup one at the disk's last sector, as firmware does.

use crate::error::Result;
use crate::image::Image;
use byteorder::{ByteOrder, LittleEndian};

/// The partition table found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTable {
    /// GUID partition table (behind a protective MBR).
    Gpt,
    /// Classic MBR partitions.
    Mbr,
    /// Neither.
    None,
}

impl PartitionTable {
    /// The name `info --output=json` uses.
    pub fn name(self) -> &'static str {
        match self {
            PartitionTable::Gpt => "gpt",
            PartitionTable::Mbr => "mbr",
            PartitionTable::None => "none",
        }
    }
}

/// A way the guest can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Legacy BIOS: MBR boot code (and, on GPT, a BIOS boot partition for GRUB's core image).
    Bios,
    /// UEFI: an EFI System Partition.
    Uefi,
}

impl Boot {
    /// The name `info --output=json` uses.
    pub fn name(self) -> &'static str {
        match self {
            Boot::Bios => "bios",
            Boot::Uefi => "uefi",
        }
    }
}

/// What the guest's first sectors say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The partition table.
    pub table: PartitionTable,
    /// Ways it can boot; empty when none is found.
    pub boot: Vec<Boot>,
    /// Damage found on the way (a GPT whose checksums do not match), for the user to see.
    pub problems: Vec<String>,
}

impl Guest {
    /// Whether UEFI is the only way this guest boots (then VMs need EFI firmware, Hyper-V generation 2).
    pub fn uefi_only(&self) -> bool {
        self.boot == [Boot::Uefi]
    }
}

const SECTOR: u64 = 512;
/// BIOS boot partition 21686148-6449-6E6F-744E-656564454649, in GPT's mixed-endian byte order.
const BIOS_BOOT: [u8; 16] = *b"\x48\x61\x68\x21\x49\x64\x6f\x6e\x74\x4e\x65\x65\x64\x45\x46\x49";
/// EFI System Partition C12A7328-F81F-11D2-BA4B-00A0C93EC93B, in GPT's mixed-endian byte order.
const ESP: [u8; 16] = *b"\x28\x73\x2a\xc1\x1f\xf8\xd2\x11\xba\x4b\x00\xa0\xc9\x3e\xc9\x3b";
/// At most this many bytes of GPT partition entries are read (128 entries of 128 bytes is the norm).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Reads the partition table from the guest's first sectors (and, for a damaged GPT, its last one).
pub fn inspect(image: &mut dyn Image) -> Result<Guest> {
    let size = image.virtual_size();
    let mut guest = Guest { table: PartitionTable::None, boot: Vec::new(), problems: Vec::new() };
    if size < 2 * SECTOR {
        return Ok(guest);
    }
    let mut mbr = [0u8; 512];
    image.read_at(0, &mut mbr)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(guest);
    }
    let has_boot_code = mbr[..440].iter().any(|&b| b != 0);
    let entries: Vec<&[u8]> = mbr[446..510].chunks(16).collect();
    let protective = entries.iter().any(|e| e[4] == 0xEE);
    if !protective {
        let types: Vec<u8> = entries.iter().map(|e| e[4]).filter(|&t| t != 0).collect();
        if types.is_empty() && !has_boot_code {
            return Ok(guest);
        }
        guest.table = PartitionTable::Mbr;
        if has_boot_code {
            guest.boot.push(Boot::Bios);
        }
        if types.contains(&0xEF) {
            guest.boot.push(Boot::Uefi);
        }
        return Ok(guest);
    }
    match read_gpt(image, size, &mut guest.problems)? {
        Some(types) => {
            guest.table = PartitionTable::Gpt;
            if has_boot_code && types.contains(&BIOS_BOOT) {
                guest.boot.push(Boot::Bios);
            }
            if types.contains(&ESP) {
                guest.boot.push(Boot::Uefi);
            }
        }
        None => {
            // Only the protective MBR can be trusted; its boot code may still chain-load something.
            guest.table = PartitionTable::Mbr;
            if has_boot_code {
                guest.boot.push(Boot::Bios);
            }
        }
    }
    Ok(guest)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// The partition type GUIDs of a valid GPT, trying the primary header, then the backup; `None` if neither
/// checks out (each failure is described in `problems`).
fn read_gpt(image: &mut dyn Image, size: u64, problems: &mut Vec<String>) -> Result<Option<Vec<[u8; 16]>>> {
    for (which, lba) in [("primary", 1), ("backup", size / SECTOR - 1)] {
        let mut header = [0u8; 512];
        image.read_at(lba * SECTOR, &mut header)?;
        match check_header(&header, size) {
            Err(problem) => problems.push(format!("GPT {which} header: {problem}")),
            Ok((entries_lba, count, entry_size, entries_crc)) => {
                let len = count * entry_size;
                let mut entries = vec![0u8; len as usize];
                image.read_at(entries_lba * SECTOR, &mut entries)?;
                if crc32(&entries) != entries_crc {
                    problems.push(format!("GPT {which} partition array: checksum mismatch"));
                    continue;
                }
                let types = entries
                    .chunks(entry_size as usize)
                    .map(|e| <[u8; 16]>::try_from(&e[..16]).expect("entries are at least 128 bytes"))
                    .filter(|t| t != &[0; 16])
                    .collect();
                return Ok(Some(types));
            }
        }
    }
    Ok(None)
}

/// Validates a GPT header: signature, size, CRC, and an entry array that lies inside the disk.
/// Returns (entries LBA, entry count, entry size, entries CRC).
fn check_header(h: &[u8; 512], disk_size: u64) -> Result<(u64, u64, u64, u32), String> {
    if &h[..8] != b"EFI PART" {
        return Err("no \"EFI PART\" signature".into());
    }
    let header_size = LittleEndian::read_u32(&h[12..16]) as usize;
    if !(92..=512).contains(&header_size) {
        return Err(format!("header size {header_size} out of range"));
    }
    let stored = LittleEndian::read_u32(&h[16..20]);
    let mut copy = h[..header_size].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != stored {
        return Err("header checksum mismatch".into());
    }
    let entries_lba = LittleEndian::read_u64(&h[72..80]);
    let count = u64::from(LittleEndian::read_u32(&h[80..84]));
    let entry_size = u64::from(LittleEndian::read_u32(&h[84..88]));
    let entries_crc = LittleEndian::read_u32(&h[88..92]);
    if entry_size < 128 || !entry_size.is_power_of_two() || count * entry_size > MAX_ENTRY_BYTES {
        return Err(format!("{count} entries of {entry_size} bytes is not a valid partition array"));
    }
    let end = entries_lba.checked_mul(SECTOR).and_then(|s| s.checked_add(count * entry_size));
    if entries_lba < 2 || end.is_none_or(|e| e > disk_size) {
        return Err("partition array lies outside the disk".into());
    }
    Ok((entries_lba, count, entry_size, entries_crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawImage;

    /// A 4 MiB disk with a GPT (primary and backup) holding partitions of the given type GUIDs.
    fn gpt_disk(types: &[[u8; 16]], boot_code: bool) -> Vec<u8> {
        let size = 4usize << 20;
        let last_lba = (size / 512 - 1) as u64;
        let mut d = vec![0u8; size];
        if boot_code {
            d[0] = 0xEB; // a jump, as GRUB's boot.img starts
        }
        d[446 + 4] = 0xEE; // protective partition
        d[510] = 0x55;
        d[511] = 0xAA;
        let mut entries = vec![0u8; 128 * 128];
        for (i, t) in types.iter().enumerate() {
            entries[i * 128..i * 128 + 16].copy_from_slice(t);
        }
        let entries_crc = crc32(&entries);
        for (my_lba, entries_lba) in [(1u64, 2u64), (last_lba, last_lba - 32)] {
            let mut h = [0u8; 92];
            h[..8].copy_from_slice(b"EFI PART");
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes()); // revision 1.0
            h[12..16].copy_from_slice(&92u32.to_le_bytes()); // header size
            h[24..32].copy_from_slice(&my_lba.to_le_bytes());
            h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
            h[80..84].copy_from_slice(&128u32.to_le_bytes()); // entry count
            h[84..88].copy_from_slice(&128u32.to_le_bytes()); // entry size
            h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
            let crc = crc32(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            d[my_lba as usize * 512..][..92].copy_from_slice(&h);
            d[entries_lba as usize * 512..][..entries.len()].copy_from_slice(&entries);
        }
        d
    }

    fn inspect_bytes(d: Vec<u8>) -> Guest {
        inspect(&mut RawImage::new(Box::new(d))).unwrap()
    }

    #[test]
    fn hybrid_gpt_boots_both_ways() {
        let g = inspect_bytes(gpt_disk(&[BIOS_BOOT, ESP, [7; 16]], true));
        assert_eq!((g.table, g.boot.as_slice()), (PartitionTable::Gpt, &[Boot::Bios, Boot::Uefi][..]));
        assert!(!g.uefi_only() && g.problems.is_empty());
    }

    #[test]
    fn esp_only_gpt_is_uefi_only() {
        let g = inspect_bytes(gpt_disk(&[ESP, [7; 16]], false));
        assert!(g.uefi_only(), "{g:?}");
    }

    #[test]
    fn bad_primary_header_crc_falls_back_to_the_backup_and_is_reported() {
        let mut d = gpt_disk(&[ESP], false);
        d[512 + 16] ^= 1;
        let g = inspect_bytes(d);
        assert_eq!(g.table, PartitionTable::Gpt);
        assert_eq!(g.problems, ["GPT primary header: header checksum mismatch"]);
    }

    #[test]
    fn both_headers_bad_means_the_gpt_is_not_trusted() {
        let mut d = gpt_disk(&[ESP], true);
        d[512 + 16] ^= 1;
        let last = d.len() - 512;
        d[last + 16] ^= 1;
        let g = inspect_bytes(d);
        assert_eq!((g.table, g.boot.as_slice()), (PartitionTable::Mbr, &[Boot::Bios][..]));
        assert_eq!(g.problems.len(), 2);
    }

    #[test]
    fn mbr_with_boot_code_and_no_table_at_all() {
        let mut d = vec![0u8; 1 << 20];
        d[0] = 0xFA;
        d[446 + 4] = 0x83; // Linux
        d[510] = 0x55;
        d[511] = 0xAA;
        let g = inspect_bytes(d);
        assert_eq!((g.table, g.boot.as_slice()), (PartitionTable::Mbr, &[Boot::Bios][..]));
        let g = inspect_bytes(vec![0u8; 1 << 20]);
        assert_eq!((g.table, g.boot.len()), (PartitionTable::None, 0));
    }
}
