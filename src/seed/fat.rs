//! A FAT12 volume written whole, in memory: a labelled file system holding a few small files in its root
//! directory, as `mkfs.fat -n LABEL` followed by `mcopy` would leave it. The whole on-disk layout is here.
//!
//! The geometry is mkfs.fat 4.2's for a 1 MiB volume (Microsoft's FAT specification, "FAT: General Overview of
//! On-Disk Format" 1.03): 512-byte sectors, 2 KiB clusters, one reserved sector, two FATs of two sectors, 512
//! root entries. That gives 502 clusters — FAT12, which readers recognise by the cluster count alone. No
//! partition table: cloud-init (blkid) finds the label on the whole disk.
//!
//! Written rather than taken from the `fatfs` crate: its last release (0.3.6, January 2023) reads timestamps
//! from a `&'static` time provider, so a per-call epoch would need leaked or global state, and formatting plus
//! writing two files needs none of its file-system machinery. Everything here follows from the arguments, so
//! the bytes are the same on every run.

use crate::error::{Error, Result};
use byteorder::{ByteOrder, LittleEndian as LE};

/// Bytes per sector.
const SECTOR: usize = 512;
/// The volume's size: 2048 sectors.
pub const VOLUME_SIZE: usize = 1 << 20;
/// Sectors per cluster (2 KiB clusters, as mkfs.fat picks for 1 MiB).
const SECTORS_PER_CLUSTER: usize = 4;
const CLUSTER: usize = SECTOR * SECTORS_PER_CLUSTER;
/// Sectors before the first FAT: the boot sector alone.
const RESERVED_SECTORS: usize = 1;
/// Copies of the FAT.
const FATS: usize = 2;
/// Sectors per FAT: 12 bits for each of the clusters plus the two reserved entries fit in 1024 bytes.
const SECTORS_PER_FAT: usize = 2;
/// Root directory entries (a fixed region on FAT12), 32 bytes each.
const ROOT_ENTRIES: usize = 512;
const DIR_ENTRY: usize = 32;
/// Media descriptor of a fixed disk; it is also the low byte of FAT entry 0.
const MEDIA: u8 = 0xf8;

const FAT_OFFSET: usize = RESERVED_SECTORS * SECTOR;
const ROOT_OFFSET: usize = FAT_OFFSET + FATS * SECTORS_PER_FAT * SECTOR;
const DATA_OFFSET: usize = ROOT_OFFSET + ROOT_ENTRIES * DIR_ENTRY;
/// Data clusters; cluster numbers run from 2 to `CLUSTERS + 1`.
const CLUSTERS: usize = (VOLUME_SIZE - DATA_OFFSET) / CLUSTER;
// FAT12 is told apart by a cluster count below 4085 alone, and its table must fit the sectors given to it.
const _: () = assert!(CLUSTERS < 4085 && (CLUSTERS + 2) * 3 / 2 <= SECTORS_PER_FAT * SECTOR);

/// A FAT12 entry marking the last cluster of a chain.
const END_OF_CHAIN: u16 = 0xfff;

/// Directory entry attributes.
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;
/// Read-only | hidden | system | volume id: the mark of a long-name entry.
const ATTR_LONG_NAME: u8 = 0x0f;
/// UTF-16 code units of a long name held by one long-name entry.
const LONG_NAME_UNITS: usize = 13;

/// What goes on the volume.
#[derive(Debug, Clone, Copy)]
pub struct Volume<'a> {
    /// The volume label: at most 11 characters that a short name may hold (upper case).
    pub label: &'a str,
    /// The volume serial number (blkid's UUID of a FAT volume).
    pub serial: u32,
    /// Seconds since 1970 (UTC) for every timestamp, clamped to what FAT can record (1980 to 2107).
    pub epoch: u64,
    /// The files of the root directory, by long name, in order.
    pub files: &'a [(&'a str, &'a [u8])],
}

