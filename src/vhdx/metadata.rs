//! The metadata region [MS-VHDX 2.6]: a table of items in its first 64 KiB, the items' values after it.
//!
//! Table header (32 bytes): `Signature 'metadata' | u16 Reserved | u16 EntryCount | 20 reserved`. Entries
//! (32 bytes): `ItemId Guid | u32 Offset (from the region start) | u32 Length | u32 flags (bit 0 IsUser,
//! bit 1 IsVirtualDisk, bit 2 IsRequired) | u32 reserved`.
//!
//! A differencing disk adds the parent locator item [MS-VHDX 2.6.2.6]: `LocatorType Guid | u16 Reserved |
//! u16 KeyValueCount`, then `KeyValueCount` entries of `u32 KeyOffset | u32 ValueOffset | u16 KeyLength |
//! u16 ValueLength` (offsets from the item's start), keys and values UTF-16LE without terminators.

use super::guid::{self, Guid};
use crate::error::{Error, Result};
use byteorder::{ByteOrder, LittleEndian as LE};

/// The table fills the first 64 KiB of the region; item values start after it.
pub const TABLE_SIZE: usize = 64 << 10;
/// The region this writer reserves, and the most an item may be long.
pub const REGION_SIZE: u64 = 1 << 20;

const SIGNATURE: &[u8; 8] = b"metadata";
const ENTRY_SIZE: usize = 32;
const MAX_ENTRIES: usize = 2047;
const LOCATOR_HEADER_SIZE: usize = 20;
const LOCATOR_ENTRY_SIZE: usize = 12;

const IS_VIRTUAL_DISK: u32 = 1 << 1;
const IS_REQUIRED: u32 = 1 << 2;

/// File parameters flag bit 0: payload blocks stay allocated (a fixed disk).
const LEAVE_BLOCKS_ALLOCATED: u32 = 1 << 0;
/// File parameters flag bit 1: a differencing disk.
const HAS_PARENT: u32 = 1 << 1;

/// Smallest and largest payload block sizes MS-VHDX allows.
pub const BLOCK_SIZES: std::ops::RangeInclusive<u64> = (1 << 20)..=(256 << 20);
/// Largest virtual disk MS-VHDX allows: 64 TiB.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// The five items every VHDX has, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Payload block size: a power of two from 1 MiB to 256 MiB.
    pub block_size: u32,
    /// Fixed disks keep every block allocated.
    pub leave_blocks_allocated: bool,
    /// Differencing disks have a parent.
    pub has_parent: bool,
    /// Guest size in bytes.
    pub virtual_size: u64,
    /// The SCSI page 83 unique identifier.
    pub page83: Guid,
    /// 512 or 4096.
    pub logical_sector_size: u32,
    /// 512 or 4096.
    pub physical_sector_size: u32,
    /// Where the parent locator item's value lies in the region (offset, length), when there is one.
    pub parent_locator_at: Option<(u32, u32)>,
}

impl Metadata {
    fn items(&self) -> Vec<(Guid, u32, Vec<u8>)> {
        let mut params = [0u8; 8];
        LE::write_u32(&mut params, self.block_size);
        let flags = if self.leave_blocks_allocated { LEAVE_BLOCKS_ALLOCATED } else { 0 }
            | if self.has_parent { HAS_PARENT } else { 0 };
        LE::write_u32(&mut params[4..], flags);
        // Flags as Hyper-V and qemu write them: file parameters describe the file, the rest the virtual disk.
        vec![
            (guid::FILE_PARAMETERS, IS_REQUIRED, params.to_vec()),
            (guid::VIRTUAL_DISK_SIZE, IS_VIRTUAL_DISK | IS_REQUIRED, self.virtual_size.to_le_bytes().to_vec()),
            (guid::PAGE83_DATA, IS_VIRTUAL_DISK | IS_REQUIRED, self.page83.to_bytes_le().to_vec()),
            (guid::LOGICAL_SECTOR_SIZE, IS_VIRTUAL_DISK | IS_REQUIRED, self.logical_sector_size.to_le_bytes().to_vec()),
            (
                guid::PHYSICAL_SECTOR_SIZE,
                IS_VIRTUAL_DISK | IS_REQUIRED,
                self.physical_sector_size.to_le_bytes().to_vec(),
            ),
        ]
    }

