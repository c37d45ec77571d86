//! The VHD writer, dynamic or fixed:
//!
//! ```text
//! dynamic: | footer copy | header | BAT | bitmap | block | bitmap | block | ... | footer |
//! fixed:   | guest bytes (zero ranges left as holes) ................. | footer |
//! ```
//!
//! Dynamic blocks are 2 MiB (the specification's default, the only size qemu writes) and stored in guest
//! order right after the BAT, as qemu places them; a block whose guest bytes are all zero is not stored. Each
//! stored block's sector bitmap is all ones, as qemu writes it. A block's place
//! follows from its rank among the stored blocks, so the writer keeps one bit per block. On a seekable sink a
//! block is stored when its data arrives and the BAT is written last; on an append-only sink the BAT precedes
//! the data, so the writer asks for the pipeline's scan ([`ImageWriter::wants_scan`]), which finds the blocks
//! holding non-zero bytes on every core.
//!
//! **Size.** The footer records the source's size exactly, in both size fields (libvhdi reads the original
//! size, qemu and Hyper-V the current size), under diskbridge's own creator application. qemu takes the size
//! from the CHS geometry instead for Virtual PC's images and those qemu-img made without `force_size`, and —
//! before qemu 10 — for every creator it did not know, unless the geometry is the CHS maximum. So the
//! geometry is the specification's for the size when that covers it exactly, and otherwise the maximum,
//! 65535 × 16 × 255, as qemu's `force_size` writes it: every qemu since 2.6 and libvhdi then read back the
//! source's size to the byte.
//!
//! **Fixed disks** are rounded up to a whole MiB, which Azure requires of an uploaded VHD;
//! [`ImageWriter::warnings`] says so when it changes the size, and the added bytes read as zeros.

use super::header::{
    BatEntry, DiskType, FOOTER_SIZE, Footer, Geometry, HEADER_SIZE, MAX_VIRTUAL_SIZE, SECTOR, TIMESTAMP_BASE,
    bitmap_size, dynamic_header_bytes,
};
use crate::bitmap::{Bitmap, Ranks};
use crate::error::{Error, ErrorKind, Result};
use crate::io::Sink;
use crate::options::OptionList;
use crate::random::Random;
use crate::sparse::write_nonzero;
use crate::writer::{FindData, Finished, Finishing, ImageWriter, Outputs, Settings, SkipZeros, UnitEncoder};
use std::sync::Arc;

/// The `-o` keys the VHD writer takes.
pub const OPTIONS: &[&str] = &["subformat", "force_size"];

/// The VHD writer on `outputs` (the table of formats' entry); the unique id follows from the seed, the
/// timestamp from the epoch.
///
/// # Errors
/// As [`VpcOptions::from_options`] and [`VpcWriter::new`].
pub fn writer(
    options: &mut OptionList,
    settings: &Settings,
    virtual_size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    let opts = VpcOptions::from_options(options)?;
    Ok(Box::new(VpcWriter::new(outputs.main()?, virtual_size, &opts, settings.seed, settings.epoch)?))
}

/// Guest bytes per dynamic block, and per pipeline unit for both subformats.
const BLOCK_SIZE: u64 = 2 << 20;

/// Fixed disks are a whole number of these, as Azure requires.
const FIXED_ALIGNMENT: u64 = 1 << 20;

/// The creator application diskbridge records. Not another program's: qemu (10 and later) and Hyper-V take
/// the footer's current size for any creator but Virtual PC ("vpc ") and old qemu ("qemu").
const CREATOR_APP: [u8; 4] = *b"dbrg";

/// Where the BAT starts: after the footer copy and the dynamic disk header.
const BAT_OFFSET: u64 = (FOOTER_SIZE + HEADER_SIZE) as u64;

/// `-o` options for VHD output, as qemu-img takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcOptions {
    /// `subformat=fixed`: the guest bytes followed by the footer.
    pub fixed: bool,
    /// `force_size`: record the CHS maximum even when a geometry fits the size exactly (the size is always
    /// kept; qemu-img without it would round the size to a geometry).
    pub force_size: bool,
}

impl VpcOptions {
    /// Takes the VHD keys out of `options`.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown subformat or a `force_size` that is not on or off.
    pub fn from_options(options: &mut OptionList) -> Result<Self> {
        let fixed = match options.take("subformat").as_deref() {
            None | Some("dynamic") => false,
            Some("fixed") => true,
            Some(other) => {
                return Err(Error::argument(format!("Invalid subformat '{other}' for vpc (dynamic or fixed)")));
            }
        };
        Ok(VpcOptions { fixed, force_size: options.take_bool("force_size")?.unwrap_or(false) })
    }
}

