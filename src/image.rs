//! An opened disk image of any input format, seen as its guest map and its guest bytes; format probing, and
//! opening backing files and extents through the caller's [`FileResolver`].

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::io::ReadAt;
use std::fmt;

/// Backing chains deeper than this are refused (qemu has no limit and hangs on a loop).
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Input and output formats, named as qemu-img names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// A plain disk image.
    Raw,
    /// VMware virtual disk.
    Vmdk,
    /// Hyper-V virtual hard disk v2.
    Vhdx,
    /// Virtual PC / Hyper-V virtual hard disk v1 (VHD), as qemu names it.
    Vpc,
    /// An OVF package in one tar file; read in place, one disk at a time.
    Ova,
    /// An OVF descriptor with its disk and manifest beside it (output only).
    Ovf,
}

impl Format {
    /// qemu-img's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Vpc => "vpc",
            Format::Ova => "ova",
            Format::Ovf => "ovf",
        }
    }

    /// Parses qemu-img's name for a format (and `vhd` for `vpc`).
    pub fn from_name(name: &str) -> Result<Format> {
        Ok(match name {
            "qcow2" => Format::Qcow2,
            "raw" => Format::Raw,
            "vmdk" => Format::Vmdk,
            "vhdx" => Format::Vhdx,
            // The name everyone else uses, and the file extension.
            "vpc" | "vhd" => Format::Vpc,
            "ova" => Format::Ova,
            "ovf" => Format::Ovf,
            _ => return Err(Error::argument(format!("Unknown format '{name}'"))),
        })
    }

    /// Recognises a format from the first bytes of a file (at least 8, more is better) and its last 512 bytes
    /// (`tail`, empty for shorter files), which are all a fixed VHD has to show; raw when nothing matches.
    pub fn probe(head: &[u8], tail: &[u8]) -> Format {
        if head.starts_with(b"QFI\xfb") {
            Format::Qcow2
        } else if head.starts_with(b"KDMV") || head.starts_with(b"COWD") || head.starts_with(b"# Disk DescriptorFile") {
            // COWD (ESXi's vmfsSparse) too, as qemu probes it, so that its error names it rather than the file
            // passing for raw.
            Format::Vmdk
        } else if head.starts_with(b"vhdxfile") {
            Format::Vhdx
        } else if head.len() >= 263
            && &head[257..263] == b"ustar\0"
            && head[..100].split(|&b| b == 0).next().is_some_and(|n| n.ends_with(b".ovf"))
        {
            // A POSIX tar whose first member is an OVF descriptor, as DSP0243 orders an OVA.
            Format::Ova
        } else if head.starts_with(b"conectix") || crate::vpc::is_fixed_footer(tail) {
            Format::Vpc
        } else {
            Format::Raw
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Format-specific facts for `info`, with qemu-img's JSON keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatSpecific {
    /// qcow2 header facts.
    Qcow2 {
        /// "0.10" (version 2) or "1.1" (version 3).
        compat: String,
        /// "zlib" or "zstd", as qemu names them.
        compression_type: String,
        /// Compatible feature bit 0.
        lazy_refcounts: bool,
        /// 1 << refcount_order.
        refcount_bits: u32,
        /// Incompatible feature bit 1.
        corrupt: bool,
        /// Incompatible feature bit 4.
        extended_l2: bool,
    },
    /// VMDK descriptor facts.
    Vmdk {
        /// `CID`, the content id.
        cid: u32,
        /// `parentCID`; 0xffffffff without a parent.
        parent_cid: u32,
        /// `createType`, e.g. "monolithicSparse".
        create_type: String,
    },
    /// VHD footer facts (qemu-img shows none for vpc).
    Vpc {
        /// "fixed", "dynamic" or "differencing", as qemu's `subformat` option names the first two.
        subformat: String,
        /// The creator application, trailing spaces and NULs dropped: "win" (Hyper-V), "qemu", "dbrg", ...
        creator: String,
    },
}

/// What `info` reports about one image of a chain (not its backing files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format.
    pub format: Format,
    /// Guest size in bytes.
    pub virtual_size: u64,
    /// Allocation unit, where the format has one.
    pub cluster_size: Option<u64>,
    /// Whether the image was not closed cleanly (qcow2 dirty bit).
    pub dirty: bool,
    /// The backing file name as stored in the image.
    pub backing_filename: Option<String>,
    /// The backing file as resolved by the caller's resolver (a path in the CLI).
    pub full_backing_filename: Option<String>,
    /// The backing format as stored, if any.
    pub backing_format: Option<String>,
    /// Format-specific facts.
    pub specific: Option<FormatSpecific>,
    /// Things a user should know that do not stop reading (a corrupt or dirty flag).
    pub warnings: Vec<String>,
}