    /// The start of the region: the table, then the item values packed from 64 KiB on (the rest of the
    /// region is zero).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(None)
    }

    /// Like [`to_bytes`](Self::to_bytes), with a parent locator item after the five others (a differencing
    /// disk's metadata).
    pub fn to_bytes_with(&self, locator: Option<&ParentLocator>) -> Vec<u8> {
        let mut items = self.items();
        if let Some(locator) = locator {
            items.push((guid::PARENT_LOCATOR, IS_REQUIRED, locator.to_bytes()));
        }
        let values_len: usize = items.iter().map(|(_, _, v)| v.len()).sum();
        let mut b = vec![0u8; TABLE_SIZE + values_len];
        b[..8].copy_from_slice(SIGNATURE);
        LE::write_u16(&mut b[10..], items.len() as u16);
        let mut value_at = TABLE_SIZE;
        for (i, (guid, flags, value)) in items.iter().enumerate() {
            let o = 32 + ENTRY_SIZE * i;
            b[o..o + 16].copy_from_slice(&guid.to_bytes_le());
            LE::write_u32(&mut b[o + 16..], value_at as u32);
            LE::write_u32(&mut b[o + 20..], value.len() as u32);
            LE::write_u32(&mut b[o + 24..], *flags);
            b[value_at..value_at + value.len()].copy_from_slice(value);
            value_at += value.len();
        }
        b
    }

    /// Parses and validates the whole region: the five items present once each, values in range,
    /// no unknown required item.
    ///
    /// # Errors
    /// `Corrupt` for a broken table or value, `Unsupported` for an unknown required item.
    pub fn parse(region: &[u8]) -> Result<Metadata> {
        if region.len() < TABLE_SIZE || &region[..8] != SIGNATURE {
            return Err(Error::corrupt("Metadata region has no 'metadata' table"));
        }
        let count = LE::read_u16(&region[10..]) as usize;
        if count > MAX_ENTRIES {
            return Err(Error::corrupt(format!("Metadata table has {count} entries (at most 2047)")));
        }
        let mut found: [Option<&[u8]>; 5] = [None; 5];
        let known = [
            (guid::FILE_PARAMETERS, 8),
            (guid::VIRTUAL_DISK_SIZE, 8),
            (guid::PAGE83_DATA, 16),
            (guid::LOGICAL_SECTOR_SIZE, 4),
            (guid::PHYSICAL_SECTOR_SIZE, 4),
        ];
        let mut seen = Vec::with_capacity(count);
        let mut parent_locator_at = None;
        for i in 0..count {
            let o = 32 + ENTRY_SIZE * i;
            let id = guid::from_disk(&region[o..]);
            let offset = LE::read_u32(&region[o + 16..]) as usize;
            let length = LE::read_u32(&region[o + 20..]) as usize;
            let flags = LE::read_u32(&region[o + 24..]);
            if seen.contains(&id) {
                return Err(Error::corrupt(format!("Metadata item {id} is listed twice")));
            }
            seen.push(id);
            let value = if length == 0 {
                &[][..]
            } else if offset < TABLE_SIZE || offset.checked_add(length).is_none_or(|end| end > region.len()) {
                return Err(Error::corrupt(format!("Metadata item {id} lies outside the metadata region")));
            } else {
                &region[offset..offset + length]
            };
            match known.iter().position(|(g, _)| *g == id) {
                Some(k) if value.len() == known[k].1 => found[k] = Some(value),
                Some(_) => return Err(Error::corrupt(format!("Metadata item {id} has length {length}"))),
                // An empty value's offset is meaningless (and unchecked): keep it from being used.
                None if id == guid::PARENT_LOCATOR => {
                    parent_locator_at = Some(if length == 0 { (0, 0) } else { (offset as u32, length as u32) });
                }
                None if flags & IS_REQUIRED != 0 => {
                    return Err(Error::unsupported(format!("Unknown required metadata item {id}")));
                }
                None => {}
            }
        }
        let missing = |k: usize| Error::corrupt(format!("Required metadata item {} is missing", known[k].0));
        let value = |k: usize| found[k].ok_or_else(|| missing(k));
        let params = value(0)?;
        let m = Metadata {
            block_size: LE::read_u32(params),
            leave_blocks_allocated: LE::read_u32(&params[4..]) & LEAVE_BLOCKS_ALLOCATED != 0,
            has_parent: LE::read_u32(&params[4..]) & HAS_PARENT != 0,
            virtual_size: LE::read_u64(value(1)?),
            page83: guid::from_disk(value(2)?),
            logical_sector_size: LE::read_u32(value(3)?),
            physical_sector_size: LE::read_u32(value(4)?),
            parent_locator_at,
        };
        let block = m.block_size as u64;
        if !block.is_power_of_two() || !BLOCK_SIZES.contains(&block) {
            return Err(Error::corrupt(format!("Block size {block} is not a power of two from 1 MiB to 256 MiB")));
        }
        for (what, size) in [("Logical", m.logical_sector_size), ("Physical", m.physical_sector_size)] {
            if size != 512 && size != 4096 {
                return Err(Error::corrupt(format!("{what} sector size {size} is neither 512 nor 4096")));
            }
        }
        if m.virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Error::corrupt(format!("Virtual disk size {} exceeds 64 TiB", m.virtual_size)));
        }
        if m.has_parent && m.parent_locator_at.is_none() {
            return Err(Error::corrupt("Differencing VHDX has no parent locator"));
        }
        Ok(m)
    }
}