/// Writes a dynamic or fixed VHD.
pub struct VpcWriter {
    sink: Box<dyn Sink>,
    footer: Footer,
    /// Dynamic disks: the blocks stored (planned up front on an append-only sink).
    stored: Bitmap,
    stored_count: u64,
    ranks: Ranks,
    /// The footer copy, header and BAT are on the sink (append-only sinks: before any data).
    front_written: bool,
    warnings: Vec<String>,
}

impl VpcWriter {
    /// A writer on `sink` for a disk of `virtual_size` bytes; the unique id follows from `seed`, the timestamp
    /// from `epoch` (seconds since 1970). Nothing is written yet.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty disk or one over 2040 GiB.
    pub fn new(sink: Box<dyn Sink>, virtual_size: u64, opts: &VpcOptions, seed: u64, epoch: u64) -> Result<Self> {
        if virtual_size == 0 {
            // A fixed one would be a lone footer, which readers take for a dynamic disk's leading copy.
            return Err(Error::argument("An empty disk cannot be written as VHD"));
        }
        let mut warnings = Vec::new();
        let mut size = virtual_size.div_ceil(SECTOR) * SECTOR;
        if opts.fixed && size % FIXED_ALIGNMENT != 0 {
            let rounded = size.div_ceil(FIXED_ALIGNMENT) * FIXED_ALIGNMENT;
            warnings.push(format!(
                "The fixed VHD's size is rounded up from {size} to {rounded} bytes, a whole MiB as Azure requires; \
                 the last {} bytes read as zeros",
                rounded - size
            ));
            size = rounded;
        }
        if size > MAX_VIRTUAL_SIZE {
            return Err(Error::argument(format!(
                "A VHD holds at most 2040 GiB ({MAX_VIRTUAL_SIZE} bytes; the limit of qemu and Hyper-V, below \
                 Azure's 32 TiB), not {size} bytes: write VHDX, or raw for Azure disks this large"
            )));
        }
        let geometry = match Geometry::for_sectors(size / SECTOR) {
            g if !opts.force_size && g.sectors() * SECTOR == size => g,
            _ => Geometry::MAX,
        };
        let footer = Footer {
            disk_type: if opts.fixed { DiskType::Fixed } else { DiskType::Dynamic },
            data_offset: if opts.fixed { u64::MAX } else { FOOTER_SIZE as u64 },
            creator_app: CREATOR_APP,
            creator_version: creator_version(),
            timestamp: epoch.saturating_sub(TIMESTAMP_BASE).min(u64::from(u32::MAX)) as u32,
            current_size: size,
            geometry,
            unique_id: Random::new(seed).uuid().into_bytes(),
        };
        Ok(VpcWriter {
            sink,
            stored: Bitmap::new(if opts.fixed { 0 } else { size.div_ceil(BLOCK_SIZE) })?,
            footer,
            stored_count: 0,
            ranks: Ranks::default(),
            front_written: false,
            warnings,
        })
    }

    fn fixed(&self) -> bool {
        self.footer.disk_type == DiskType::Fixed
    }

    fn entries(&self) -> u64 {
        self.footer.current_size.div_ceil(BLOCK_SIZE)
    }

    /// The file offset of the `rank`-th stored block's sector bitmap.
    fn block_offset(&self, rank: u64) -> u64 {
        let first = BAT_OFFSET + (self.entries() * 4).div_ceil(SECTOR) * SECTOR;
        first + rank * (bitmap_size(BLOCK_SIZE) + BLOCK_SIZE)
    }

    /// The rank of `block` among the stored blocks, storing it if the output allows. Blocks come ascending.
    fn rank(&mut self, block: u64) -> Result<u64> {
        if !self.stored.get(block) {
            if self.front_written {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("The source changed while it was read: block {block} held only zeros in the first pass"),
                ));
            }
            self.stored.set(block);
            self.stored_count += 1;
        }
        Ok(self.ranks.below(&self.stored, block))
    }

    /// The footer copy, the dynamic disk header and the BAT, in ascending file order.
    fn write_front(&mut self) -> Result<()> {
        self.sink.write_at(0, &self.footer.to_bytes())?;
        // Both fit u32: at most 2040 GiB in 2 MiB blocks.
        let header = dynamic_header_bytes(BAT_OFFSET, self.entries() as u32, BLOCK_SIZE as u32);
        self.sink.write_at(FOOTER_SIZE as u64, &header)?;
        // The BAT's padding to a whole sector is all ones too, as qemu writes it. At most 4 MiB.
        let mut bat = vec![0xff; (self.block_offset(0) - BAT_OFFSET) as usize];
        let mut rank = 0;
        for block in 0..self.entries() {
            let entry = if self.stored.get(block) {
                rank += 1;
                // Below 2^32: 2040 GiB of blocks and their bitmaps end before 2 TiB.
                BatEntry((self.block_offset(rank - 1) / SECTOR) as u32)
            } else {
                BatEntry::ABSENT
            };
            bat[block as usize * 4..][..4].copy_from_slice(&entry.0.to_be_bytes());
        }
        self.sink.write_at(BAT_OFFSET, &bat)?;
        self.front_written = true;
        Ok(())
    }
}