/// The whole volume, [`VOLUME_SIZE`] bytes.
///
/// # Errors
/// `LimitExceeded` when the files do not fit; `InvalidArgument` for a label or file name FAT cannot hold.
pub fn format(volume: &Volume<'_>) -> Result<Vec<u8>> {
    let mut disk = vec![0u8; VOLUME_SIZE];
    let label = short_label(volume.label)?;
    disk[..SECTOR].copy_from_slice(&boot_sector(&label, volume.serial));
    let stamp = DosTime::from_unix(volume.epoch);

    let mut entries: Vec<[u8; DIR_ENTRY]> = vec![dir_entry(&label, ATTR_VOLUME_ID, stamp, 0, 0)];
    let mut fat = vec![0u16; CLUSTERS + 2];
    fat[0] = 0xf00 | u16::from(MEDIA);
    fat[1] = END_OF_CHAIN;
    let mut next_cluster = 2;
    let mut short_names: Vec<[u8; 11]> = Vec::new();
    for &(name, data) in volume.files {
        let short = short_name(name, &short_names)?;
        short_names.push(short);
        let clusters = data.len().div_ceil(CLUSTER);
        if next_cluster + clusters > CLUSTERS + 2 {
            let total: usize = volume.files.iter().map(|(_, d)| d.len()).sum();
            return Err(Error::limit(format!(
                "The seed disk's files take {total} bytes; its {} KiB file system holds {} KiB",
                VOLUME_SIZE >> 10,
                (CLUSTERS * CLUSTER) >> 10
            )));
        }
        // An empty file owns no cluster (first cluster 0), as FAT requires.
        let first = if clusters == 0 { 0 } else { next_cluster };
        for i in 0..clusters {
            let cluster = next_cluster + i;
            fat[cluster] = if i + 1 == clusters { END_OF_CHAIN } else { cluster as u16 + 1 };
        }
        let at = DATA_OFFSET + (next_cluster - 2) * CLUSTER;
        disk[at..at + data.len()].copy_from_slice(data);
        next_cluster += clusters;
        entries.extend(long_name_entries(name, &short)?);
        entries.push(dir_entry(&short, ATTR_ARCHIVE, stamp, first as u16, data.len() as u32));
    }
    if entries.len() > ROOT_ENTRIES {
        return Err(Error::limit(format!("The seed disk's root directory holds {ROOT_ENTRIES} entries")));
    }
    for (i, entry) in entries.iter().enumerate() {
        let at = ROOT_OFFSET + i * DIR_ENTRY;
        disk[at..at + DIR_ENTRY].copy_from_slice(entry);
    }
    let table = pack_fat12(&fat);
    for copy in 0..FATS {
        let at = FAT_OFFSET + copy * SECTORS_PER_FAT * SECTOR;
        disk[at..at + table.len()].copy_from_slice(&table);
    }
    Ok(disk)
}

/// The boot sector with its BIOS parameter block and the extended boot record FAT12/16 carry.
fn boot_sector(label: &[u8; 11], serial: u32) -> [u8; SECTOR] {
    let mut b = [0u8; SECTOR];
    // A short jump over the parameter block to the boot code, then a NOP.
    b[0x00..0x03].copy_from_slice(&[0xeb, 0x3c, 0x90]);
    b[0x03..0x0b].copy_from_slice(b"diskbrdg");
    LE::write_u16(&mut b[0x0b..], SECTOR as u16);
    b[0x0d] = SECTORS_PER_CLUSTER as u8;
    LE::write_u16(&mut b[0x0e..], RESERVED_SECTORS as u16);
    b[0x10] = FATS as u8;
    LE::write_u16(&mut b[0x11..], ROOT_ENTRIES as u16);
    LE::write_u16(&mut b[0x13..], (VOLUME_SIZE / SECTOR) as u16);
    b[0x15] = MEDIA;
    LE::write_u16(&mut b[0x16..], SECTORS_PER_FAT as u16);
    // CHS geometry nothing uses for a disk this size; mkfs.fat's values.
    LE::write_u16(&mut b[0x18..], 16);
    LE::write_u16(&mut b[0x1a..], 2);
    // Hidden sectors 0 and the 32-bit sector count 0 (the 16-bit one holds it) are left zero.
    b[0x24] = 0x80;
    b[0x26] = 0x29;
    LE::write_u32(&mut b[0x27..], serial);
    b[0x2b..0x36].copy_from_slice(label);
    b[0x36..0x3e].copy_from_slice(b"FAT12   ");
    // Boot code for a firmware that tries this disk anyway: INT 18h hands over to the next boot device; should
    // it return, halt rather than run into zeros.
    b[0x3e..0x42].copy_from_slice(&[0xcd, 0x18, 0xf4, 0xeb]);
    b[0x42] = 0xfd;
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b
}