/// The parent locator of a differencing disk: its type and key/value pairs, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    /// [`guid::VHDX_PARENT_LOCATOR_TYPE`] for a VHDX parent.
    pub locator_type: Guid,
    /// `parent_linkage`, `relative_path`, `absolute_win32_path`, `volume_path`, … and their values.
    pub entries: Vec<(String, String)>,
}

impl ParentLocator {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The item's bytes: header, entry table, then each key and value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let utf16 = |s: &str| s.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
        let mut b = vec![0u8; LOCATOR_HEADER_SIZE + LOCATOR_ENTRY_SIZE * self.entries.len()];
        b[..16].copy_from_slice(&self.locator_type.to_bytes_le());
        LE::write_u16(&mut b[18..], self.entries.len() as u16);
        for (i, (key, value)) in self.entries.iter().enumerate() {
            let (key, value) = (utf16(key), utf16(value));
            let (e, at) = (LOCATOR_HEADER_SIZE + LOCATOR_ENTRY_SIZE * i, b.len());
            LE::write_u32(&mut b[e..], at as u32);
            LE::write_u32(&mut b[e + 4..], (at + key.len()) as u32);
            LE::write_u16(&mut b[e + 8..], key.len() as u16);
            LE::write_u16(&mut b[e + 10..], value.len() as u16);
            b.extend(key);
            b.extend(value);
        }
        b
    }

    /// Parses the item's value, checking every key and value lies inside it and is UTF-16.
    ///
    /// # Errors
    /// `Corrupt` naming what is out of bounds or undecodable.
    pub fn parse(item: &[u8]) -> Result<ParentLocator> {
        if item.len() < LOCATOR_HEADER_SIZE {
            return Err(Error::corrupt(format!("Parent locator of {} bytes is shorter than its header", item.len())));
        }
        let count = LE::read_u16(&item[18..]) as usize;
        if LOCATOR_HEADER_SIZE + LOCATOR_ENTRY_SIZE * count > item.len() {
            return Err(Error::corrupt(format!(
                "Parent locator's {count} entries do not fit its {} bytes",
                item.len()
            )));
        }
        let text = |offset: u32, length: u16, what: &str| -> Result<String> {
            let (start, length) = (offset as usize, length as usize);
            let bytes = item
                .get(start..start.saturating_add(length))
                .filter(|b| b.len() % 2 == 0)
                .ok_or_else(|| Error::corrupt(format!("Parent locator {what} at {start} lies outside the item")))?;
            let units: Vec<u16> = bytes.chunks_exact(2).map(LE::read_u16).collect();
            String::from_utf16(&units).map_err(|_| Error::corrupt(format!("Parent locator {what} is not UTF-16")))
        };
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let e = &item[LOCATOR_HEADER_SIZE + LOCATOR_ENTRY_SIZE * i..];
            let key = text(LE::read_u32(e), LE::read_u16(&e[8..]), "key")?;
            let value = text(LE::read_u32(&e[4..]), LE::read_u16(&e[10..]), "value")?;
            entries.push((key, value));
        }
        Ok(ParentLocator { locator_type: guid::from_disk(item), entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            block_size: 8 << 20,
            leave_blocks_allocated: false,
            has_parent: false,
            virtual_size: 64 << 20,
            page83: Guid::from_u128(0xf072f789_19f3_c543_91d2_f49fca6ed233),
            logical_sector_size: 512,
            physical_sector_size: 512,
            parent_locator_at: None,
        }
    }

    #[test]
    fn table_and_items_match_qemus_layout_byte_for_byte() {
        // FORMATS.md §3.5: qemu-img's metadata for a 64 MiB disk with 8 MiB blocks.
        let b = sample().to_bytes();
        assert_eq!(&b[0..16], b"metadata\0\0\x05\0\0\0\0\0", "signature, reserved, EntryCount 5");
        assert_eq!(&b[32..48], &guid::FILE_PARAMETERS.to_bytes_le());
        assert_eq!(&b[48..64], &[0, 0, 1, 0, 8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0], "offset 64K, len 8, required");
        assert_eq!(&b[64..80], &guid::VIRTUAL_DISK_SIZE.to_bytes_le());
        assert_eq!(&b[80..96], &[8, 0, 1, 0, 8, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0], "offset 64K+8, virtual disk");
        assert_eq!(&b[96..112], &guid::PAGE83_DATA.to_bytes_le());
        assert_eq!(&b[112..116], &[0x10, 0, 1, 0]);
        assert_eq!(&b[128..144], &guid::LOGICAL_SECTOR_SIZE.to_bytes_le());
        assert_eq!(&b[144..148], &[0x20, 0, 1, 0]);
        assert_eq!(&b[160..176], &guid::PHYSICAL_SECTOR_SIZE.to_bytes_le());
        assert_eq!(&b[176..180], &[0x24, 0, 1, 0]);
        assert!(b[192..TABLE_SIZE].iter().all(|&x| x == 0));
        let values: [u8; 40] = [
            0, 0, 0x80, 0, 0, 0, 0, 0, // BlockSize 8 MiB, flags 0
            0, 0, 0, 4, 0, 0, 0, 0, // VirtualDiskSize 64 MiB
            0x89, 0xf7, 0x72, 0xf0, 0xf3, 0x19, 0x43, 0xc5, 0x91, 0xd2, 0xf4, 0x9f, 0xca, 0x6e, 0xd2,
            0x33, // Page83
            0, 2, 0, 0, 0, 2, 0, 0, // logical 512, physical 512
        ];
        assert_eq!(&b[TABLE_SIZE..], &values);
    }

    #[test]
    fn parse_round_trips_and_refuses_what_qemu_refuses() {
        let m = sample();
        let mut region = m.to_bytes();
        region.resize(REGION_SIZE as usize, 0);
        assert_eq!(Metadata::parse(&region).unwrap(), m);

        let mut bad = region.clone();
        bad[TABLE_SIZE + 2] = 0x81; // block size not a power of two
        assert!(Metadata::parse(&bad).unwrap_err().message().contains("Block size"));

        let mut missing = region.clone();
        missing[10] = 4; // drop the physical sector size entry
        assert!(Metadata::parse(&missing).unwrap_err().message().contains("missing"));

        let locator = ParentLocator {
            locator_type: guid::VHDX_PARENT_LOCATOR_TYPE,
            entries: vec![("relative_path".into(), ".\\p.vhdx".into()), ("parent_linkage".into(), "{x}".into())],
        };
        let mut diff = Metadata { has_parent: true, ..m }.to_bytes_with(Some(&locator));
        diff.resize(REGION_SIZE as usize, 0);
        let parsed = Metadata::parse(&diff).unwrap();
        let (at, len) = parsed.parent_locator_at.unwrap();
        let item = &diff[at as usize..][..len as usize];
        assert_eq!(ParentLocator::parse(item).unwrap(), locator);
        assert_eq!(ParentLocator::parse(item).unwrap().get("relative_path"), Some(".\\p.vhdx"));
        for cut in 0..item.len() {
            // Every truncation must be refused or parse, never read out of bounds.
            let _ = ParentLocator::parse(&item[..cut]);
        }
        assert!(ParentLocator::parse(&item[..item.len() - 1]).is_err());
        let empty = ParentLocator { locator_type: Guid::nil(), entries: vec![] };
        let mut empty_item = Metadata { has_parent: true, ..m }.to_bytes_with(Some(&empty));
        empty_item.resize(REGION_SIZE as usize, 0);
        // The item's entry (the sixth) with length 0 and an offset far outside the region.
        let entry = 32 + 5 * ENTRY_SIZE;
        LE::write_u32(&mut empty_item[entry + 16..], u32::MAX);
        LE::write_u32(&mut empty_item[entry + 20..], 0);
        assert_eq!(Metadata::parse(&empty_item).unwrap().parent_locator_at, Some((0, 0)));
        let mut no_locator = Metadata { has_parent: true, ..m }.to_bytes();
        no_locator.resize(REGION_SIZE as usize, 0);
        assert!(Metadata::parse(&no_locator).unwrap_err().message().contains("parent locator"));

        let mut unknown = region.clone();
        unknown[160] ^= 0xff; // physical sector size item becomes an unknown, required item
        assert_eq!(Metadata::parse(&unknown).unwrap_err().kind(), crate::ErrorKind::Unsupported);
    }
}
