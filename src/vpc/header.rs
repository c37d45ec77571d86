//! The VHD hard disk footer and dynamic disk header (Microsoft's Virtual Hard Disk Image Format Specification,
//! "Hard Disk Footer Format" and "Dynamic Disk Header Format"), the block allocation table entry, and the rule
//! that turns a footer into a virtual size. Every on-disk integer is big-endian.

use crate::error::{Error, Result};
use byteorder::{BigEndian, ByteOrder};

/// VHD sectors are always 512 bytes.
pub const SECTOR: u64 = 512;

/// Bytes in the footer (and in its copy at offset 0 of a dynamic disk).
pub const FOOTER_SIZE: usize = 512;

/// Bytes in the dynamic disk header.
pub const HEADER_SIZE: usize = 1024;

/// Footer field offsets, as the specification lists them.
mod footer {
    // `char[8]` cookie "conectix" at 0, then:
    /// `u32` feature flags; bit 1 is reserved and always set.
    pub const FEATURES: usize = 8;
    /// `u32` file format version, major in the high 16 bits: 0x0001_0000.
    pub const FORMAT_VERSION: usize = 12;
    /// `u64` absolute offset of the dynamic disk header; all ones for fixed disks.
    pub const DATA_OFFSET: usize = 16;
    /// `u32` creation time, seconds since 2000-01-01 00:00:00 UTC.
    pub const TIMESTAMP: usize = 24;
    /// `char[4]` creator application ("vpc ", "qemu", "qem2", "win ", "wa\0\0", ...).
    pub const CREATOR_APP: usize = 28;
    /// `u32` creator version, major in the high 16 bits.
    pub const CREATOR_VERSION: usize = 32;
    /// `char[4]` creator host OS: the specification knows "Wi2k" and "Mac ".
    pub const CREATOR_HOST_OS: usize = 36;
    /// `u64` size of the disk in bytes when it was created. libvhdi takes the disk's size from here.
    pub const ORIGINAL_SIZE: usize = 40;
    /// `u64` size of the disk in bytes as currently seen by the guest.
    pub const CURRENT_SIZE: usize = 48;
    /// `u16` cylinders, then `u8` heads, then `u8` sectors per track.
    pub const GEOMETRY: usize = 56;
    /// `u32` disk type: 2 fixed, 3 dynamic, 4 differencing.
    pub const DISK_TYPE: usize = 60;
    /// `u32` one's complement of the byte sum of the footer, this field counted as zero.
    pub const CHECKSUM: usize = 64;
    /// `u8[16]` unique id; a child records its parent's in the dynamic header.
    pub const UNIQUE_ID: usize = 68;
    // `u8` saved state at 84, reserved to 512.
}

/// Dynamic disk header field offsets.
mod dynamic {
    /// `char[8]` cookie, "cxsparse".
    pub const COOKIE: usize = 0;
    /// `u64` offset of the next structure: unused, all ones (the specification says 32 bits of ones; Microsoft's
    /// tools want all 64, as qemu notes).
    pub const DATA_OFFSET: usize = 8;
    /// `u64` absolute offset of the block allocation table.
    pub const TABLE_OFFSET: usize = 16;
    /// `u32` header version, major in the high 16 bits: 0x0001_0000.
    pub const HEADER_VERSION: usize = 24;
    /// `u32` entries in the block allocation table.
    pub const MAX_TABLE_ENTRIES: usize = 28;
    /// `u32` bytes of guest data per block (not counting its sector bitmap); a power of two, 2 MiB by default.
    pub const BLOCK_SIZE: usize = 32;
    /// `u32` one's complement of the byte sum of the header, this field counted as zero.
    pub const CHECKSUM: usize = 36;
    /// `u8[16]` the parent's unique id (differencing disks).
    pub const PARENT_UNIQUE_ID: usize = 40;
    // `u32` the parent's modification time at 56, reserved at 60.
    /// `u16[256]` the parent's file name, UTF-16 big-endian.
    pub const PARENT_UNICODE_NAME: usize = 64;
    /// 8 parent locator entries of 24 bytes.
    pub const PARENT_LOCATORS: usize = 576;
    /// Bytes per parent locator entry: `u32` platform code, `u32` data space, `u32` data length,
    /// `u32` reserved, `u64` absolute data offset.
    pub const LOCATOR_SIZE: usize = 24;
}

const FOOTER_COOKIE: &[u8; 8] = b"conectix";
const HEADER_COOKIE: &[u8; 8] = b"cxsparse";

