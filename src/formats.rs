//! The table of formats: one entry per format saying what it is called, how it is recognised, opened, written
//! and checked, and which `-o` keys it takes. The CLI, the page, `info` and `check` ask this table and nothing
//! else, so a new format is its folder plus one entry here.

use crate::chain::Opener;
use crate::error::{Error, Result};
use crate::image::{Image, ImageInfo};
use crate::io::ReadAt;
use crate::options::OptionList;
use crate::report::Report;
use crate::writer::{ImageWriter, Outputs, Settings, WriterFactory};
use std::fmt;

/// Opens a file (named for errors) as an image of the format, asking the opener for any other file it names.
pub type OpenFn = fn(Box<dyn ReadAt>, &str, &mut dyn Opener) -> Result<Box<dyn Image>>;

/// Whether a file's first bytes (at least 8; up to 512) and last 512 bytes (`tail`, empty for shorter files) are
/// this format's.
pub type ProbeFn = fn(&[u8], &[u8]) -> bool;

/// Cross-checks a file's own tables, telling `problem` each finding.
pub type TableCheck = fn(&dyn ReadAt, &mut dyn FnMut(&str)) -> Result<Report>;

/// How `check` examines an image of the format.
#[derive(Clone, Copy)]
pub enum Check {
    /// Nothing to cross-check (raw): `check` says so rather than "clean".
    None,
    /// Cross-checks the file's own tables, as qemu-img check does (qcow2's refcounts); `problem` hears each finding.
    Tables(TableCheck),
    /// Walks the whole map and reads every allocated byte through the validating reader. The function, when
    /// given, says whether every allocated cluster of this image is compressed (a streamOptimized VMDK's are).
    Walk(Option<fn(&ImageInfo) -> bool>),
}

/// One format's entry.
pub struct FormatSpec {
    /// qemu-img's name, the canonical one.
    pub name: &'static str,
    /// Other names accepted wherever a format is named (`-f`, `-O`, the page).
    pub aliases: &'static [&'static str],
    /// File name extensions that suggest the format, lower case, without the dot.
    pub extensions: &'static [&'static str],
    /// How to recognise it; `None` for the fallback (raw) and for formats only written.
    pub probe: Option<ProbeFn>,
    /// How to read it; `None` when it cannot be opened as a disk.
    pub open: Option<OpenFn>,
    /// Why it cannot be opened, when `open` is `None`.
    pub not_a_disk: &'static str,
    /// How many disks a file of the format holds, for containers that hold several (an OVA).
    pub disks: Option<fn(&dyn ReadAt) -> Result<usize>>,
    /// How to write it; `None` when it is only read.
    pub write: Option<WriterFactory>,
    /// The `-o` keys its writer takes.
    pub options: &'static [&'static str],
    /// For a package, the format of the disk inside, whose `-o` keys it takes as well.
    pub disk_format: Option<&'static str>,
    /// Whether `-c` applies (compressed clusters or grains).
    pub compress: bool,
    /// How `check` examines it.
    pub check: Check,
}

/// Every format, in the order probing tries them; raw, recognised by nothing, comes last among the readable ones.
static FORMATS: [FormatSpec; 7] = [
    FormatSpec {
        name: "qcow2",
        aliases: &[],
        extensions: &["qcow2", "qcow"],
        probe: Some(crate::qcow2::probe),
        open: Some(crate::qcow2::open),
        not_a_disk: "",
        disks: None,
        write: Some(crate::qcow2::writer),
        options: crate::qcow2::OPTIONS,
        disk_format: None,
        compress: true,
        check: Check::Tables(crate::qcow2::check),
    },
    FormatSpec {
        name: "vmdk",
        aliases: &[],
        extensions: &["vmdk"],
        probe: Some(crate::vmdk::probe),
        open: Some(crate::vmdk::open),
        not_a_disk: "",
        disks: None,
        write: Some(crate::vmdk::writer),
        options: crate::vmdk::OPTIONS,
        disk_format: None,
        compress: true,
        check: Check::Walk(Some(crate::vmdk::every_grain_compressed)),
    },
    FormatSpec {
        name: "vhdx",
        aliases: &[],
        extensions: &["vhdx"],
        probe: Some(crate::vhdx::probe),
        open: Some(crate::vhdx::open),
        not_a_disk: "",
        disks: None,
        write: Some(crate::vhdx::writer),
        options: crate::vhdx::OPTIONS,
        disk_format: None,
        compress: false,
        check: Check::Walk(None),
    },
    FormatSpec {
        name: "ova",
        aliases: &[],
        extensions: &["ova"],
        probe: Some(crate::ova::probe),
        open: Some(crate::ova::open),
        not_a_disk: "",
        disks: Some(crate::ova::disk_count),
        write: Some(write_package::<false>),
        options: crate::ova::OPTIONS,
        disk_format: Some("vmdk"),
        compress: true,
        check: Check::None,
    },
    FormatSpec {
        name: "vpc",
        aliases: &["vhd"],
        extensions: &["vhd", "vpc"],
        probe: Some(crate::vpc::probe),
        open: Some(crate::vpc::open),
        not_a_disk: "",
        disks: None,
        write: Some(crate::vpc::writer),
        options: crate::vpc::OPTIONS,
        disk_format: None,
        compress: false,
        check: Check::Walk(None),
    },
    FormatSpec {
        name: "raw",
        aliases: &[],
        extensions: &["raw", "img"],
        probe: None,
        open: Some(crate::raw::open),
        not_a_disk: "",
        disks: None,
        write: Some(crate::raw::writer),
        options: &[],
        disk_format: None,
        compress: false,
        check: Check::None,
    },
    FormatSpec {
        name: "ovf",
        aliases: &[],
        extensions: &["ovf"],
        probe: None,
        open: None,
        not_a_disk: "An OVF descriptor is not a disk: convert the disk it names",
        disks: None,
        write: Some(write_package::<true>),
        options: crate::ova::OPTIONS,
        disk_format: Some("vmdk"),
        compress: true,
        check: Check::None,
    },
];