/// A 32-byte short directory entry; creation, access and modification all at `stamp`.
fn dir_entry(name: &[u8; 11], attr: u8, stamp: DosTime, first_cluster: u16, size: u32) -> [u8; DIR_ENTRY] {
    let mut e = [0u8; DIR_ENTRY];
    e[0x00..0x0b].copy_from_slice(name);
    e[0x0b] = attr;
    // 0x0c (case flags) and 0x0d (creation time in 10 ms units) stay 0: the times are whole even seconds.
    LE::write_u16(&mut e[0x0e..], stamp.time);
    LE::write_u16(&mut e[0x10..], stamp.date);
    LE::write_u16(&mut e[0x12..], stamp.date);
    // 0x14: high half of the first cluster, always 0 on FAT12.
    LE::write_u16(&mut e[0x16..], stamp.time);
    LE::write_u16(&mut e[0x18..], stamp.date);
    LE::write_u16(&mut e[0x1a..], first_cluster);
    LE::write_u32(&mut e[0x1c..], size);
    e
}

/// The long-name entries that precede a short entry, last part first as they are stored.
fn long_name_entries(name: &str, short: &[u8; 11]) -> Result<Vec<[u8; DIR_ENTRY]>> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if units.is_empty() || units.len() > 255 || name.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|']) {
        return Err(Error::argument(format!("'{name}' is not a file name FAT can hold")));
    }
    // NUL-terminated unless it fills its last entry exactly, then padded with 0xFFFF.
    if units.len() % LONG_NAME_UNITS != 0 {
        units.push(0);
    }
    units.resize(units.len().div_ceil(LONG_NAME_UNITS) * LONG_NAME_UNITS, 0xffff);
    let checksum = short.iter().fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c));
    let parts = units.len() / LONG_NAME_UNITS;
    Ok((0..parts)
        .rev()
        .map(|part| {
            let mut e = [0u8; DIR_ENTRY];
            e[0] = (part + 1) as u8 | if part + 1 == parts { 0x40 } else { 0 };
            e[0x0b] = ATTR_LONG_NAME;
            e[0x0d] = checksum;
            let chunk = &units[part * LONG_NAME_UNITS..][..LONG_NAME_UNITS];
            // The 13 units are split over three fields around the attribute, checksum and cluster fields.
            let slots = (0x01..0x0b).step_by(2).chain((0x0e..0x1a).step_by(2)).chain((0x1c..0x20).step_by(2));
            for (at, &unit) in slots.zip(chunk) {
                LE::write_u16(&mut e[at..], unit);
            }
            e
        })
        .collect())
}

/// The 8.3 name stored beside a long name: up to six upper-cased characters a short name allows, then `~N`,
/// with the first N not taken by `taken` — what Windows and mtools generate for names that are not 8.3.
fn short_name(long: &str, taken: &[[u8; 11]]) -> Result<[u8; 11]> {
    let (stem, ext) = match long.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (long, ""),
    };
    let valid = |s: &str| -> Vec<u8> {
        s.bytes()
            .map(|b| b.to_ascii_uppercase())
            .filter(|&b| b.is_ascii_alphanumeric() || b"!#$%&'()-@^_`{}~".contains(&b))
            .collect()
    };
    let (stem, ext) = (valid(stem), valid(ext));
    for n in 1..=9 {
        let mut short = [b' '; 11];
        let tail = format!("~{n}");
        let keep = stem.len().min(8 - tail.len());
        short[..keep].copy_from_slice(&stem[..keep]);
        short[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        let e = ext.len().min(3);
        short[8..8 + e].copy_from_slice(&ext[..e]);
        if !taken.contains(&short) {
            return Ok(short);
        }
    }
    Err(Error::argument(format!("Too many files named like '{long}'")))
}

/// The label padded with spaces to 11 bytes, as both the boot sector and the volume-label entry hold it.
fn short_label(label: &str) -> Result<[u8; 11]> {
    let allowed = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'()-@^_`{}~ ".contains(&b);
    if label.is_empty() || label.len() > 11 || !label.bytes().all(allowed) {
        return Err(Error::argument(format!("'{label}' is not a FAT volume label")));
    }
    let mut out = [b' '; 11];
    out[..label.len()].copy_from_slice(label.as_bytes());
    Ok(out)
}

