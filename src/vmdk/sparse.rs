//! A hosted sparse extent (`KDMV`; FORMATS.md §2): its header (and footer, for streams), grain directory, grain
//! tables and grains, plain or compressed.
//!
//! ```text
//! sparse extent: header [| footer at EOF − 1024 when gdOffset = GD_AT_END]
//!                GD[gt]  → sector of a grain table (0: the whole table is absent)
//!                GT[g]   → sector of grain g; 0 absent (the parent's, or zeros); 1 zeroed (flag bit 2);
//!                          with compression, the sector of a 12-byte marker (LBA, size) and a zlib stream
//! ```
//!
//! Memory stays bounded whatever the file says: one window of the grain directory, one grain table and one
//! inflated grain are kept, for the extent last used. Every offset is checked against the file before it is read.

use super::descriptor::MAX_TEXT;
use super::header::{GD_AT_END, GTE_ZEROED, Header};
use super::marker::{GRAIN_HEADER_LEN, Kind};
use crate::error::{Error, Result};
use crate::extent::ExtentKind;
use crate::io::{ReadAt, zeroed_buffer};
use byteorder::{ByteOrder, LittleEndian};
use flate2::{Decompress, FlushDecompress, Status};

/// Bytes per sector, the unit of every offset in the extent.
pub(super) const SECTOR: u64 = 512;
/// The largest virtual size accepted, qemu's limit for any image.
pub(super) const MAX_VIRTUAL_SIZE: u64 = i64::MAX as u64 & !(SECTOR - 1);
/// Grain directory entries read at a time: 64 KiB of directory, 512 GiB of guest with 64 KiB grains. Runs of
/// absent grain tables inside one window are reported as one extent.
const GD_WINDOW: u64 = 16384;

/// How the grain table records one grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grain {
    Absent,
    Zeroed,
    /// At this sector of the file (a marker first, when compressed).
    Stored(u64),
}

impl Grain {
    fn kind(self) -> ExtentKind {
        match self {
            Grain::Absent => ExtentKind::Unallocated,
            Grain::Zeroed => ExtentKind::Zero,
            Grain::Stored(_) => ExtentKind::Data,
        }
    }
}

/// One hosted sparse extent: its file and geometry. Its tables and grains are read through the [`Cache`].
pub(super) struct Sparse {
    file: Box<dyn ReadAt>,
    /// The extent file's name, for errors.
    pub(super) name: String,
    file_len: u64,
    /// The header in force: the footer's when the grain directory is at the end.
    pub(super) header: Header,
    /// Guest bytes of the extent.
    pub(super) capacity: u64,
    pub(super) grain_bytes: u64,
    grains: u64,
    gtes: u64,
    gt_count: u64,
    /// Byte offset of the grain directory.
    gd_at: u64,
}

/// What sparse extents keep between calls. Only the extent last used has anything here, so a disk of many
/// extents costs no more memory than a disk of one.
pub(super) struct Cache {
    /// The index of the part the rest belongs to.
    owner: Option<usize>,
    /// The grain directory entries from `gd_window.0` on.
    gd_window: (u64, Vec<u32>),
    /// The grain table last loaded: its index, byte offset in the file and entries.
    gt: Option<(u64, u64, Vec<u32>)>,
    /// The grain last inflated: its index and bytes.
    inflated: Option<(u64, Vec<u8>)>,
    compressed: Vec<u8>,
    inflater: Decompress,
}

impl Cache {
    pub(super) fn new() -> Self {
        Cache {
            owner: None,
            gd_window: (0, Vec::new()),
            gt: None,
            inflated: None,
            compressed: Vec::new(),
            inflater: Decompress::new(true),
        }
    }

    /// Hands the cache to part `part`, dropping another part's tables and grain.
    pub(super) fn claim(&mut self, part: usize) -> &mut Self {
        if self.owner != Some(part) {
            self.owner = Some(part);
            self.gd_window.1.clear();
            self.gt = None;
            self.inflated = None;
        }
        self
    }
}

