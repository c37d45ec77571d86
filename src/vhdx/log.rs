//! The metadata log [MS-VHDX 2.3] and its replay into memory.
//!
//! Hyper-V writes every change to the BAT and the metadata region to the log first; a file closed before the
//! log was flushed has a non-zero `LogGuid` and must be read as if the log's active sequence had been applied.
//! diskbridge never writes its input, so the replayed sectors live in an overlay in front of the file
//! ([`Replayed`]); the header section is read before replay and never through it.
//!
//! ```text
//! entry header (64 bytes): 'loge' | Checksum | u32 EntryLength | u32 Tail | u64 SequenceNumber |
//!                          u32 DescriptorCount | u32 reserved | LogGuid | u64 FlushedFileOffset |
//!                          u64 LastFileOffset
//! descriptors (32 bytes each, right after the header, filling whole 4 KiB sectors):
//!   'zero' | u32 reserved | u64 ZeroLength | u64 FileOffset | u64 SequenceNumber
//!   'desc' | u8[4] TrailingBytes | u8[8] LeadingBytes | u64 FileOffset | u64 SequenceNumber
//! data sectors (4 KiB, one per 'desc', in descriptor order):
//!   'data' | u32 SequenceHigh | u8[4084] middle of the sector | u32 SequenceLow
//! ```
//!
//! The checksum is CRC-32C over the whole entry with the field taken as zero, as for headers. An entry is
//! valid when its header, descriptors and data sectors agree (signatures, sequence numbers, lengths) and the
//! checksum matches; anything else is a torn write and is ignored, as MS-VHDX says. The active sequence ends
//! at the valid entry with the largest sequence number and starts at that entry's `Tail`; a break between
//! them, or an entry that writes where no log may write, is a corrupt log and the file is refused.

use super::guid::{self, Guid};
use super::header::{self, Header};
use crate::error::{Error, Result};
use crate::io::{ReadAt, zeroed_buffer};
use byteorder::{ByteOrder, LittleEndian as LE};
use std::collections::BTreeMap;

/// Logs are read, and replayed sectors kept, in units of this.
pub const SECTOR: usize = 4096;
/// The longest log diskbridge replays. Hyper-V and qemu write 1 MiB logs (a larger one only matters when it
/// holds something to replay). A log is held in memory while it is searched, decoded once more, and its data
/// sectors and zero runs stay in memory after replay: a few times this in all, well inside issue 7's 256 MiB.
pub const MAX_LOG_LENGTH: u64 = 16 << 20;

const ENTRY_SIGNATURE: &[u8; 4] = b"loge";
const ZERO_SIGNATURE: &[u8; 4] = b"zero";
const DATA_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"desc";
const DATA_SECTOR_SIGNATURE: &[u8; 4] = b"data";
const ENTRY_HEADER_SIZE: usize = 64;
const DESCRIPTOR_SIZE: usize = 32;

/// One change an entry makes to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// The 4 KiB at `file_offset` become `sector`.
    Data {
        /// Where, a multiple of 4 KiB.
        file_offset: u64,
        /// 4096 bytes.
        sector: Vec<u8>,
    },
    /// `length` bytes at `file_offset` become zeros.
    Zero {
        /// Where, a multiple of 4 KiB.
        file_offset: u64,
        /// How many bytes, a multiple of 4 KiB.
        length: u64,
    },
}

impl LogWrite {
    fn range(&self) -> (u64, u64) {
        match self {
            LogWrite::Data { file_offset, .. } => (*file_offset, SECTOR as u64),
            LogWrite::Zero { file_offset, length } => (*file_offset, *length),
        }
    }
}

/// A log entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Consecutive entries of a sequence have consecutive numbers.
    pub sequence_number: u64,
    /// Log offset of the first entry of the sequence this one ends.
    pub tail: u32,
    /// Must equal the header's `LogGuid`.
    pub log_guid: Guid,
    /// The file was at least this long when the entry was written.
    pub flushed_file_offset: u64,
    /// The file is this long once the entry is applied.
    pub last_file_offset: u64,
    /// The changes, in order.
    pub writes: Vec<LogWrite>,
}