impl ImageInfo {
    /// Info with only the format and size filled in.
    pub fn basic(format: Format, virtual_size: u64) -> Self {
        ImageInfo {
            format,
            virtual_size,
            cluster_size: None,
            dirty: false,
            backing_filename: None,
            full_backing_filename: None,
            backing_format: None,
            specific: None,
            warnings: Vec::new(),
        }
    }
}

/// A readable disk image: its guest map (lazily, from metadata) and its guest bytes.
pub trait Image {
    /// Facts about this image (not its backing file).
    fn info(&self) -> &ImageInfo;

    /// Guest size in bytes.
    fn virtual_size(&self) -> u64 {
        self.info().virtual_size
    }

    /// The extent that starts at `offset` (which must be below the virtual size), as far as the metadata at
    /// hand reaches — typically to the end of one L2 table. Never empty. Backing files are consulted, so
    /// `Unallocated` means nothing in the chain holds the range.
    fn extent_at(&mut self, offset: u64) -> Result<Extent>;

    /// Reads guest bytes; `offset + buf.len()` must not exceed the virtual size.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The backing image, if there is one.
    fn backing(&mut self) -> Option<&mut dyn Image> {
        None
    }

    /// Bytes of the image file itself (qemu's `actual-size` is the allocated size; this is the length).
    fn file_length(&self) -> u64;
}

/// Opens the files an image refers to: backing files, extents, parents.
pub trait FileResolver {
    /// Opens `name` as written inside `referrer` (a relative name is relative to the referrer's directory).
    /// Returns the resolved name (a path in the CLI, the picked file's name in the page) and the file.
    fn open(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)>;
}

/// A resolver for single files: any reference to another file is an error.
#[derive(Debug, Default)]
pub struct NoFiles;

impl FileResolver for NoFiles {
    fn open(&self, name: &str, _referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        Err(Error::new(crate::error::ErrorKind::Io, format!("Cannot open '{name}': no other files are available")))
    }
}

/// The opened parent of a differencing disk.
pub struct Parent {
    /// The name as the child gives it (forward slashes).
    pub name: String,
    /// The name the resolver found it by (a path in the CLI).
    pub resolved: String,
    /// The parent image.
    pub image: Box<dyn Image>,
}

/// State carried while opening an image and, recursively, its backing chain.
pub struct OpenContext<'a> {
    resolver: &'a dyn FileResolver,
    /// Resolved names of the images opened so far, outermost first.
    chain: Vec<String>,
    /// Which disk of an OVA to open (0-based).
    ova_disk: usize,
    /// Whether a backing file or parent that cannot be found is left out rather than failing the open.
    missing_allowed: bool,
    /// Why each left-out backing file or parent could not be opened.
    missing: Vec<Error>,
}

impl<'a> OpenContext<'a> {
    /// A context for opening one top-level image.
    pub fn new(resolver: &'a dyn FileResolver) -> Self {
        OpenContext { resolver, chain: Vec::new(), ova_disk: 0, missing_allowed: false, missing: Vec::new() }
    }

    /// Opens disk `index` (0-based) when the image turns out to be an OVA.
    pub fn with_ova_disk(mut self, index: usize) -> Self {
        self.ova_disk = index;
        self
    }

    /// For looking at an image alone (`info`, as qemu-img shows an overlay without its backing file): a backing
    /// file or parent that cannot be found is left out, and [`OpenContext::into_missing`] says why. Reads then see
    /// zeros where the missing file would have supplied data.
    pub fn allowing_missing_backing(mut self) -> Self {
        self.missing_allowed = true;
        self
    }

    /// Why each backing file or parent left out could not be opened.
    pub fn into_missing(self) -> Vec<Error> {
        self.missing
    }