/// Largest virtual size qemu (and Hyper-V, for VHD) accepts: 0xff00_0000 sectors, 2040 GiB.
pub const MAX_VIRTUAL_SIZE: u64 = 0xff00_0000 * SECTOR;

/// Largest block accepted (the specification's default is 2 MiB; Hyper-V also writes 512 KiB). Bounds the
/// cached sector bitmap to 64 KiB.
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// Seconds from 1970-01-01 to 2000-01-01 00:00:00 UTC, where VHD timestamps start.
pub const TIMESTAMP_BASE: u64 = 946_684_800;

/// Cylinders, heads and sectors per track: the disk's CHS geometry as an ATA controller would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

impl Geometry {
    /// The largest geometry, 65535 × 16 × 255 (127 GiB), which the specification's algorithm gives every larger
    /// disk, and which Hyper-V, qemu's `force_size` and diskbridge write when no geometry fits the size. With it
    /// the geometry says nothing about the size, and every reader takes the current size field.
    pub const MAX: Geometry = Geometry { cylinders: 65535, heads: 16, sectors_per_track: 255 };

    /// Cylinders × heads × sectors per track.
    pub fn sectors(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track)
    }

    /// The specification's "CHS calculation" for a disk of `total_sectors`: the geometry Virtual PC and Hyper-V
    /// record. It covers at most `total_sectors`, usually a little less.
    pub fn for_sectors(total_sectors: u64) -> Geometry {
        let total = total_sectors.min(Geometry::MAX.sectors());
        let (sectors_per_track, heads, cylinders_times_heads) = if total >= 65535 * 16 * 63 {
            (255, 16, total / 255)
        } else {
            let mut spt = 17;
            let mut cth = total / spt;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                (spt, heads) = (31, 16);
                cth = total / spt;
            }
            if cth >= heads * 1024 {
                (spt, heads) = (63, 16);
                cth = total / spt;
            }
            (spt, heads, cth)
        };
        // Each quotient is bounded by the branch that chose it: below 65536 cylinders, at most 16 heads.
        Geometry {
            cylinders: (cylinders_times_heads / heads) as u16,
            heads: heads as u8,
            sectors_per_track: sectors_per_track as u8,
        }
    }
}

/// The footer and header checksum: the one's complement of the sum of all bytes, the 4-byte checksum field at
/// `field` counted as zero.
pub fn checksum(buf: &[u8], field: usize) -> u32 {
    let sum = buf
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |sum, (_, &b)| sum.wrapping_add(u32::from(b)));
    !sum
}

/// Whether `buf` starts with the footer cookie.
pub fn has_footer_cookie(buf: &[u8]) -> bool {
    buf.starts_with(FOOTER_COOKIE)
}

/// How the guest data is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// The guest bytes, then the footer.
    Fixed,
    /// Blocks allocated on demand; absent blocks read as zeros.
    Dynamic,
    /// Like dynamic, but absent blocks and sectors read from the parent.
    Differencing,
}

/// The validated hard disk footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Fixed, dynamic or differencing.
    pub disk_type: DiskType,
    /// Where the dynamic disk header is (dynamic and differencing disks).
    pub data_offset: u64,
    /// The application that created the image; decides how the size is read.
    pub creator_app: [u8; 4],
    /// The creator application's version, major in the high 16 bits.
    pub creator_version: u32,
    /// Creation time, seconds since 2000-01-01 00:00:00 UTC.
    pub timestamp: u32,
    /// The size the footer records, in bytes.
    pub current_size: u64,
    /// The CHS geometry.
    pub geometry: Geometry,
    /// This image's unique id.
    pub unique_id: [u8; 16],
}