/// Sectors holding `count` descriptors after the entry header (which takes two descriptor slots).
fn descriptor_sectors(count: usize) -> usize {
    (count + 2).div_ceil(SECTOR / DESCRIPTOR_SIZE)
}

impl LogEntry {
    /// Sectors the entry takes in the log.
    fn sectors(&self) -> usize {
        let data = self.writes.iter().filter(|w| matches!(w, LogWrite::Data { .. })).count();
        descriptor_sectors(self.writes.len()) + data
    }

    /// The entry's bytes, a whole number of sectors, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let data: Vec<&Vec<u8>> = self
            .writes
            .iter()
            .filter_map(|w| match w {
                LogWrite::Data { sector, .. } => Some(sector),
                LogWrite::Zero { .. } => None,
            })
            .collect();
        let descriptor_bytes = descriptor_sectors(self.writes.len()) * SECTOR;
        let length = descriptor_bytes + data.len() * SECTOR;
        let mut b = vec![0u8; length];
        b[..4].copy_from_slice(ENTRY_SIGNATURE);
        LE::write_u32(&mut b[8..], length as u32);
        LE::write_u32(&mut b[12..], self.tail);
        LE::write_u64(&mut b[16..], self.sequence_number);
        LE::write_u32(&mut b[24..], self.writes.len() as u32);
        b[32..48].copy_from_slice(&self.log_guid.to_bytes_le());
        LE::write_u64(&mut b[48..], self.flushed_file_offset);
        LE::write_u64(&mut b[56..], self.last_file_offset);
        for (i, write) in self.writes.iter().enumerate() {
            let d = &mut b[ENTRY_HEADER_SIZE + DESCRIPTOR_SIZE * i..][..DESCRIPTOR_SIZE];
            match write {
                LogWrite::Zero { file_offset, length } => {
                    d[..4].copy_from_slice(ZERO_SIGNATURE);
                    LE::write_u64(&mut d[8..], *length);
                    LE::write_u64(&mut d[16..], *file_offset);
                }
                LogWrite::Data { file_offset, sector } => {
                    d[..4].copy_from_slice(DATA_DESCRIPTOR_SIGNATURE);
                    d[4..8].copy_from_slice(&sector[SECTOR - 4..]);
                    d[8..16].copy_from_slice(&sector[..8]);
                    LE::write_u64(&mut d[16..], *file_offset);
                }
            }
            LE::write_u64(&mut d[24..], self.sequence_number);
        }
        for (i, sector) in data.iter().enumerate() {
            let s = &mut b[descriptor_bytes + SECTOR * i..][..SECTOR];
            s[..4].copy_from_slice(DATA_SECTOR_SIGNATURE);
            LE::write_u32(&mut s[4..], (self.sequence_number >> 32) as u32);
            s[8..SECTOR - 4].copy_from_slice(&sector[8..SECTOR - 4]);
            LE::write_u32(&mut s[SECTOR - 4..], self.sequence_number as u32);
        }
        let crc = header::checksum(&b);
        LE::write_u32(&mut b[4..], crc);
        b
    }
}

/// The log as a ring of sectors.
struct Ring<'a>(&'a [u8]);

