//! The header section [MS-VHDX 2.2]: the file type identifier at 0, two headers at 64 KiB and 128 KiB, two
//! region tables at 192 KiB and 256 KiB. All integers little-endian; headers and region tables carry a
//! CRC-32C (Castagnoli) over the whole structure with the checksum field taken as zero.

use super::guid::{self, Guid};
use crate::error::{Error, Result};
use byteorder::{ByteOrder, LittleEndian as LE};

/// Offset of the file type identifier.
pub const FILE_ID_OFFSET: u64 = 0;
/// Offsets of the two header copies.
pub const HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
/// Offsets of the two region table copies.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
/// The header section is 1 MiB; nothing else may start before its end.
pub const HEADER_SECTION_SIZE: u64 = 1 << 20;
/// Every region, the log and every payload block are aligned to this.
pub const ALIGNMENT: u64 = 1 << 20;

/// Bytes of the file type identifier that are not reserved (signature and creator).
pub const FILE_ID_SIZE: usize = 8 + 512;
/// Size of a header; the CRC covers all of it.
pub const HEADER_SIZE: usize = 4096;
/// Size of a region table; the CRC covers all of it.
pub const REGION_TABLE_SIZE: usize = 64 << 10;

const FILE_ID_SIGNATURE: &[u8; 8] = b"vhdxfile";
const HEADER_SIGNATURE: &[u8; 4] = b"head";
const REGION_SIGNATURE: &[u8; 4] = b"regi";
/// Where every checksummed structure keeps its CRC-32C.
const CHECKSUM_OFFSET: usize = 4;
/// The only header version there is; qemu refuses any other.
const VERSION: u16 = 1;
/// MS-VHDX caps the region table at 2047 entries.
const MAX_REGION_ENTRIES: usize = 2047;
const REGION_ENTRY_SIZE: usize = 32;

/// CRC-32C of `buf` with its checksum field (bytes 4..8) taken as zero.
pub fn checksum(buf: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&buf[..CHECKSUM_OFFSET]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &buf[CHECKSUM_OFFSET + 4..])
}

fn seal(buf: &mut [u8]) {
    let crc = checksum(buf);
    LE::write_u32(&mut buf[CHECKSUM_OFFSET..], crc);
}

fn verify(buf: &[u8], what: &str) -> Result<()> {
    let stored = LE::read_u32(&buf[CHECKSUM_OFFSET..]);
    let computed = checksum(buf);
    if stored != computed {
        return Err(Error::corrupt(format!(
            "{what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    Ok(())
}

/// The file type identifier: signature and the creator, a UTF-16LE diagnostic string.
pub fn file_identifier(creator: &str) -> [u8; FILE_ID_SIZE] {
    let mut buf = [0u8; FILE_ID_SIZE];
    buf[..8].copy_from_slice(FILE_ID_SIGNATURE);
    // The field holds 256 UTF-16 units; the last one stays a terminating zero.
    for (i, unit) in creator.encode_utf16().take(255).enumerate() {
        LE::write_u16(&mut buf[8 + 2 * i..], unit);
    }
    buf
}

/// Checks the file type identifier's signature.
pub fn check_file_identifier(buf: &[u8]) -> Result<()> {
    if !buf.starts_with(FILE_ID_SIGNATURE) {
        return Err(Error::invalid("Not a VHDX file (no 'vhdxfile' signature)").at(FILE_ID_OFFSET));
    }
    Ok(())
}

/// One header [MS-VHDX 2.2.2]. Layout (4096 bytes):
///
/// | Off | Size | Field |
/// |---:|---:|---|
/// | 0 | 4 | Signature `head` |
/// | 4 | 4 | Checksum |
/// | 8 | 8 | SequenceNumber |
/// | 16 | 16 | FileWriteGuid |
/// | 32 | 16 | DataWriteGuid |
/// | 48 | 16 | LogGuid |
/// | 64 | 2 | LogVersion (0) |
/// | 66 | 2 | Version (1) |
/// | 68 | 4 | LogLength |
/// | 72 | 8 | LogOffset |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The valid header with the larger sequence number is the current one.
    pub sequence_number: u64,
    /// Changed before the first write to the file in a session.
    pub file_write_guid: Guid,
    /// Changed before the first change of guest-visible data.
    pub data_write_guid: Guid,
    /// Zero when the log holds nothing to replay.
    pub log_guid: Guid,
    /// Log length in bytes, a multiple of 1 MiB.
    pub log_length: u32,
    /// Log offset in bytes, a multiple of 1 MiB.
    pub log_offset: u64,
}

impl Header {
    /// The 4096 bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(HEADER_SIGNATURE);
        LE::write_u64(&mut b[8..], self.sequence_number);
        b[16..32].copy_from_slice(&self.file_write_guid.to_bytes_le());
        b[32..48].copy_from_slice(&self.data_write_guid.to_bytes_le());
        b[48..64].copy_from_slice(&self.log_guid.to_bytes_le());
        LE::write_u16(&mut b[64..], 0);
        LE::write_u16(&mut b[66..], VERSION);
        LE::write_u32(&mut b[68..], self.log_length);
        LE::write_u64(&mut b[72..], self.log_offset);
        seal(&mut b);
        b
    }

    /// Parses and validates a header (signature, checksum, versions, log placement).
    ///
    /// # Errors
    /// `Corrupt` naming the first field that is wrong.
    pub fn parse(buf: &[u8]) -> Result<Header> {
        let buf = buf.get(..HEADER_SIZE).ok_or_else(|| Error::corrupt("Header truncated"))?;
        if &buf[0..4] != HEADER_SIGNATURE {
            return Err(Error::corrupt("Header has no 'head' signature"));
        }
        verify(buf, "Header")?;
        let version = LE::read_u16(&buf[66..]);
        if version != VERSION {
            return Err(Error::corrupt(format!("Header version {version} is not 1")));
        }
        let log_version = LE::read_u16(&buf[64..]);
        if log_version != 0 {
            return Err(Error::corrupt(format!("Log version {log_version} is not 0")));
        }
        let h = Header {
            sequence_number: LE::read_u64(&buf[8..]),
            file_write_guid: guid::from_disk(&buf[16..]),
            data_write_guid: guid::from_disk(&buf[32..]),
            log_guid: guid::from_disk(&buf[48..]),
            log_length: LE::read_u32(&buf[68..]),
            log_offset: LE::read_u64(&buf[72..]),
        };
        if h.log_offset % ALIGNMENT != 0 || h.log_length as u64 % ALIGNMENT != 0 || h.log_offset < HEADER_SECTION_SIZE {
            return Err(Error::corrupt("Log is not 1 MiB aligned or overlaps the header section"));
        }
        Ok(h)
    }
}

/// A region table entry [MS-VHDX 2.2.3.2]: `Guid | u64 FileOffset | u32 Length | u32 Required (bit 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    /// What the region is.
    pub guid: Guid,
    /// Byte offset, a multiple of 1 MiB.
    pub file_offset: u64,
    /// Byte length, a multiple of 1 MiB.
    pub length: u32,
    /// A reader that does not know the region must refuse the file.
    pub required: bool,
}

/// A region table: `Signature 'regi' | Checksum | u32 EntryCount | u32 Reserved`, entries from byte 16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTable {
    /// The regions, in file order as written.
    pub entries: Vec<RegionEntry>,
}