impl Sparse {
    /// Reads and checks the header (and footer) of a sparse extent; returns it with its embedded descriptor.
    pub(super) fn open(file: Box<dyn ReadAt>, name: String) -> Result<(Sparse, Option<Vec<u8>>)> {
        let file_len = file.len();
        let mut b = [0u8; 512];
        file.read_exact_at(0, &mut b)?;
        let mut header = Header::parse(&b, 0)?;
        // Where the header in force is, so that errors point at its fields.
        let mut header_at = 0;
        if header.gd_offset == GD_AT_END {
            (header_at, header) = read_footer(file.as_ref())?;
        }
        let h = &header;
        let capacity = h.capacity.checked_mul(SECTOR).filter(|&c| c <= MAX_VIRTUAL_SIZE).ok_or_else(|| {
            Error::limit(format!("Capacity of {} sectors is too large", h.capacity)).at(header_at + 12)
        })?;
        let grain_bytes = h.grain_sectors * SECTOR;
        let grains = h.capacity.div_ceil(h.grain_sectors);
        let gtes = u64::from(h.gtes_per_gt);
        let gt_count = grains.div_ceil(gtes);
        // qemu's check too: a file cut short of its metadata is a truncated download.
        if h.overhead.checked_mul(SECTOR).is_none_or(|o| o > file_len) {
            return Err(Error::corrupt(format!(
                "File truncated: its header says the metadata takes {} sectors, the file has {file_len} bytes",
                h.overhead
            ))
            .at(header_at + 64));
        }
        let gd_at = h.gd_offset.wrapping_mul(SECTOR);
        if h.gd_offset == 0 || h.gd_offset >= file_len / SECTOR || file_len - gd_at < gt_count * 4 {
            return Err(Error::corrupt(format!(
                "The grain directory at sector {} does not fit in the file",
                h.gd_offset
            ))
            .at(header_at + 56));
        }
        let text = if h.descriptor_offset == 0 || h.descriptor_sectors == 0 {
            None
        } else {
            if h.descriptor_sectors > MAX_TEXT / SECTOR {
                return Err(Error::limit(format!(
                    "An embedded descriptor of {} sectors exceeds the {MAX_TEXT}-byte limit",
                    h.descriptor_sectors
                ))
                .at(header_at + 36));
            }
            let at = h.descriptor_offset.checked_mul(SECTOR).filter(|&at| at < file_len);
            let len = h.descriptor_sectors * SECTOR;
            let Some(at) = at.filter(|&at| file_len - at >= len) else {
                return Err(
                    Error::corrupt("The embedded descriptor lies beyond the end of the file").at(header_at + 28)
                );
            };
            let mut text = zeroed_buffer(len, "the embedded descriptor")?;
            file.read_exact_at(at, &mut text)?;
            Some(text)
        };
        let sparse = Sparse { file, name, file_len, header, capacity, grain_bytes, grains, gtes, gt_count, gd_at };
        Ok((sparse, text))
    }

    /// Guest bytes of grain `g` inside the extent (less than a grain only for the last).
    fn grain_len(&self, g: u64) -> u64 {
        self.grain_bytes.min(self.capacity - g * self.grain_bytes)
    }

    /// Grain directory entry `t`.
    fn gde(&self, c: &mut Cache, t: u64) -> Result<u32> {
        let (first, entries) = &c.gd_window;
        if t < *first || t >= first + entries.len() as u64 {
            let first = t - t % GD_WINDOW;
            let n = GD_WINDOW.min(self.gt_count - first);
            let mut raw = zeroed_buffer(n * 4, "a grain directory window")?;
            self.file.read_exact_at(self.gd_at + first * 4, &mut raw)?;
            let mut entries = std::mem::take(&mut c.gd_window.1);
            entries.resize(n as usize, 0);
            LittleEndian::read_u32_into(&raw, &mut entries);
            c.gd_window = (first, entries);
        }
        Ok(c.gd_window.1[(t - c.gd_window.0) as usize])
    }

    /// Loads grain table `t` unless it is the one at hand; false when the directory says it is absent. Its
    /// entries are checked one by one as they are used, so that one bad entry spoils its grain, not the table.
    fn load_gt(&self, c: &mut Cache, t: u64) -> Result<bool> {
        if c.gt.as_ref().is_some_and(|(i, ..)| *i == t) {
            return Ok(true);
        }
        let gde = u64::from(self.gde(c, t)?);
        if gde == 0 {
            return Ok(false);
        }
        let gde_at = self.gd_at + t * 4;
        let at = gde * SECTOR;
        if at >= self.file_len || self.file_len - at < self.gtes * 4 {
            return Err(
                Error::corrupt(format!("Grain table {t} at sector {gde} lies beyond the end of the file")).at(gde_at)
            );
        }
        let mut raw = zeroed_buffer(self.gtes * 4, "a grain table")?;
        self.file.read_exact_at(at, &mut raw)?;
        let mut entries = c.gt.take().map(|(.., e)| e).unwrap_or_default();
        entries.resize(self.gtes as usize, 0);
        LittleEndian::read_u32_into(&raw, &mut entries);
        c.gt = Some((t, at, entries));
        Ok(true)
    }