impl Ring<'_> {
    fn sectors(&self) -> usize {
        self.0.len() / SECTOR
    }

    fn sector(&self, index: usize) -> &[u8] {
        let i = index % self.sectors();
        &self.0[i * SECTOR..(i + 1) * SECTOR]
    }

    /// The valid entry starting at sector `first` with log GUID `guid`, if there is one (see the module docs).
    fn entry(&self, first: usize, guid: Guid) -> Option<LogEntry> {
        let head = self.sector(first);
        let length = LE::read_u32(&head[8..]) as usize;
        let count = LE::read_u32(&head[24..]) as usize;
        let sequence_number = LE::read_u64(&head[16..]);
        // The count is bounded by the length before any arithmetic on it.
        if &head[..4] != ENTRY_SIGNATURE
            || guid::from_disk(&head[32..]) != guid
            || length == 0
            || length % SECTOR != 0
            || length > self.0.len()
            || count > length / DESCRIPTOR_SIZE
            || descriptor_sectors(count) > length / SECTOR
        {
            return None;
        }
        let descriptor_sectors = descriptor_sectors(count);
        let descriptor = |i: usize| {
            let at = ENTRY_HEADER_SIZE + DESCRIPTOR_SIZE * i;
            &self.sector(first + at / SECTOR)[at % SECTOR..][..DESCRIPTOR_SIZE]
        };
        let mut writes = Vec::new();
        let mut data_sectors = 0;
        for i in 0..count {
            let d = descriptor(i);
            if LE::read_u64(&d[24..]) != sequence_number {
                return None;
            }
            let file_offset = LE::read_u64(&d[16..]);
            if &d[..4] == ZERO_SIGNATURE {
                writes.push(LogWrite::Zero { file_offset, length: LE::read_u64(&d[8..]) });
                continue;
            }
            if &d[..4] != DATA_DESCRIPTOR_SIGNATURE || descriptor_sectors + data_sectors >= length / SECTOR {
                return None;
            }
            let s = self.sector(first + descriptor_sectors + data_sectors);
            let stamp = (u64::from(LE::read_u32(&s[4..])) << 32) | u64::from(LE::read_u32(&s[SECTOR - 4..]));
            if &s[..4] != DATA_SECTOR_SIGNATURE || stamp != sequence_number {
                return None;
            }
            let mut sector = Vec::with_capacity(SECTOR);
            sector.extend_from_slice(&d[8..16]);
            sector.extend_from_slice(&s[8..SECTOR - 4]);
            sector.extend_from_slice(&d[4..8]);
            writes.push(LogWrite::Data { file_offset, sector });
            data_sectors += 1;
        }
        // An entry is exactly its descriptors and data: every sector of a valid entry but its first is then
        // recognisably not an entry header, so valid entries never overlap and the search stays linear.
        if descriptor_sectors + data_sectors != length / SECTOR {
            return None;
        }
        let mut crc = crc32c::crc32c(&head[..4]);
        crc = crc32c::crc32c_append(crc, &[0; 4]);
        crc = crc32c::crc32c_append(crc, &head[8..]);
        for i in 1..length / SECTOR {
            crc = crc32c::crc32c_append(crc, self.sector(first + i));
        }
        if crc != LE::read_u32(&head[4..]) {
            return None;
        }
        Some(LogEntry {
            sequence_number,
            tail: LE::read_u32(&head[12..]),
            log_guid: guid,
            flushed_file_offset: LE::read_u64(&head[48..]),
            last_file_offset: LE::read_u64(&head[56..]),
            writes,
        })
    }
}

/// A piece of the overlay: its end, and its bytes (`None`: zeros).
#[derive(Debug)]
struct Piece {
    end: u64,
    data: Option<Vec<u8>>,
}

/// The input file with the log's active sequence applied, in memory.
pub struct Replayed {
    file: Box<dyn ReadAt>,
    /// Non-overlapping pieces keyed by their start.
    overlay: BTreeMap<u64, Piece>,
    len: u64,
    /// How many entries were applied.
    entries: usize,
}

impl Replayed {
    /// How many log entries were applied.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Makes `start..end` read as `data` (or zeros), over anything an earlier write put there.
    fn put(&mut self, start: u64, end: u64, data: Option<Vec<u8>>) {
        let overlapping: Vec<u64> =
            self.overlay.range(..end).rev().take_while(|(_, p)| p.end > start).map(|(&k, _)| k).collect();
        for key in overlapping {
            let piece = self.overlay.remove(&key).expect("key just listed");
            // Data pieces are single aligned sectors, so only zero runs stick out of a newer write.
            if key < start {
                self.overlay.insert(key, Piece { end: start, data: None });
            }
            if piece.end > end {
                self.overlay.insert(end, Piece { end: piece.end, data: None });
            }
        }
        self.overlay.insert(start, Piece { end, data });
    }
}