impl RegionTable {
    /// The 64 KiB table, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        b[0..4].copy_from_slice(REGION_SIGNATURE);
        LE::write_u32(&mut b[8..], self.entries.len() as u32);
        for (i, e) in self.entries.iter().enumerate() {
            let o = 16 + REGION_ENTRY_SIZE * i;
            b[o..o + 16].copy_from_slice(&e.guid.to_bytes_le());
            LE::write_u64(&mut b[o + 16..], e.file_offset);
            LE::write_u32(&mut b[o + 24..], e.length);
            LE::write_u32(&mut b[o + 28..], u32::from(e.required));
        }
        seal(&mut b);
        b
    }

    /// Parses and validates a region table: signature, checksum, entry count, alignment, unique GUIDs.
    ///
    /// # Errors
    /// `Corrupt` on any violation.
    pub fn parse(buf: &[u8]) -> Result<RegionTable> {
        let buf = buf.get(..REGION_TABLE_SIZE).ok_or_else(|| Error::corrupt("Region table truncated"))?;
        if &buf[0..4] != REGION_SIGNATURE {
            return Err(Error::corrupt("Region table has no 'regi' signature"));
        }
        verify(buf, "Region table")?;
        let count = LE::read_u32(&buf[8..]) as usize;
        if count > MAX_REGION_ENTRIES {
            return Err(Error::corrupt(format!("Region table has {count} entries (at most 2047)")));
        }
        let mut entries: Vec<RegionEntry> = Vec::with_capacity(count);
        for i in 0..count {
            let o = 16 + REGION_ENTRY_SIZE * i;
            let e = RegionEntry {
                guid: guid::from_disk(&buf[o..]),
                file_offset: LE::read_u64(&buf[o + 16..]),
                length: LE::read_u32(&buf[o + 24..]),
                required: LE::read_u32(&buf[o + 28..]) & 1 == 1,
            };
            if e.file_offset % ALIGNMENT != 0 || e.length as u64 % ALIGNMENT != 0 || e.file_offset < HEADER_SECTION_SIZE
            {
                return Err(Error::corrupt(format!("Region {} is not 1 MiB aligned", e.guid)));
            }
            if entries.iter().any(|x| x.guid == e.guid) {
                return Err(Error::corrupt(format!("Region {} is listed twice", e.guid)));
            }
            entries.push(e);
        }
        Ok(RegionTable { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_zeroed_field() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let mut buf = *b"headXXXXrest";
        let before = checksum(&buf);
        buf[4..8].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(checksum(&buf), before, "the checksum field itself must not count");
        assert_eq!(before, crc32c::crc32c(b"head\0\0\0\0rest"));
    }

    #[test]
    fn qemu_header_checksum_reproduces() {
        // The first 80 bytes of header 1 of `qemu-img create -f vhdx empty.vhdx 64M` (FORMATS.md §3.3); the rest
        // of the 4 KiB is zero.
        let mut b = [0u8; HEADER_SIZE];
        #[rustfmt::skip]
        let head: [u8; 80] = [
            // 'head'
            0x68, 0x65, 0x61, 0x64,
            // Checksum 0xf358518e
            0x8e, 0x51, 0x58, 0xf3,
            // SequenceNumber 0x3a6cbe8c
            0x8c, 0xbe, 0x6c, 0x3a, 0, 0, 0, 0,
            // FileWriteGuid
            0xce, 0x02, 0xca, 0xae, 0xb9, 0x3f, 0x4b, 0x12, 0x87, 0xae, 0x53, 0x7a, 0xb2, 0x89, 0xf9, 0x49,
            // DataWriteGuid
            0x9f, 0x74, 0xa4, 0xec, 0x13, 0x5e, 0x47, 0xa1, 0xad, 0x7f, 0x4d, 0x0a, 0x5c, 0xfa, 0x9c, 0xcf,
            // LogGuid: none
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // LogVersion 0, Version 1
            0, 0, 1, 0,
            // LogLength 1 MiB
            0, 0, 0x10, 0,
            // LogOffset 1 MiB
            0, 0, 0x10, 0, 0, 0, 0, 0,
        ];
        b[..80].copy_from_slice(&head);
        let h = Header::parse(&b).expect("qemu's header parses and its CRC matches");
        assert_eq!(h.sequence_number, 0x3a6c_be8c);
        assert_eq!((h.log_offset, h.log_length), (1 << 20, 1 << 20));
        assert_eq!(h.to_bytes(), b, "writing it back gives the same bytes");
    }

    #[test]
    fn header_fields_sit_at_spec_offsets() {
        let h = Header {
            sequence_number: 0x0102_0304_0506_0708,
            file_write_guid: Guid::from_u128(0x00112233_4455_6677_8899_aabbccddeeff),
            data_write_guid: Guid::from_u128(1),
            log_guid: Guid::nil(),
            log_length: 1 << 20,
            log_offset: 1 << 20,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"head");
        assert_eq!(LE::read_u32(&b[4..]), checksum(&b));
        assert_eq!(&b[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            &b[16..32],
            &[0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]
        );
        assert_eq!(b[47], 1, "last byte of DataWriteGuid");
        assert!(b[48..64].iter().all(|&x| x == 0), "LogGuid zero");
        assert_eq!(&b[64..80], &[0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]);
        assert!(b[80..].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&b).unwrap(), h);
        let mut bad = b;
        bad[100] = 1;
        assert!(Header::parse(&bad).unwrap_err().message().contains("checksum"));
    }

    #[test]
    fn region_table_fields_sit_at_spec_offsets() {
        let t = RegionTable {
            entries: vec![
                RegionEntry { guid: guid::BAT_REGION, file_offset: 2 << 20, length: 1 << 20, required: true },
                RegionEntry { guid: guid::METADATA_REGION, file_offset: 3 << 20, length: 1 << 20, required: true },
            ],
        };
        let b = t.to_bytes();
        assert_eq!(b.len(), 65536);
        assert_eq!(&b[0..4], b"regi");
        assert_eq!(LE::read_u32(&b[4..]), checksum(&b));
        assert_eq!(&b[8..16], &[2, 0, 0, 0, 0, 0, 0, 0], "EntryCount 2, reserved 0");
        assert_eq!(&b[16..32], &guid::BAT_REGION.to_bytes_le());
        assert_eq!(&b[32..48], &[0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 0, 0, 0], "offset 2M, len 1M, required");
        assert_eq!(&b[48..64], &guid::METADATA_REGION.to_bytes_le());
        assert_eq!(&b[64..80], &[0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 0, 0, 0]);
        assert!(b[80..].iter().all(|&x| x == 0));
        assert_eq!(RegionTable::parse(&b).unwrap(), t);
    }

    #[test]
    fn file_identifier_has_signature_and_utf16_creator() {
        let b = file_identifier("diskbridge 0.1.0");
        assert_eq!(&b[..8], b"vhdxfile");
        assert_eq!(&b[8..14], &[b'd', 0, b'i', 0, b's', 0]);
        assert!(b[8 + 32..].iter().all(|&x| x == 0));
        check_file_identifier(&b).unwrap();
    }
}