    /// How grain `g` is recorded.
    fn grain(&self, c: &mut Cache, g: u64) -> Result<Grain> {
        let t = g / self.gtes;
        if !self.load_gt(c, t)? {
            return Ok(Grain::Absent);
        }
        let (_, table_at, entries) = c.gt.as_ref().expect("loaded");
        let j = g % self.gtes;
        let entry_at = table_at + j * 4;
        Ok(match entries[j as usize] {
            0 => Grain::Absent,
            GTE_ZEROED if self.header.has_zeroed_grains() => Grain::Zeroed,
            GTE_ZEROED => {
                return Err(Error::corrupt(format!(
                    "Grain {g} is marked zeroed (entry 1) but the header has no zeroed-grain flag"
                ))
                .at(entry_at));
            }
            e => {
                let sector = u64::from(e);
                let need = if self.header.compressed() { 1 } else { self.grain_len(g) };
                if sector >= self.file_len / SECTOR || self.file_len - sector * SECTOR < need {
                    return Err(
                        Error::corrupt(format!("Grain {g} at sector {e} lies beyond the end of the file")).at(entry_at)
                    );
                }
                Grain::Stored(sector)
            }
        })
    }

    /// The run of grains recorded alike from guest byte `offset` of the extent, within one grain table — or,
    /// for absent tables, within one window of the directory: its length and kind.
    pub(super) fn run(&self, c: &mut Cache, offset: u64) -> Result<(u64, ExtentKind)> {
        let g = offset / self.grain_bytes;
        let t = g / self.gtes;
        let table_end = (t + 1) * self.gtes;
        let empty_gde = if self.load_gt(c, t)? {
            let kind = self.grain(c, g)?.kind();
            let mut end = g + 1;
            // A bad entry ends the run: it is reported when the walk asks for its own grain, and only then.
            while end < self.grains.min(table_end) && self.grain(c, end).is_ok_and(|next| next.kind() == kind) {
                end += 1;
            }
            let empty = end == table_end && c.gt.as_ref().is_some_and(|(.., e)| e.iter().all(|&e| e == 0));
            if !empty {
                return Ok(((end * self.grain_bytes).min(self.capacity) - offset, kind));
            }
            self.gde(c, t)?
        } else {
            0
        };
        // Absent tables, and repeats of an empty one (a crafted directory can point every entry at the same
        // table), are one run: a scan of the directory, not of a table per entry.
        let mut next = t + 1;
        let window_end = (t - t % GD_WINDOW + GD_WINDOW).min(self.gt_count);
        while next < window_end && [0, empty_gde].contains(&self.gde(c, next)?) {
            next += 1;
        }
        Ok(((next * self.gtes * self.grain_bytes).min(self.capacity) - offset, ExtentKind::Unallocated))
    }

    /// Fills `buf` from guest byte `offset` of the extent, all inside one grain, when the grain is stored;
    /// says how the grain is recorded either way.
    pub(super) fn read(&self, c: &mut Cache, offset: u64, buf: &mut [u8]) -> Result<Grain> {
        let g = offset / self.grain_bytes;
        let in_grain = offset % self.grain_bytes;
        let grain = self.grain(c, g)?;
        if let Grain::Stored(sector) = grain {
            if self.header.compressed() {
                self.inflate(c, g, sector)?;
                let (_, data) = c.inflated.as_ref().expect("inflated");
                buf.copy_from_slice(&data[in_grain as usize..in_grain as usize + buf.len()]);
            } else {
                self.file.read_exact_at(sector * SECTOR + in_grain, buf)?;
            }
        }
        Ok(grain)
    }