impl ReadAt for Replayed {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = self.len.saturating_sub(offset).min(buf.len() as u64);
        if n == 0 {
            return Ok(0);
        }
        if let Some((&start, piece)) = self.overlay.range(..=offset).next_back()
            && piece.end > offset
        {
            let m = n.min(piece.end - offset) as usize;
            match &piece.data {
                Some(data) => buf[..m].copy_from_slice(&data[(offset - start) as usize..][..m]),
                None => buf[..m].fill(0),
            }
            return Ok(m);
        }
        let next = self.overlay.range(offset..).next().map_or(self.len, |(&start, _)| start);
        let m = n.min(next - offset);
        match self.file.len().checked_sub(offset).filter(|&left| left > 0) {
            Some(left) => self.file.read_at(offset, &mut buf[..m.min(left) as usize]),
            // The log grew the file (LastFileOffset); what it did not write reads as zeros.
            None => {
                buf[..m as usize].fill(0);
                Ok(m as usize)
            }
        }
    }
}

/// Finds the active sequence of the log `header` names and applies it in memory. With no valid entry of that
/// GUID (a crash before anything was logged) there is nothing to replay and the file reads as it is.
///
/// # Errors
/// `LimitExceeded` for a log longer than [`MAX_LOG_LENGTH`]; `Corrupt` naming the log for a log outside the
/// file, a broken sequence, or an entry writing where no log may write or needing a longer file.
pub fn replay(file: Box<dyn ReadAt>, header: &Header) -> Result<Replayed> {
    let (log_at, log_len) = (header.log_offset, u64::from(header.log_length));
    let corrupt = |message: String| Error::corrupt(format!("VHDX log at {log_at:#x}: {message}")).at(log_at);
    if log_len > MAX_LOG_LENGTH {
        return Err(
            Error::limit(format!("VHDX log of {log_len} bytes exceeds the {MAX_LOG_LENGTH}-byte limit")).at(log_at)
        );
    }
    let file_len = file.len();
    let mut replayed = Replayed { file, overlay: BTreeMap::new(), len: file_len, entries: 0 };
    // qemu takes a zero-length log as no log at all, whatever the GUID says.
    if log_len == 0 {
        return Ok(replayed);
    }
    if log_at.checked_add(log_len).is_none_or(|end| end > file_len) {
        return Err(corrupt(format!("{log_len} bytes do not lie inside the file")));
    }
    let mut log = zeroed_buffer(log_len, "VHDX log")?;
    replayed.file.read_exact_at(log_at, &mut log)?;
    let ring = Ring(&log);
    let mut entries: BTreeMap<usize, LogEntry> = BTreeMap::new();
    let mut sector = 0;
    while sector < ring.sectors() {
        match ring.entry(sector, header.log_guid) {
            Some(entry) => {
                let next = sector + entry.sectors();
                entries.insert(sector, entry);
                sector = next;
            }
            None => sector += 1,
        }
    }
    let Some((&head_at, head)) = entries.iter().max_by_key(|(_, e)| e.sequence_number) else {
        return Ok(replayed);
    };
    // Walk from the tail to the head; each entry must be followed by the next sequence number.
    let tail = head.tail as usize;
    if tail % SECTOR != 0 || tail >= log.len() {
        return Err(corrupt(format!("the tail {tail:#x} of entry {} is not a log sector", head.sequence_number)));
    }
    let broken = |at: usize| {
        corrupt(format!(
            "the sequence from its tail at {tail:#x} breaks at {:#x} before reaching its head, entry {} at {:#x}",
            at * SECTOR,
            head.sequence_number,
            head_at * SECTOR
        ))
    };
    let mut at = tail / SECTOR;
    let mut sequence = vec![entries.get(&at).ok_or_else(|| broken(at))?];
    while at != head_at {
        let previous = sequence[sequence.len() - 1];
        at = (at + previous.sectors()) % ring.sectors();
        match entries.get(&at) {
            // Numbers only grow along the walk and the head has the largest, so it ends.
            Some(e) if Some(e.sequence_number) == previous.sequence_number.checked_add(1) => sequence.push(e),
            _ => return Err(broken(at)),
        }
    }
    replayed.entries = sequence.len();
    for entry in &sequence {
        let name = |what: String| corrupt(format!("entry {}: {what}", entry.sequence_number));
        if entry.flushed_file_offset > file_len {
            return Err(name(format!(
                "the file was {} bytes long when it was written, but is {file_len} (truncated?)",
                entry.flushed_file_offset
            )));
        }
        let limit = entry.last_file_offset.max(file_len);
        for write in &entry.writes {
            let (start, length) = write.range();
            let end = start.checked_add(length).filter(|&end| end <= limit);
            let Some(end) = end else {
                return Err(name(format!("writes {length} bytes at {start:#x}, past its last file offset {limit:#x}")));
            };
            if start % SECTOR as u64 != 0 || length % SECTOR as u64 != 0 {
                return Err(name(format!("writes {length} bytes at {start:#x}, not whole 4 KiB sectors")));
            }
            if start < header::HEADER_SECTION_SIZE || (start < log_at + log_len && end > log_at) {
                return Err(name(format!("writes at {start:#x}, into the header section or the log itself")));
            }
            if length > 0 {
                let data = match write {
                    LogWrite::Data { sector, .. } => Some(sector.clone()),
                    LogWrite::Zero { .. } => None,
                };
                replayed.put(start, end, data);
            }
        }
        // qemu grows the file to LastFileOffset rounded up to 1 MiB, where every block is aligned.
        let grown = entry.last_file_offset.div_ceil(header::ALIGNMENT).saturating_mul(header::ALIGNMENT);
        replayed.len = replayed.len.max(grown);
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: Guid = Guid::from_u128(7);

    fn sample(sequence_number: u64) -> LogEntry {
        LogEntry {
            sequence_number,
            tail: 0,
            log_guid: GUID,
            flushed_file_offset: 0,
            last_file_offset: 0,
            writes: vec![
                LogWrite::Zero { file_offset: 4 << 20, length: 3 * SECTOR as u64 },
                LogWrite::Data { file_offset: 2 << 20, sector: (0..SECTOR).map(|i| i as u8).collect() },
            ],
        }
    }

    #[test]
    fn entries_round_trip_even_across_the_end_of_the_ring() {
        let entry = sample(0x1_0000_0002);
        let bytes = entry.to_bytes();
        assert_eq!(bytes.len(), 2 * SECTOR, "a descriptor sector and a data sector");
        assert_eq!(&bytes[SECTOR..SECTOR + 4], b"data");
        // Its first sector last in a four-sector ring, its data sector wrapped to the front.
        let mut ring = vec![0u8; 4 * SECTOR];
        ring[3 * SECTOR..].copy_from_slice(&bytes[..SECTOR]);
        ring[..SECTOR].copy_from_slice(&bytes[SECTOR..]);
        assert_eq!(Ring(&ring).entry(3, GUID), Some(entry.clone()));
        assert_eq!(Ring(&ring).entry(3, Guid::from_u128(8)), None, "another log's entry");
        ring[100] ^= 1;
        assert_eq!(Ring(&ring).entry(3, GUID), None, "a torn data sector");
        assert_eq!(entry.sectors(), 2);
    }

    #[test]
    fn overlay_keeps_the_latest_write_of_every_byte() {
        let file: Vec<u8> = vec![9; 40 << 10];
        let mut r = Replayed { file: Box::new(file), overlay: BTreeMap::new(), len: 48 << 10, entries: 0 };
        let s = SECTOR as u64;
        r.put(s, 5 * s, None);
        r.put(2 * s, 3 * s, Some(vec![1; SECTOR]));
        r.put(4 * s, 6 * s, None);
        r.put(5 * s, 6 * s, Some(vec![2; SECTOR]));
        let mut all = vec![0u8; 48 << 10];
        r.read_exact_at(0, &mut all).unwrap();
        let sector = |i: usize| all[i * SECTOR..(i + 1) * SECTOR].to_vec();
        let want: [u8; 12] = [9, 0, 1, 0, 0, 2, 9, 9, 9, 9, 0, 0];
        for (i, &byte) in want.iter().enumerate() {
            assert_eq!(sector(i), vec![byte; SECTOR], "sector {i}");
        }
        assert_eq!(r.overlay.len(), 5, "no piece left overlapping another");
    }
}
