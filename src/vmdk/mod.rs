//! VMDK (VMware "Virtual Disk Format 5.0"; FORMATS.md §2). Output is a streamOptimized sparse extent, the form
//! ESXi imports; input is any hosted disk — sparse, stream-optimized, flat, multi-extent, with parents — and
//! ESXi's flat disks.
//!
//! - [`header`]: the 512-byte SparseExtentHeader.
//! - [`descriptor`]: the descriptor text: written as open-vmdk writes it, parsed from any producer.
//! - [`marker`]: grain and metadata markers.
//! - [`grain`]: the per-grain encoder (zero detection, zlib, framing), run on any thread.
//! - [`writer`]: the file layouts — open-vmdk's on a seekable output, the spec's pipe-safe stream otherwise.
//! - [`reader`]: opening and reading any of the disks above.

pub mod descriptor;
pub mod grain;
pub mod header;
pub mod marker;
pub mod reader;
mod sparse;
pub mod writer;

pub use reader::VmdkImage;
pub use writer::VmdkWriter;

use crate::chain::Opener;
use crate::error::{Error, Result};
use crate::image::{Image, ImageInfo};
use crate::io::ReadAt;
use crate::options::OptionList;
use crate::writer::{ImageWriter, Outputs, Settings};

/// The `-o` keys the VMDK writer takes.
pub const OPTIONS: &[&str] =
    &["subformat", "adapter_type", "compat6", "hwversion", "toolsversion", "compression_level", "zeroed_grain"];

/// Whether a file starts as a VMDK does: a sparse extent (`KDMV`), a descriptor file, or ESXi's vmfsSparse
/// (`COWD`), which qemu probes too, so that its error names it rather than the file passing for raw.
pub fn probe(head: &[u8], _tail: &[u8]) -> bool {
    head.starts_with(b"KDMV") || head.starts_with(b"COWD") || head.starts_with(b"# Disk DescriptorFile")
}

/// Opens a VMDK disk with its extents and parent (the table of formats' entry).
///
/// # Errors
/// As [`VmdkImage::open`].
pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    Ok(Box::new(VmdkImage::open(file, name, opener)?))
}

/// The streamOptimized writer on `outputs` (the table of formats' entry); its extent is named after the output.
///
/// # Errors
/// As [`VmdkOptions::from_options`] and [`VmdkWriter::new`].
pub fn writer(
    options: &mut OptionList,
    settings: &Settings,
    virtual_size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    let opts = VmdkOptions::from_options(options)?;
    let sink = outputs.main()?;
    Ok(Box::new(VmdkWriter::new(sink, virtual_size, &opts, settings.seed, &settings.output_name)?))
}

/// Whether every grain of a VMDK is compressed (a streamOptimized disk's are), for `check`'s counts.
pub fn every_grain_compressed(info: &ImageInfo) -> bool {
    info.specific.as_ref().and_then(|s| s.text("create-type")) == Some("streamOptimized")
}

/// The virtual controller recorded in `ddb.adapterType` (qemu's `adapter_type` values). It also sets the
/// geometry's head count; the controller a VM really gets comes from its OVF or `.vmx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterType {
    /// `ide`.
    Ide,
    /// `buslogic`.
    BusLogic,
    /// `lsilogic`, the default: what vmdk-convert records and what ESXi guests commonly use.
    LsiLogic,
    /// `legacyESX`.
    LegacyEsx,
}

impl AdapterType {
    /// The name in `adapter_type=` and in the descriptor.
    pub fn name(self) -> &'static str {
        match self {
            AdapterType::Ide => "ide",
            AdapterType::BusLogic => "buslogic",
            AdapterType::LsiLogic => "lsilogic",
            AdapterType::LegacyEsx => "legacyESX",
        }
    }

    /// `ddb.geometry.heads`: 16 for IDE (ATA CHS addressing), 255 otherwise, as qemu and VMware record.
    pub fn heads(self) -> u64 {
        if self == AdapterType::Ide { 16 } else { 255 }
    }

    fn from_name(name: &str) -> Result<Self> {
        [AdapterType::Ide, AdapterType::BusLogic, AdapterType::LsiLogic, AdapterType::LegacyEsx]
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                Error::argument(format!(
                    "Unknown adapter type '{name}' (expected ide, buslogic, lsilogic or legacyESX)"
                ))
            })
    }
}

/// `-o` options for VMDK output. Defaults give what ESXi imports (streamOptimized, lsilogic) — deliberately
/// not qemu-img's defaults (monolithicSparse, ide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmdkOptions {
    /// `adapter_type=`; default lsilogic.
    pub adapter: AdapterType,
    /// `ddb.virtualHWVersion`: `hwversion=N`, or 6 with `compat6`, else 4 (qemu's and open-vmdk's value).
    /// Only ESX 3.x and older read it; newer hosts take the hardware version from the VM.
    pub hw_version: u64,
    /// `ddb.toolsVersion` (`toolsversion=N`); default 2147483647, as qemu and open-vmdk write.
    pub tools_version: u64,
    /// zlib level 1..=9 (`compression_level=`); default 6, qemu's.
    pub compression_level: u32,
}