/// The FAT as 12-bit entries, two entries in three bytes, low nibbles first.
fn pack_fat12(entries: &[u16]) -> Vec<u8> {
    let mut out = vec![0u8; (entries.len() * 3).div_ceil(2)];
    for (n, &value) in entries.iter().enumerate() {
        let at = n * 3 / 2;
        if n % 2 == 0 {
            out[at] = value as u8;
            out[at + 1] |= (value >> 8) as u8 & 0x0f;
        } else {
            out[at] |= (value << 4) as u8;
            out[at + 1] = (value >> 4) as u8;
        }
    }
    out
}

/// A timestamp as FAT directory entries store it: local time in DOS fields, here taken as UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DosTime {
    /// Bits 15-9 years since 1980, 8-5 month, 4-0 day.
    date: u16,
    /// Bits 15-11 hours, 10-5 minutes, 4-0 seconds / 2.
    time: u16,
}

impl DosTime {
    /// 1980-01-01 00:00:00, the earliest a FAT date holds.
    const MIN_UNIX: u64 = 315_532_800;
    /// 2107-12-31 23:59:59, the latest.
    const MAX_UNIX: u64 = 4_354_819_199;

    fn from_unix(secs: u64) -> DosTime {
        let secs = secs.clamp(Self::MIN_UNIX, Self::MAX_UNIX);
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let of_day = secs % 86_400;
        let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        DosTime {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((hour << 11) | (minute << 5) | (second / 2)) as u16,
        }
    }
}

/// Year, month (1-12) and day (1-31) of the proleptic Gregorian calendar, `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, counted in 400-year eras that start on March 1st).
fn civil_from_days(days: i64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as u64, month as u64, day as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_mkfs_fat_s() {
        // What fsck.fat reports for mkfs.fat's 1 MiB volume.
        assert_eq!(CLUSTERS, 502);
        assert_eq!(DATA_OFFSET, 37 * SECTOR);
    }

    #[test]
    fn fat12_entries_pack_two_in_three_bytes() {
        assert_eq!(pack_fat12(&[0xff8, 0xfff, 0x003, 0xfff]), [0xf8, 0xff, 0xff, 0x03, 0xf0, 0xff]);
    }

    #[test]
    fn short_names_take_the_first_free_number() {
        let first = short_name("meta-data", &[]).unwrap();
        assert_eq!(&first, b"META-D~1   ");
        assert_eq!(&short_name("meta-data2", &[first]).unwrap(), b"META-D~2   ");
        assert_eq!(&short_name("network-config.yaml", &[]).unwrap(), b"NETWOR~1YAM");
    }

    #[test]
    fn long_name_entries_carry_the_checksum_mtools_computes() {
        // mcopy wrote this checksum for "meta-data" (short name META-D~1).
        let entries = long_name_entries("meta-data", b"META-D~1   ").unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0][0], 0x41);
        assert_eq!(entries[0][0x0d], 0xd4);
        assert_eq!(&entries[0][0x01..0x05], &[b'm', 0, b'e', 0]);
        // Nine characters, a NUL, then 0xFFFF padding in the last field.
        assert_eq!(&entries[0][0x1c..0x20], &[0xff; 4]);
        assert_eq!(long_name_entries(&"x".repeat(26), b"X~1        ").unwrap().len(), 2);
    }

    #[test]
    fn timestamps_are_utc_and_clamped_to_the_fat_range() {
        // 2023-11-14 22:13:20 UTC.
        let t = DosTime::from_unix(1_700_000_000);
        assert_eq!(t.date, (43 << 9) | (11 << 5) | 14);
        assert_eq!(t.time, (22 << 11) | (13 << 5) | 10);
        assert_eq!(DosTime::from_unix(0), DosTime { date: (1 << 5) | 1, time: 0 });
        assert_eq!(DosTime::from_unix(u64::MAX).date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn files_that_do_not_fit_are_refused() {
        let big = vec![1u8; VOLUME_SIZE];
        let volume = Volume { label: "CIDATA", serial: 1, epoch: 0, files: &[("user-data", &big)] };
        let e = format(&volume).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        assert!(e.message().contains("holds 1004 KiB"), "{e}");
        assert!(format(&Volume { label: "cidata", ..volume }).is_err());
    }
}