impl Footer {
    /// Parses and checks a 512-byte footer found at file offset `at`.
    ///
    /// # Errors
    /// `InvalidFormat` without the cookie, `Corrupt` on a checksum mismatch or an unknown disk type,
    /// `Unsupported` for a format version other than 1.x.
    pub fn parse(buf: &[u8], at: u64) -> Result<Footer> {
        let buf = &buf[..FOOTER_SIZE];
        if !has_footer_cookie(buf) {
            return Err(Error::invalid("Not a VHD image: no 'conectix' footer").at(at));
        }
        let stored = BigEndian::read_u32(&buf[footer::CHECKSUM..]);
        let computed = checksum(buf, footer::CHECKSUM);
        // Older qemu only warned here; current qemu refuses the image, and so do we: every other field
        // of a footer that fails its checksum is suspect, the size included.
        if stored != computed {
            return Err(Error::corrupt(format!(
                "VHD footer checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ))
            .at(at + footer::CHECKSUM as u64));
        }
        let version = BigEndian::read_u32(&buf[footer::FORMAT_VERSION..]);
        if version >> 16 != 1 {
            return Err(Error::unsupported(format!("VHD format version {version:#010x} is not 1.x"))
                .at(at + footer::FORMAT_VERSION as u64));
        }
        let disk_type = match BigEndian::read_u32(&buf[footer::DISK_TYPE..]) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => return Err(Error::corrupt(format!("Unknown VHD disk type {t}")).at(at + footer::DISK_TYPE as u64)),
        };
        let geometry = &buf[footer::GEOMETRY..];
        Ok(Footer {
            disk_type,
            data_offset: BigEndian::read_u64(&buf[footer::DATA_OFFSET..]),
            creator_app: buf[footer::CREATOR_APP..footer::CREATOR_APP + 4].try_into().expect("4 bytes"),
            creator_version: BigEndian::read_u32(&buf[footer::CREATOR_VERSION..]),
            timestamp: BigEndian::read_u32(&buf[footer::TIMESTAMP..]),
            current_size: BigEndian::read_u64(&buf[footer::CURRENT_SIZE..]),
            geometry: Geometry {
                cylinders: BigEndian::read_u16(geometry),
                heads: geometry[2],
                sectors_per_track: geometry[3],
            },
            unique_id: buf[footer::UNIQUE_ID..footer::UNIQUE_ID + 16].try_into().expect("16 bytes"),
        })
    }

    /// The guest size, by qemu's rule (10.0 and later): Virtual PC ("vpc ") and qemu without `force_size`
    /// ("qemu") size the disk by its CHS geometry, which rounds the requested size; every other creator —
    /// Hyper-V "win ", Azure "wa\0\0", qemu with `force_size` "qem2", disk2vhd, XenServer, ... — by the current
    /// size field, as does any image whose geometry is the CHS maximum. qemu truncates the current size to
    /// whole sectors; we round it up instead, so no guest byte is dropped.
    ///
    /// # Errors
    /// `LimitExceeded` above [`MAX_VIRTUAL_SIZE`].
    pub fn virtual_size(&self) -> Result<u64> {
        let by_geometry = matches!(&self.creator_app, b"vpc " | b"qemu") && self.geometry != Geometry::MAX;
        let size = if by_geometry {
            self.geometry.sectors() * SECTOR
        } else {
            self.current_size.div_ceil(SECTOR).saturating_mul(SECTOR)
        };
        if size > MAX_VIRTUAL_SIZE {
            return Err(Error::limit(format!(
                "VHD virtual size of {size} bytes exceeds the format's {MAX_VIRTUAL_SIZE}-byte limit"
            )));
        }
        Ok(size)
    }

    /// The footer's 512 bytes, checksum included; the original size is the current size, as in a new disk.
    /// The creator host OS is "Wi2k" whatever the host: the specification knows only "Wi2k" and "Mac ", and
    /// output must not depend on where it was made.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let mut buf = [0u8; FOOTER_SIZE];
        buf[..8].copy_from_slice(FOOTER_COOKIE);
        BigEndian::write_u32(&mut buf[footer::FEATURES..], 2);
        BigEndian::write_u32(&mut buf[footer::FORMAT_VERSION..], 0x0001_0000);
        BigEndian::write_u64(&mut buf[footer::DATA_OFFSET..], self.data_offset);
        BigEndian::write_u32(&mut buf[footer::TIMESTAMP..], self.timestamp);
        buf[footer::CREATOR_APP..footer::CREATOR_APP + 4].copy_from_slice(&self.creator_app);
        BigEndian::write_u32(&mut buf[footer::CREATOR_VERSION..], self.creator_version);
        buf[footer::CREATOR_HOST_OS..footer::CREATOR_HOST_OS + 4].copy_from_slice(b"Wi2k");
        BigEndian::write_u64(&mut buf[footer::ORIGINAL_SIZE..], self.current_size);
        BigEndian::write_u64(&mut buf[footer::CURRENT_SIZE..], self.current_size);
        BigEndian::write_u16(&mut buf[footer::GEOMETRY..], self.geometry.cylinders);
        buf[footer::GEOMETRY + 2] = self.geometry.heads;
        buf[footer::GEOMETRY + 3] = self.geometry.sectors_per_track;
        let disk_type = match self.disk_type {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        };
        BigEndian::write_u32(&mut buf[footer::DISK_TYPE..], disk_type);
        buf[footer::UNIQUE_ID..footer::UNIQUE_ID + 16].copy_from_slice(&self.unique_id);
        let sum = checksum(&buf, footer::CHECKSUM);
        BigEndian::write_u32(&mut buf[footer::CHECKSUM..], sum);
        buf
    }
}