/// An OVF package around a VMDK: one tar file (OVA), or the descriptor, the VMDK and the manifest side by side
/// (`OVF`).
fn write_package<const OVF: bool>(
    options: &mut OptionList,
    settings: &Settings,
    size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    let kind = if OVF { crate::ova::Kind::Ovf } else { crate::ova::Kind::Ova };
    let package = crate::ova::PackageWriter::new(kind, options, settings, size, outputs, crate::vmdk::writer)?;
    Ok(Box::new(package))
}

/// A format: a handle on its entry in the table.
#[derive(Clone, Copy)]
pub struct Format(&'static FormatSpec);

impl Format {
    /// The format of raw disks, what qemu-img writes without `-O`.
    pub fn raw() -> Format {
        Format::from_name("raw").expect("raw is in the table")
    }

    /// The format named `name` (qemu-img's name or an alias).
    ///
    /// # Errors
    /// `InvalidArgument` for a name no format has.
    pub fn from_name(name: &str) -> Result<Format> {
        FORMATS
            .iter()
            .find(|f| f.name == name || f.aliases.contains(&name))
            .map(Format)
            .ok_or_else(|| Error::argument(format!("Unknown format '{name}'")))
    }

    /// The format an image reports itself as.
    pub fn of(info: &ImageInfo) -> Format {
        Format::from_name(info.format).unwrap_or_else(|_| Format::raw())
    }

    /// The format a file name's extension suggests, if any.
    pub fn from_extension(extension: &str) -> Option<Format> {
        let extension = extension.to_ascii_lowercase();
        FORMATS.iter().find(|f| f.extensions.contains(&extension.as_str())).map(Format)
    }

    /// Recognises a format from a file's first bytes and its last 512 (`tail`, empty for shorter files), which are
    /// all a fixed VHD has to show; raw when nothing matches.
    pub fn probe(head: &[u8], tail: &[u8]) -> Format {
        FORMATS.iter().find(|f| f.probe.is_some_and(|p| p(head, tail))).map(Format).unwrap_or_else(Format::raw)
    }

    /// Every format that can be read, in probing order.
    pub fn readable() -> impl Iterator<Item = Format> {
        FORMATS.iter().filter(|f| f.open.is_some()).map(Format)
    }

    /// Every format that can be written.
    pub fn writable() -> impl Iterator<Item = Format> {
        FORMATS.iter().filter(|f| f.write.is_some()).map(Format)
    }

    /// qemu-img's name for the format.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// Its entry in the table.
    pub fn spec(self) -> &'static FormatSpec {
        self.0
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Format {}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_extensions_lead_to_one_entry() {
        assert_eq!(Format::from_name("vhd").unwrap(), Format::from_name("vpc").unwrap());
        assert_eq!(Format::from_extension("VHDX").map(Format::name), Some("vhdx"));
        assert_eq!(Format::from_name("qed").unwrap_err().message(), "Unknown format 'qed'");
        assert_eq!(Format::probe(b"QFI\xfb\0\0\0\x03", &[]).name(), "qcow2");
        assert_eq!(Format::probe(b"anything", &[]), Format::raw());
        for spec in &FORMATS {
            assert!(spec.open.is_some() == spec.not_a_disk.is_empty(), "{}: open or a reason", spec.name);
        }
    }

    #[test]
    fn every_listed_option_is_one_the_writer_takes() {
        for format in Format::writable() {
            let spec = format.spec();
            let write = spec.write.unwrap();
            for key in spec.options {
                let mut options = OptionList::parse(&format!("{key}=0")).unwrap();
                let settings =
                    Settings { seed: 1, epoch: 0, output_name: "x".into(), compressed: false, seed_disk: None };
                // A bad value may be refused; an unknown key would be left over.
                if write(&mut options, &settings, 1 << 20, &mut crate::writer::NoOutputs).is_ok() {
                    assert!(options.is_empty(), "{format}: '{key}' is listed but not taken");
                }
            }
        }
    }
}