impl VmdkOptions {
    /// Takes the VMDK keys out of `options`, leaving unknown ones for the caller to reject.
    ///
    /// # Errors
    /// `Unsupported` for qemu subformats other than streamOptimized and for backing files;
    /// `InvalidArgument` for bad values, and for `hwversion` together with `compat6` (as qemu-img).
    pub fn from_options(options: &mut OptionList) -> Result<Self> {
        match options.take("subformat").as_deref() {
            None | Some("streamOptimized") => {}
            Some(other @ ("monolithicSparse" | "monolithicFlat" | "twoGbMaxExtentSparse" | "twoGbMaxExtentFlat")) => {
                return Err(Error::unsupported(format!(
                    "VMDK subformat {other} is not supported; diskbridge writes streamOptimized only"
                )));
            }
            Some(other) => return Err(Error::argument(format!("Unknown VMDK subformat '{other}'"))),
        }
        if options.take("backing_file").is_some() || options.take("backing_fmt").is_some() {
            return Err(Error::unsupported("VMDK output with a backing file is not supported"));
        }
        // qemu's zeroed_grain lets later writes record zeros cheaply. A streamOptimized disk is never written
        // in place, and its zero grains are already left unallocated, so the flag changes nothing here.
        options.take_bool("zeroed_grain")?;
        let adapter = match options.take("adapter_type") {
            Some(name) => AdapterType::from_name(&name)?,
            None => AdapterType::LsiLogic,
        };
        let compat6 = options.take_bool("compat6")?.unwrap_or(false);
        // Numbers only (qemu takes any string), as the value is quoted into the descriptor; "undefined" is
        // qemu's spelling of unset (`qemu-img create` prints `hwversion=undefined`).
        let hw_version = match options.take("hwversion").as_deref() {
            None | Some("undefined") => None,
            Some(v) => Some(
                v.parse::<u64>().map_err(|_| Error::argument(format!("Invalid value '{v}' for option 'hwversion'")))?,
            ),
        };
        let hw_version = match (hw_version, compat6) {
            (Some(_), true) => return Err(Error::argument("compat6 cannot be enabled with hwversion set")),
            (Some(n), false) => n,
            (None, true) => 6,
            (None, false) => 4,
        };
        let tools_version = options.take_u64("toolsversion")?.unwrap_or(2_147_483_647);
        let compression_level = match options.take_u64("compression_level")? {
            None => 6,
            Some(n @ 1..=9) => n as u32,
            Some(n) => return Err(Error::argument(format!("compression_level must be 1 to 9, not {n}"))),
        };
        Ok(VmdkOptions { adapter, hw_version, tools_version, compression_level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(list: &str) -> Result<VmdkOptions> {
        let mut o = OptionList::parse(list).unwrap();
        let r = VmdkOptions::from_options(&mut o);
        if r.is_ok() {
            o.finish("vmdk").expect("every VMDK key taken");
        }
        r
    }

    fn kind(list: &str) -> ErrorKind {
        parse(list).unwrap_err().kind()
    }

    #[test]
    fn defaults_are_esxi_ready() {
        let o = parse("").unwrap();
        assert_eq!(
            o,
            VmdkOptions {
                adapter: AdapterType::LsiLogic,
                hw_version: 4,
                tools_version: 2147483647,
                compression_level: 6
            }
        );
    }

    #[test]
    fn the_seed_line_parses() {
        let o = parse("adapter_type=lsilogic,subformat=streamOptimized,compat6").unwrap();
        assert_eq!((o.adapter, o.hw_version), (AdapterType::LsiLogic, 6));
    }

    #[test]
    fn every_qemu_adapter_and_number_option() {
        for a in ["ide", "buslogic", "lsilogic", "legacyESX"] {
            assert_eq!(parse(&format!("adapter_type={a}")).unwrap().adapter.name(), a);
        }
        let o = parse("hwversion=13,toolsversion=10346,compression_level=9,compat6=off,zeroed_grain=on").unwrap();
        assert_eq!((o.hw_version, o.tools_version, o.compression_level), (13, 10346, 9));
    }

    #[test]
    fn bad_combinations_and_values_are_refused() {
        assert_eq!(kind("compat6,hwversion=4"), ErrorKind::InvalidArgument);
        assert_eq!(parse("compat6,hwversion=undefined").unwrap().hw_version, 6);
        assert_eq!(kind("subformat=monolithicSparse"), ErrorKind::Unsupported);
        assert_eq!(kind("subformat=streamoptimized"), ErrorKind::InvalidArgument);
        assert_eq!(kind("backing_file=base.vmdk"), ErrorKind::Unsupported);
        assert_eq!(kind("adapter_type=pvscsi"), ErrorKind::InvalidArgument);
        assert_eq!(kind("compression_level=0"), ErrorKind::InvalidArgument);
        assert_eq!(kind("compression_level=10"), ErrorKind::InvalidArgument);
        assert_eq!(kind("hwversion=x"), ErrorKind::InvalidArgument);
        assert_eq!(kind("compat6=maybe"), ErrorKind::InvalidArgument);
    }
}