/// The operating system a parent locator was written for, and so how its path is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// "W2ru": a Windows path relative to the child, UTF-16LE.
    WindowsRelative,
    /// "W2ku": an absolute Windows path, UTF-16LE.
    WindowsAbsolute,
    /// "MacX": a file URL, UTF-8.
    MacX,
}

/// A parent locator entry this reader can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentLocator {
    /// How the path is encoded.
    pub platform: Platform,
    /// Absolute file offset of the path.
    pub offset: u64,
    /// Bytes of the path.
    pub length: u32,
}

impl ParentLocator {
    /// Decodes the path bytes read from the locator's data into a name for the resolver: forward slashes,
    /// no "./" prefix, no NUL padding.
    ///
    /// # Errors
    /// `Corrupt` when the bytes are not valid in the locator's encoding.
    pub fn decode(&self, data: &[u8]) -> Result<String> {
        let text = match self.platform {
            Platform::WindowsRelative | Platform::WindowsAbsolute => {
                let units: Vec<u16> = data.chunks_exact(2).map(byteorder::LittleEndian::read_u16).collect();
                String::from_utf16(&units)
                    .map(|s| s.replace('\\', "/"))
                    .map_err(|_| Error::corrupt("Parent locator is not valid UTF-16"))?
            }
            Platform::MacX => {
                let url = std::str::from_utf8(data).map_err(|_| Error::corrupt("Parent locator is not valid UTF-8"))?;
                let path = url.strip_prefix("file://").unwrap_or(url);
                path.strip_prefix("localhost").unwrap_or(path).to_string()
            }
        };
        let text = text.trim_end_matches('\0');
        Ok(text.strip_prefix("./").unwrap_or(text).to_string())
    }
}

/// The validated dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Absolute offset of the block allocation table.
    pub table_offset: u64,
    /// Entries in the block allocation table.
    pub max_table_entries: u32,
    /// Guest bytes per block.
    pub block_size: u32,
    /// The parent's unique id (differencing disks); all zeros when not recorded.
    pub parent_unique_id: [u8; 16],
    /// The parent's file name, as recorded.
    pub parent_name: String,
    /// The parent locators this reader can follow, in the order they should be tried (relative first).
    pub locators: Vec<ParentLocator>,
}

