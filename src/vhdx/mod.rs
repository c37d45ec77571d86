//! VHDX (Hyper-V virtual hard disk v2, MS-VHDX): a dynamic (or fixed) writer, and a reader for fixed, dynamic
//! and differencing disks that replays a pending log in memory (see [`reader`] and [`log`]).
//!
//! The writer follows Hyper-V's conventions rather than qemu's: blocks with no data are `NOT_PRESENT` with
//! file offset 0 (qemu's default `ZERO` state is non-standard, so its `block_state_zero` option is accepted
//! and ignored), a block whose guest bytes are all zero is not allocated, region entries are marked required,
//! and the sector-bitmap slots of the BAT stay 0. See [`layout`] for where everything goes.
//!
//! Block size `auto` (the default): 1 MiB up to 128 GiB — Microsoft's advice for Linux guests, and the
//! smallest files for cloud images — where its BAT still fits 1 MiB. Larger disks get the power of two from
//! 2 MiB to 256 MiB that makes this image's file smallest; qemu-img's own choice is among the candidates, so
//! the output is never larger than qemu-img's. Finding it reads the source's data twice (once to count the
//! non-zero blocks of each size); `-o block_size=` skips that pass. An append-only output (stdout) always takes
//! that first pass (the pipeline's scan), because its BAT must precede the data.
//!
//! 4096-byte logical sectors are written on request: libvhdi reads them as diskbridge does, qemu-img refuses
//! to open them.

pub mod bat;
pub mod guid;
pub mod header;
pub mod layout;
pub mod log;
pub mod metadata;
pub mod reader;
mod writer;

pub use reader::Vhdx;
pub use writer::VhdxWriter;

use crate::chain::Opener;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::io::ReadAt;
use crate::options::{OptionList, parse_size};
use crate::writer::{ImageWriter, Outputs, Settings};

/// The `-o` keys the VHDX writer takes.
pub const OPTIONS: &[&str] =
    &["subformat", "block_size", "log_size", "logical_sector_size", "physical_sector_size", "block_state_zero"];

/// Whether a file starts with the VHDX file identifier.
pub fn probe(head: &[u8], _tail: &[u8]) -> bool {
    head.starts_with(b"vhdxfile")
}

/// Opens a VHDX disk and a differencing disk's parent (the table of formats' entry).
///
/// # Errors
/// As [`Vhdx::open`].
pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vhdx::open(file, name, opener)?))
}

/// The VHDX writer on `outputs` (the table of formats' entry).
///
/// # Errors
/// As [`VhdxOptions::from_options`] and [`VhdxWriter::new`].
pub fn writer(
    options: &mut OptionList,
    settings: &Settings,
    virtual_size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    let opts = VhdxOptions::from_options(options)?;
    Ok(Box::new(VhdxWriter::new(outputs.main()?, virtual_size, &opts, settings.seed)?))
}

/// `-o` options for VHDX output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdxOptions {
    /// `subformat=fixed`: every block allocated, in guest order.
    pub fixed: bool,
    /// `block_size=`: `None` is `auto` (1 MiB up to 128 GiB, else the size giving the smallest file).
    pub block_size: Option<u64>,
    /// `log_size=`: a multiple of 1 MiB (default 1 MiB, as qemu).
    pub log_size: u64,
    /// `logical_sector_size=`: 512 (default) or 4096.
    pub logical_sector_size: u32,
    /// `physical_sector_size=`: 512 (default, as qemu writes) or 4096.
    pub physical_sector_size: u32,
}

impl Default for VhdxOptions {
    fn default() -> Self {
        VhdxOptions {
            fixed: false,
            block_size: None,
            log_size: 1 << 20,
            logical_sector_size: 512,
            physical_sector_size: 512,
        }
    }
}

impl VhdxOptions {
    /// Takes the VHDX keys out of `options`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the option whose value is out of range.
    pub fn from_options(options: &mut OptionList) -> Result<Self> {
        let mut o = VhdxOptions::default();
        match options.take("subformat").as_deref() {
            None | Some("dynamic") => {}
            Some("fixed") => o.fixed = true,
            Some(other) => {
                return Err(Error::argument(format!("Invalid subformat '{other}' for vhdx (dynamic or fixed)")));
            }
        }
        if let Some(text) = options.take("block_size") {
            let size = if text == "auto" { 0 } else { parse_size(&text)? };
            // qemu-img spells "automatic" as 0.
            if size != 0 {
                if !size.is_power_of_two() || !metadata::BLOCK_SIZES.contains(&size) {
                    return Err(Error::argument(format!(
                        "Invalid block_size '{text}': a power of two from 1M to 256M, or auto"
                    )));
                }
                o.block_size = Some(size);
            }
        }
        if let Some(size) = options.take_size("log_size")? {
            if size == 0 || size % header::ALIGNMENT != 0 || size > u32::MAX as u64 {
                return Err(Error::argument(format!("Invalid log_size {size}: a multiple of 1M below 4G")));
            }
            o.log_size = size;
        }
        for (key, slot) in
            [("logical_sector_size", &mut o.logical_sector_size), ("physical_sector_size", &mut o.physical_sector_size)]
        {
            if let Some(size) = options.take_size(key)? {
                if size != 512 && size != 4096 {
                    return Err(Error::argument(format!("Invalid {key} {size}: 512 or 4096")));
                }
                *slot = size as u32;
            }
        }
        // qemu's non-standard default; Hyper-V's NOT_PRESENT is always written (see the module docs).
        options.take_bool("block_state_zero")?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VhdxOptions> {
        let mut list = OptionList::parse(text)?;
        let o = VhdxOptions::from_options(&mut list)?;
        list.finish("vhdx")?;
        Ok(o)
    }

    #[test]
    fn options_parse_like_qemu_img() {
        assert_eq!(parse("").unwrap(), VhdxOptions::default());
        let o = parse("subformat=dynamic,block_size=32M,log_size=2M,block_state_zero=off").unwrap();
        assert_eq!((o.fixed, o.block_size, o.log_size), (false, Some(32 << 20), 2 << 20));
        assert_eq!(parse("block_size=0").unwrap().block_size, None);
        assert_eq!(parse("block_size=auto").unwrap().block_size, None);
        assert!(parse("subformat=fixed").unwrap().fixed);
        let o = parse("logical_sector_size=4096,physical_sector_size=4k").unwrap();
        assert_eq!((o.logical_sector_size, o.physical_sector_size), (4096, 4096));
        for bad in [
            "block_size=3M",
            "block_size=512M",
            "block_size=64k",
            "log_size=1000",
            "log_size=0",
            "logical_sector_size=1024",
            "subformat=stream",
            "block_state_zero=maybe",
            "cluster_size=64k",
        ] {
            assert_eq!(parse(bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