    /// Inflates grain `g`, stored at `sector`, into the one-grain cache.
    fn inflate(&self, c: &mut Cache, g: u64, sector: u64) -> Result<()> {
        if c.inflated.as_ref().is_some_and(|(i, _)| *i == g) {
            return Ok(());
        }
        let at = sector * SECTOR;
        let (data_at, size) = if self.header.has_markers() {
            let mut marker = [0u8; GRAIN_HEADER_LEN];
            self.file.read_exact_at(at, &mut marker)?;
            let lba = LittleEndian::read_u64(&marker[0..8]);
            let size = u64::from(LittleEndian::read_u32(&marker[8..12]));
            if lba != g * self.header.grain_sectors {
                return Err(Error::corrupt(format!(
                    "The grain marker says LBA {lba}, the grain table puts grain {g} (LBA {}) here",
                    g * self.header.grain_sectors
                ))
                .at(at));
            }
            if size == 0 || size > self.max_compressed() {
                return Err(Error::corrupt(format!("Compressed grain {g} claims {size} bytes")).at(at + 8));
            }
            if self.file_len - at - (GRAIN_HEADER_LEN as u64) < size {
                return Err(Error::corrupt(format!("Compressed grain {g} runs past the end of the file")).at(at));
            }
            (at + GRAIN_HEADER_LEN as u64, size)
        } else {
            // No marker gives the length: the stream ends where zlib says it does.
            (at, self.max_compressed().min(self.file_len - at))
        };
        if c.compressed.len() < size as usize {
            c.compressed = zeroed_buffer(size, "a compressed grain")?;
        }
        let input = &mut c.compressed[..size as usize];
        self.file.read_exact_at(data_at, input)?;
        let mut out = match c.inflated.take() {
            Some((_, out)) => out,
            // One byte more than a grain, so that a stream inflating past the grain is caught, not cut.
            None => zeroed_buffer(self.grain_bytes + 1, "an inflated grain")?,
        };
        c.inflater.reset(true);
        let status = c.inflater.decompress(input, &mut out, FlushDecompress::Finish);
        let produced = c.inflater.total_out();
        let bad = |what: String| Error::corrupt(format!("Compressed grain {g} {what}")).at(at);
        match status {
            Ok(Status::StreamEnd) if produced > self.grain_bytes => {
                return Err(bad(format!("inflates past the grain size of {} bytes", self.grain_bytes)));
            }
            Ok(Status::StreamEnd) => {}
            Ok(_) if produced > self.grain_bytes => {
                return Err(bad(format!("inflates past the grain size of {} bytes", self.grain_bytes)));
            }
            Ok(_) => return Err(bad("is cut short".into())),
            Err(e) => return Err(bad(format!("is not valid zlib data ({e})"))),
        }
        if produced < self.grain_len(g) {
            return Err(bad(format!("inflates to {produced} bytes, less than its {}", self.grain_len(g))));
        }
        c.inflated = Some((g, out));
        Ok(())
    }

    /// The most compressed bytes a grain may take: qemu reads up to two grains' worth; a deflate stream of
    /// incompressible data is only a little over one.
    fn max_compressed(&self) -> u64 {
        2 * self.grain_bytes
    }
}

/// The footer of a stream whose header says `GD_AT_END`: footer marker, footer, end-of-stream marker as the
/// last three sectors (qemu's reading; the technote says the footer and EOS are the last two).
/// Returns the footer and where it is.
fn read_footer(file: &dyn ReadAt) -> Result<(u64, Header)> {
    let len = file.len();
    let missing = || {
        Error::corrupt("The grain directory is at the end, but the file does not end with a footer (truncated?)")
            .at(len)
    };
    if len < 4 * SECTOR {
        return Err(missing());
    }
    let at = len - 3 * SECTOR;
    let mut tail = [0u8; 3 * SECTOR as usize];
    file.read_exact_at(at, &mut tail)?;
    let marker_ok =
        LittleEndian::read_u32(&tail[8..12]) == 0 && LittleEndian::read_u32(&tail[12..16]) == Kind::Footer as u32;
    let eos_ok = tail[1024..1040].iter().all(|&b| b == 0);
    if !marker_ok || !eos_ok || &tail[512..516] != b"KDMV" {
        return Err(missing());
    }
    let footer = Header::parse(tail[512..1024].try_into().expect("512 bytes"), at + SECTOR)?;
    if footer.gd_offset == GD_AT_END {
        return Err(Error::corrupt("The footer does not give the grain directory either").at(at + SECTOR + 56));
    }
    Ok((at + SECTOR, footer))
}
