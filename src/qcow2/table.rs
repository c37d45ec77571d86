//! The two-level cluster map, read lazily: the L1 table a 64 KiB chunk at a time and one L2 table at a time, so
//! memory stays a few tables whatever the virtual size. Every offset is checked against the file before use.

use super::entry::{self, Layout, Piece};
use crate::error::{Error, Result};
use crate::io::{ReadAt, zeroed_buffer};
use byteorder::{BigEndian, ByteOrder};

/// L1 entries read at once: 64 KiB, which for 64 KiB clusters maps 4 TiB.
const L1_CHUNK: u64 = 8192;

/// Guest offset → what is stored there.
pub struct ClusterMap {
    layout: Layout,
    file_len: u64,
    l1_offset: u64,
    l1_entries: u64,
    /// Index of the first entry in `l1`, when a chunk is loaded.
    l1_start: Option<u64>,
    /// L2 table offsets (0 = unallocated) of the loaded chunk.
    l1: Vec<u64>,
    /// File offset of the table in `l2`, when one is loaded.
    l2_offset: Option<u64>,
    l2: Vec<u8>,
}

impl ClusterMap {
    /// A map over the `l1_entries` entries of the L1 table at `l1_offset`, in a file of `file_len` bytes.
    pub fn new(layout: Layout, l1_offset: u64, l1_entries: u64, file_len: u64) -> Self {
        ClusterMap {
            layout,
            file_len,
            l1_offset,
            l1_entries,
            l1_start: None,
            l1: Vec::new(),
            l2_offset: None,
            l2: Vec::new(),
        }
    }

    /// The guest offset where the range mapped by the L2 table covering `offset` ends.
    pub fn table_end(&self, offset: u64) -> u64 {
        let bits = self.layout.l2_span_bits();
        ((offset >> bits) + 1) << bits
    }

    /// What guest byte `offset` holds, and for how many bytes from there the same holds (host offsets
    /// continuing for data): to the end of its cluster or subcluster run, or across a run of unallocated L1
    /// entries.
    ///
    /// # Errors
    /// `Corrupt` for entries that point outside the file or decode to invalid combinations, at the entry's
    /// offset; read errors.
    pub fn piece_at(&mut self, file: &dyn ReadAt, offset: u64) -> Result<(Piece, u64)> {
        let span_bits = self.layout.l2_span_bits();
        let l1_index = offset >> span_bits;
        if l1_index >= self.l1_entries {
            // Only reachable for offsets past the virtual size, which callers never ask for.
            return Err(Error::argument(format!("Guest offset {offset:#x} is beyond the L1 table")));
        }
        self.load_l1(file, l1_index)?;
        let start = self.l1_start.unwrap_or_default();
        let l2_offset = self.l1[(l1_index - start) as usize];
        if l2_offset == 0 {
            let free = self.l1[(l1_index - start) as usize..].iter().take_while(|&&e| e == 0).count() as u64;
            return Ok((Piece::Unallocated, ((l1_index + free) << span_bits) - offset));
        }
        self.load_l2(file, l2_offset)?;

        let cluster_bits = self.layout.cluster_bits;
        let index = (offset >> cluster_bits) & ((1 << self.layout.l2_bits()) - 1);
        let pos = (index * self.layout.l2_entry_size()) as usize;
        let entry_offset = l2_offset + pos as u64;
        let word = BigEndian::read_u64(&self.l2[pos..]);
        let bitmap = if self.layout.extended_l2 { BigEndian::read_u64(&self.l2[pos + 8..]) } else { 0 };
        let mapping = entry::decode_l2(word, bitmap, &self.layout).map_err(|m| Error::corrupt(m).at(entry_offset))?;
        let (piece, len) = mapping.piece(offset & (self.layout.cluster_size() - 1), &self.layout);
        self.check_piece(&piece).map_err(|e| e.at(entry_offset))?;
        Ok((piece, len))
    }

    fn check_piece(&self, piece: &Piece) -> Result<()> {
        match *piece {
            Piece::Data(host) if host >= self.file_len => {
                Err(Error::corrupt(format!("Data cluster at {host:#x} is beyond the end of the file")))
            }
            // The last sector of a compressed run may be cut short by the end of the file; qemu reads the
            // missing bytes as zeros.
            Piece::Compressed(run) if run.offset >= self.file_len || run.end() >= self.file_len + 512 => {
                Err(Error::corrupt(format!("Compressed cluster at {:#x} is beyond the end of the file", run.offset)))
            }
            _ => Ok(()),
        }
    }

    fn load_l1(&mut self, file: &dyn ReadAt, index: u64) -> Result<()> {
        let start = index / L1_CHUNK * L1_CHUNK;
        if self.l1_start == Some(start) {
            return Ok(());
        }
        self.l1_start = None;
        let count = L1_CHUNK.min(self.l1_entries - start);
        let table = self.l1_offset + start * 8;
        let mut raw = zeroed_buffer(count * 8, "L1 table")?;
        file.read_exact_at(table, &mut raw)?;
        self.l1.clear();
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let at = table + i as u64 * 8;
            let l2 =
                entry::l2_table_offset(BigEndian::read_u64(e), &self.layout).map_err(|m| Error::corrupt(m).at(at))?;
            if l2 != 0 && l2.saturating_add(self.layout.cluster_size()) > self.file_len {
                return Err(Error::corrupt(format!("L2 table at {l2:#x} is beyond the end of the file")).at(at));
            }
            self.l1.push(l2);
        }
        // Two L1 entries never share an L2 table in an image qemu wrote. A crafted one that points every entry
        // at the same table would make the map walk re-scan it millions of times; refuse that here, where the
        // chunk bounds the check.
        let mut used: Vec<(u64, usize)> = self.l1.iter().copied().zip(0..).filter(|&(l2, _)| l2 != 0).collect();
        used.sort_unstable();
        if let Some(pair) = used.windows(2).find(|w| w[0].0 == w[1].0) {
            let at = table + pair[0].1.max(pair[1].1) as u64 * 8;
            return Err(Error::corrupt(format!("L2 table at {:#x} is used by two L1 entries", pair[0].0)).at(at));
        }
        self.l1_start = Some(start);
        Ok(())
    }

    fn load_l2(&mut self, file: &dyn ReadAt, offset: u64) -> Result<()> {
        if self.l2_offset == Some(offset) {
            return Ok(());
        }
        self.l2_offset = None;
        if self.l2.is_empty() {
            self.l2 = zeroed_buffer(self.layout.cluster_size(), "L2 table")?;
        }
        file.read_exact_at(offset, &mut self.l2)?;
        self.l2_offset = Some(offset);
        Ok(())
    }
}