/// The crate's major and minor version, as the footer's creator version records an application's.
fn creator_version() -> u32 {
    let part = |text: &str| text.parse::<u16>().map_or(0, u32::from);
    part(env!("CARGO_PKG_VERSION_MAJOR")) << 16 | part(env!("CARGO_PKG_VERSION_MINOR"))
}

impl ImageWriter for VpcWriter {
    fn unit_size(&self) -> u64 {
        BLOCK_SIZE
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        Arc::new(SkipZeros)
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn wants_scan(&self) -> bool {
        !self.fixed() && !self.sink.is_seekable()
    }

    fn scan_encoder(&self) -> Option<Arc<dyn UnitEncoder>> {
        Some(Arc::new(FindData))
    }

    fn scan_unit(&mut self, index: u64, scanned: Option<Vec<u8>>) -> Result<()> {
        // Units are blocks, so the units holding non-zero bytes are the blocks to store.
        if scanned.is_some() {
            self.stored.set(index);
            self.stored_count += 1;
        }
        Ok(())
    }

    fn end_scan(&mut self) -> Result<()> {
        self.write_front()
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        let Some(data) = encoded else { return Ok(()) };
        if self.fixed() {
            return write_nonzero(self.sink.as_mut(), index * BLOCK_SIZE, &data);
        }
        if !self.sink.is_seekable() && !self.front_written {
            return Err(Error::argument("The VHD writer needs its scan before data on an append-only output"));
        }
        let rank = self.rank(index)?;
        let at = self.block_offset(rank);
        // Every sector present: readers that follow the bitmap (libvhdi, Hyper-V) then read the block as stored,
        // its holes as zeros.
        let bitmap = vec![0xff; bitmap_size(BLOCK_SIZE) as usize];
        self.sink.write_at(at, &bitmap)?;
        write_nonzero(self.sink.as_mut(), at + bitmap.len() as u64, &data)
    }

    fn finish(mut self: Box<Self>) -> Result<Box<dyn Finishing>> {
        let end = if self.fixed() {
            self.footer.current_size
        } else {
            if !self.front_written {
                if !self.sink.is_seekable() {
                    return Err(Error::argument(
                        "The VHD writer needs its scan before finishing an append-only output",
                    ));
                }
                self.write_front()?;
            }
            self.block_offset(self.stored_count)
        };
        self.sink.write_at(end, &self.footer.to_bytes())?;
        self.sink.finish(end + FOOTER_SIZE as u64)?;
        Ok(Box::new(Finished(self.sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::io::MemorySink;

    fn options(text: &str) -> Result<VpcOptions> {
        let mut list = OptionList::parse(text)?;
        let o = VpcOptions::from_options(&mut list)?;
        list.finish("vpc")?;
        Ok(o)
    }

    #[test]
    fn options_parse_like_qemu_img() {
        assert_eq!(options("").unwrap(), VpcOptions::default());
        assert_eq!(options("subformat=fixed,force_size").unwrap(), VpcOptions { fixed: true, force_size: true });
        assert!(!options("subformat=dynamic,force_size=off").unwrap().fixed);
        for bad in ["subformat=stream", "force_size=maybe", "block_size=2M"] {
            assert_eq!(options(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    /// Converts `data` through the pipeline to a VHD in memory.
    fn write(data: &[u8], opts: &VpcOptions) -> Vec<u8> {
        let source = Box::new(crate::raw::RawImage::new(Box::new(data.to_vec())));
        let memory = MemorySink::default();
        let writer = Box::new(VpcWriter::new(Box::new(memory.clone()), data.len() as u64, opts, 3, 0).unwrap());
        crate::convert::run(source, writer, Default::default()).unwrap();
        memory.take()
    }

    fn read_back(file: Vec<u8>) -> (Box<dyn Image>, Vec<u8>) {
        let mut image = crate::open::open("out.vhd", Box::new(file), None, &crate::chain::NoFiles).unwrap();
        let mut back = vec![0u8; image.virtual_size() as usize];
        image.read_at(0, &mut back).unwrap();
        (image, back)
    }

    #[test]
    fn dynamic_disk_stores_only_blocks_with_data() {
        // Blocks 0 and 2 hold data, block 1 is zero, block 3 is the partial last one.
        let mut data = vec![0u8; (3 * BLOCK_SIZE + 4096) as usize];
        data[5] = 1;
        data[(2 * BLOCK_SIZE + 70_000) as usize] = 2;
        *data.last_mut().unwrap() = 3;
        let file = write(&data, &VpcOptions::default());
        let bat_entries = 4 * 4;
        let first = BAT_OFFSET + 512;
        assert_eq!(file.len() as u64, first + 3 * (512 + BLOCK_SIZE) + 512, "3 blocks and the footer");
        let bat: Vec<u32> = file[BAT_OFFSET as usize..][..bat_entries]
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        let slot = ((512 + BLOCK_SIZE) / 512) as u32;
        let first = (first / 512) as u32;
        assert_eq!(bat, [first, u32::MAX, first + slot, first + 2 * slot]);
        assert!(file[BAT_OFFSET as usize + bat_entries..first as usize * 512].iter().all(|&b| b == 0xff));
        assert_eq!(file[..512], file[file.len() - 512..], "footer copy");
        let (image, back) = read_back(file);
        assert_eq!(image.info().cluster_size, Some(BLOCK_SIZE));
        assert!(back == data);
    }

    #[test]
    fn fixed_disk_rounds_up_to_a_mebibyte_and_says_so() {
        let mut data = vec![0u8; 3 * 512];
        data[700] = 9;
        let opts = VpcOptions { fixed: true, force_size: false };
        let writer = VpcWriter::new(Box::new(MemorySink::default()), data.len() as u64, &opts, 1, 0).unwrap();
        assert!(writer.warnings()[0].contains("from 1536 to 1048576 bytes"), "{:?}", writer.warnings());
        let file = write(&data, &opts);
        assert_eq!(file.len(), (1 << 20) + 512);
        let (image, back) = read_back(file);
        assert_eq!(image.virtual_size(), 1 << 20);
        assert!(back[..1536] == data[..] && back[1536..].iter().all(|&b| b == 0));
        let exact = VpcWriter::new(Box::new(MemorySink::default()), 2 << 20, &opts, 1, 0).unwrap();
        assert!(exact.warnings().is_empty());
    }

    #[test]
    fn geometry_is_exact_or_the_maximum() {
        let footer = |size, force_size| {
            let opts = VpcOptions { fixed: false, force_size };
            VpcWriter::new(Box::new(MemorySink::default()), size, &opts, 1, 0).unwrap().footer
        };
        // 301 × 4 × 17 sectors has a geometry; one sector more has none.
        let exact = 301 * 4 * 17 * 512;
        assert_eq!(footer(exact, false).geometry, Geometry { cylinders: 301, heads: 4, sectors_per_track: 17 });
        assert_eq!(footer(exact, true).geometry, Geometry::MAX);
        assert_eq!(footer(exact + 512, false).geometry, Geometry::MAX);
        assert_eq!(footer(exact + 512, false).current_size, exact + 512);
        // The timestamp counts from 2000; the unique id follows the seed.
        assert_eq!(footer(exact, false).timestamp, 0);
        let opts = VpcOptions::default();
        let at = |epoch| VpcWriter::new(Box::new(MemorySink::default()), exact, &opts, 1, epoch).unwrap().footer;
        assert_eq!(at(TIMESTAMP_BASE + 5).timestamp, 5);
        assert_eq!(at(0).unique_id, footer(exact, false).unique_id);
    }

    #[test]
    fn empty_and_oversized_disks_are_refused() {
        for (size, fixed) in [(0, false), (0, true), (MAX_VIRTUAL_SIZE + 512, false), (MAX_VIRTUAL_SIZE + 1, true)] {
            let opts = VpcOptions { fixed, force_size: false };
            let e = VpcWriter::new(Box::new(MemorySink::default()), size, &opts, 1, 0).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{size}");
        }
        assert!(
            VpcWriter::new(Box::new(MemorySink::default()), MAX_VIRTUAL_SIZE, &VpcOptions::default(), 1, 0).is_ok()
        );
    }
}