impl DynamicHeader {
    /// Parses and checks a 1024-byte dynamic disk header found at file offset `at`.
    ///
    /// # Errors
    /// `Corrupt` on a bad cookie, a checksum mismatch, a block size that is not a power of two of at least 512,
    /// or an undecodable parent name; `LimitExceeded` for a block size above [`MAX_BLOCK_SIZE`]; `Unsupported`
    /// for a header version other than 1.x.
    pub fn parse(buf: &[u8], at: u64) -> Result<DynamicHeader> {
        let buf = &buf[..HEADER_SIZE];
        if !buf.starts_with(HEADER_COOKIE) {
            return Err(
                Error::corrupt("VHD dynamic disk header has no 'cxsparse' cookie").at(at + dynamic::COOKIE as u64)
            );
        }
        let stored = BigEndian::read_u32(&buf[dynamic::CHECKSUM..]);
        let computed = checksum(buf, dynamic::CHECKSUM);
        if stored != computed {
            return Err(Error::corrupt(format!(
                "VHD dynamic disk header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ))
            .at(at + dynamic::CHECKSUM as u64));
        }
        let version = BigEndian::read_u32(&buf[dynamic::HEADER_VERSION..]);
        if version >> 16 != 1 {
            return Err(Error::unsupported(format!("VHD dynamic disk header version {version:#010x} is not 1.x"))
                .at(at + dynamic::HEADER_VERSION as u64));
        }
        let block_size = BigEndian::read_u32(&buf[dynamic::BLOCK_SIZE..]);
        if !block_size.is_power_of_two() || u64::from(block_size) < SECTOR {
            return Err(Error::corrupt(format!("VHD block size {block_size} is not a power of two of at least 512"))
                .at(at + dynamic::BLOCK_SIZE as u64));
        }
        if block_size > MAX_BLOCK_SIZE {
            return Err(Error::limit(format!("VHD block size {block_size} exceeds the {MAX_BLOCK_SIZE}-byte limit"))
                .at(at + dynamic::BLOCK_SIZE as u64));
        }
        let name: Vec<u16> = buf[dynamic::PARENT_UNICODE_NAME..dynamic::PARENT_LOCATORS]
            .chunks_exact(2)
            .map(BigEndian::read_u16)
            .take_while(|&u| u != 0)
            .collect();
        let parent_name = String::from_utf16(&name).map_err(|_| {
            Error::corrupt("VHD parent name is not valid UTF-16").at(at + dynamic::PARENT_UNICODE_NAME as u64)
        })?;
        let mut locators: Vec<ParentLocator> = buf[dynamic::PARENT_LOCATORS..]
            .chunks_exact(dynamic::LOCATOR_SIZE)
            .take(8)
            .filter_map(|entry| {
                let platform = match &entry[..4] {
                    b"W2ru" => Platform::WindowsRelative,
                    b"W2ku" => Platform::WindowsAbsolute,
                    b"MacX" => Platform::MacX,
                    // None, the deprecated "Wi2r"/"Wi2k", and "Mac " (a binary alias).
                    _ => return None,
                };
                Some(ParentLocator {
                    platform,
                    length: BigEndian::read_u32(&entry[8..]),
                    offset: BigEndian::read_u64(&entry[16..]),
                })
            })
            .collect();
        locators.sort_by_key(|l| l.platform != Platform::WindowsRelative);
        Ok(DynamicHeader {
            table_offset: BigEndian::read_u64(&buf[dynamic::TABLE_OFFSET..]),
            max_table_entries: BigEndian::read_u32(&buf[dynamic::MAX_TABLE_ENTRIES..]),
            block_size,
            parent_unique_id: buf[dynamic::PARENT_UNIQUE_ID..dynamic::PARENT_UNIQUE_ID + 16]
                .try_into()
                .expect("16 bytes"),
            parent_name,
            locators,
        })
    }
}

/// The 1024 bytes of a dynamic disk's header (no parent): its BAT at `table_offset` with `entries` entries,
/// blocks of `block_size` bytes.
pub fn dynamic_header_bytes(table_offset: u64, entries: u32, block_size: u32) -> [u8; HEADER_SIZE] {
    let mut buf = [0u8; HEADER_SIZE];
    buf[..8].copy_from_slice(HEADER_COOKIE);
    BigEndian::write_u64(&mut buf[dynamic::DATA_OFFSET..], u64::MAX);
    BigEndian::write_u64(&mut buf[dynamic::TABLE_OFFSET..], table_offset);
    BigEndian::write_u32(&mut buf[dynamic::HEADER_VERSION..], 0x0001_0000);
    BigEndian::write_u32(&mut buf[dynamic::MAX_TABLE_ENTRIES..], entries);
    BigEndian::write_u32(&mut buf[dynamic::BLOCK_SIZE..], block_size);
    let sum = checksum(&buf, dynamic::CHECKSUM);
    BigEndian::write_u32(&mut buf[dynamic::CHECKSUM..], sum);
    buf
}

/// A block allocation table entry: the sector where a block's bitmap starts, or all ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatEntry(pub u32);

/// Where a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Not allocated in this file.
    Absent,
    /// The block's sector bitmap starts at this file offset; its data follows the bitmap.
    At(u64),
}

impl BatEntry {
    /// A block not allocated in this file.
    pub const ABSENT: BatEntry = BatEntry(u32::MAX);

    /// The block's state.
    pub fn state(self) -> BlockState {
        match self.0 {
            u32::MAX => BlockState::Absent,
            sector => BlockState::At(u64::from(sector) * SECTOR),
        }
    }
}

/// Bytes of a block's sector bitmap: one bit per sector, padded to whole sectors.
pub fn bitmap_size(block_size: u64) -> u64 {
    (block_size / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR
}

/// Whether sector `index` of a block is present in this file: the bitmap's most significant bit stands for the
/// lowest sector.
pub fn sector_present(bitmap: &[u8], index: u64) -> bool {
    bitmap[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
}

#[cfg(test)]
pub(crate) mod tests;