    /// A reader's attempt at opening its backing file or parent: `None` when it could not be found and the
    /// context allows that (the error is kept for [`OpenContext::into_missing`]).
    ///
    /// # Errors
    /// The attempt's error otherwise, and always when the file was found but is broken.
    pub fn unless_missing<T>(&mut self, opened: Result<T>) -> Result<Option<T>> {
        match opened {
            Err(e) if self.missing_allowed && e.kind() == crate::error::ErrorKind::Io => {
                self.missing.push(e);
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Opens a backing file named `name` inside `referrer`, in the format given or probed, and returns the name
    /// the resolver gave the file (for `full-backing-filename`) with the image.
    ///
    /// # Errors
    /// `LimitExceeded` past [`MAX_CHAIN_DEPTH`], `Corrupt` on a loop, and whatever opening the file gives.
    pub fn open_backing_resolved(
        &mut self,
        name: &str,
        referrer: &str,
        format: Option<Format>,
    ) -> Result<(String, Box<dyn Image>)> {
        let (resolved, file) = self.open_part(name, referrer)?;
        let image = self.open_file(&resolved, file, format)?;
        Ok((resolved, image))
    }

    /// Opens a file named inside `referrer` that is part of the same image, such as an extent of a multi-file
    /// VMDK. Unlike a backing file it is not a link of the chain, so it counts neither towards the depth nor
    /// as a loop when two extents name the same file. Returns the resolved name and the file.
    ///
    /// # Errors
    /// Whatever the resolver gives, naming `referrer`.
    pub fn open_part(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        self.resolver.open(name, referrer).map_err(|e| e.in_file(referrer.to_string()))
    }

    /// Opens a differencing disk's parent: `candidates` are tried in order (repeats skipped), and the first one
    /// the resolver finds is checked by `verify` (against what the child recorded about its parent) and opened
    /// as `format`. `kind` names the child's format in the error when none is found; `unnamed` is the error
    /// when the child names no candidate at all.
    pub fn open_parent(
        &mut self,
        candidates: Vec<String>,
        referrer: &str,
        format: Format,
        kind: &str,
        unnamed: &str,
        verify: &mut dyn FnMut(&dyn ReadAt, &str) -> Result<()>,
    ) -> Result<Parent> {
        let mut tried: Vec<String> = Vec::new();
        for candidate in candidates.into_iter().filter(|c| !c.is_empty()) {
            if tried.contains(&candidate) {
                continue;
            }
            match self.resolver.open(&candidate, referrer) {
                Ok((resolved, file)) => {
                    verify(&*file, &resolved)?;
                    let image = self.open_file(&resolved, file, Some(format))?;
                    return Ok(Parent { name: candidate, resolved, image });
                }
                // Not found: the next candidate may point elsewhere.
                Err(e) if e.kind() == crate::error::ErrorKind::Io => tried.push(candidate),
                Err(e) => return Err(e),
            }
        }
        if tried.is_empty() {
            return Err(Error::corrupt(unnamed));
        }
        Err(Error::new(
            crate::error::ErrorKind::Io,
            format!("Cannot open the parent of this differencing {kind}; tried '{}'", tried.join("', '")),
        ))
    }

    /// Opens `file` (named `name`) in the format given, or the probed one.
    pub fn open_file(&mut self, name: &str, file: Box<dyn ReadAt>, format: Option<Format>) -> Result<Box<dyn Image>> {
        if self.chain.iter().any(|n| n == name) {
            return Err(Error::corrupt(format!("Backing chain loops back to '{name}'")));
        }
        if self.chain.len() >= MAX_CHAIN_DEPTH {
            return Err(Error::limit(format!("Backing chain is deeper than {MAX_CHAIN_DEPTH} images")));
        }
        self.chain.push(name.to_string());
        let format = match format {
            Some(f) => f,
            None => probe_file(file.as_ref()).map_err(|e| e.in_file(name.to_string()))?,
        };
        let image: Result<Box<dyn Image>> = match format {
            Format::Qcow2 => crate::qcow2::Qcow2::open(file, name, self).map(|i| Box::new(i) as Box<dyn Image>),
            Format::Raw => Ok(Box::new(crate::raw::RawImage::new(file))),
            Format::Vpc => crate::vpc::Vpc::open(file, name, self).map(|i| Box::new(i) as Box<dyn Image>),
            Format::Ova => crate::ova::open_disk(name, file, self.ova_disk, self),
            Format::Vhdx => crate::vhdx::Vhdx::open(file, name, self).map(|i| Box::new(i) as Box<dyn Image>),
            Format::Vmdk => crate::vmdk::VmdkImage::open(file, name, self).map(|i| Box::new(i) as Box<dyn Image>),
            Format::Ovf => Err(Error::unsupported("An OVF descriptor is not a disk: convert the disk it names")),
        };
        self.chain.pop();
        match image {
            Ok(image) => Ok(Box::new(Named { image, name: name.to_string() })),
            Err(e) => Err(e.in_file(name.to_string())),
        }
    }
}

/// An opened image whose errors found later, while mapping or reading it, name its file as those found while
/// opening it do — for every format in one place. A name set deeper (a backing file, a VMDK extent) stays.
struct Named {
    image: Box<dyn Image>,
    name: String,
}

impl Image for Named {
    fn info(&self) -> &ImageInfo {
        self.image.info()
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        self.image.extent_at(offset).map_err(|e| e.in_file(self.name.clone()))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.image.read_at(offset, buf).map_err(|e| e.in_file(self.name.clone()))
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.image.backing()
    }

    fn file_length(&self) -> u64 {
        self.image.file_length()
    }
}

/// Recognises `file`'s format from its first and last bytes ([`Format::probe`]).
pub fn probe_file(file: &dyn ReadAt) -> Result<Format> {
    let mut head = [0u8; 512];
    let n = file.len().min(head.len() as u64) as usize;
    file.read_exact_at(0, &mut head[..n])?;
    let mut tail = [0u8; 512];
    let tail = match file.len().checked_sub(tail.len() as u64) {
        Some(at) => {
            file.read_exact_at(at, &mut tail)?;
            &tail[..]
        }
        None => &[],
    };
    Ok(Format::probe(&head[..n], tail))
}

/// Opens an image and its backing chain.
///
/// # Errors
/// Any error names the file it concerns (see [`Error::file`]).
pub fn open(
    name: &str,
    file: Box<dyn ReadAt>,
    format: Option<Format>,
    resolver: &dyn FileResolver,
) -> Result<Box<dyn Image>> {
    OpenContext::new(resolver).open_file(name, file, format)
}

/// Like [`open`], choosing disk `ova_disk` (0-based) when the image is an OVA.
pub fn open_disk(
    name: &str,
    file: Box<dyn ReadAt>,
    format: Option<Format>,
    resolver: &dyn FileResolver,
    ova_disk: usize,
) -> Result<Box<dyn Image>> {
    OpenContext::new(resolver).with_ova_disk(ova_disk).open_file(name, file, format)
}

/// For a differencing format: the parent's map at `offset`, cut at `end`; beyond a smaller parent (or without
/// one) the child reads zeros.
///
/// # Errors
/// Whatever the parent's map gives.
pub fn parent_extent(parent: Option<&mut dyn Image>, offset: u64, end: u64) -> Result<Extent> {
    let unallocated = Extent { offset, length: end - offset, kind: ExtentKind::Unallocated };
    match parent {
        Some(parent) if offset < parent.virtual_size() => {
            let e = parent.extent_at(offset)?;
            Ok(Extent { length: e.end().min(end) - offset, ..e })
        }
        _ => Ok(unallocated),
    }
}

/// For a differencing format: reads the parent's bytes at `offset`, zeros where there is no parent or it is
/// smaller.
///
/// # Errors
/// Whatever reading the parent gives.
pub fn read_parent(parent: Option<&mut dyn Image>, offset: u64, buf: &mut [u8]) -> Result<()> {
    let from_parent = match parent {
        Some(parent) => {
            let n = parent.virtual_size().saturating_sub(offset).min(buf.len() as u64) as usize;
            if n > 0 {
                parent.read_at(offset, &mut buf[..n])?;
            }
            n
        }
        None => 0,
    };
    buf[from_parent..].fill(0);
    Ok(())
}

/// For a differencing format: the run of sectors sharing the bitmap bit of the sector holding byte `from`
/// (bytes counted from the bitmap's first sector): whether they are present, and the byte where the run ends
/// (at most `limit`). `present(bitmap, sector)` reads one bit in the format's bit order.
pub fn sector_run(
    bitmap: &[u8],
    present: fn(&[u8], u64) -> bool,
    sector_size: u64,
    from: u64,
    limit: u64,
) -> (bool, u64) {
    let first = present(bitmap, from / sector_size);
    let uniform = if first { 0xff } else { 0 };
    let end = limit.div_ceil(sector_size);
    let mut sector = from / sector_size + 1;
    while sector < end {
        // Whole bytes at a time: runs are asked for once per unit read, and are usually the whole block.
        if sector % 8 == 0 && sector + 8 <= end && bitmap[(sector / 8) as usize] == uniform {
            sector += 8;
        } else if present(bitmap, sector) == first {
            sector += 1;
        } else {
            break;
        }
    }
    (first, (sector * sector_size).min(limit))
}

/// A disk of a given size with nothing in it — the source for `create`.
pub struct Blank {
    info: ImageInfo,
}

impl Blank {
    /// An empty disk of `virtual_size` bytes (reported as raw).
    pub fn new(virtual_size: u64) -> Self {
        Blank { info: ImageInfo::basic(Format::Raw, virtual_size) }
    }
}

impl Image for Blank {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        Ok(Extent { offset, length: self.info.virtual_size - offset, kind: ExtentKind::Unallocated })
    }

    fn read_at(&mut self, _offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }

    fn file_length(&self) -> u64 {
        0
    }
}
