//! OVF packages around a streamOptimized VMDK: one OVA (a tar: `.ovf`, then the disk, then the `.mf`) or an
//! `.ovf` + disk + `.mf` written side by side.
//!
//! The disk's size and digest are known only once it is finished, and its grain tables are written last, so
//! the package is completed at the end: the OVA's descriptor slot is reserved at the front at its largest
//! possible length (the final XML is padded with trailing spaces, which XML allows after the root element),
//! the disk member's tar header is back-patched, and the disk is read back to be hashed.

use crate::convert::{ImageWriter, UnitEncoder};
use crate::error::{Error, Result};
use crate::image::{Format, Image};
use crate::io::Sink;
use crate::ovf::{self, DiskFile, Firmware, Hasher, OvfOptions};
use crate::tar;
use crate::target::{self, Target};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// The member names of a package whose base name is `stem`.
#[derive(Debug, Clone)]
pub struct Names {
    /// The descriptor, `stem.ovf`.
    pub descriptor: String,
    /// The disk, `stem-disk1.vmdk`.
    pub disk: String,
    /// The manifest, `stem.mf`.
    pub manifest: String,
}

impl Names {
    /// Names derived from an output file name (`vm.ova` or `vm.ovf` → `vm`).
    pub fn for_output(output_name: &str) -> Names {
        let stem = output_name
            .strip_suffix(".ova")
            .or_else(|| output_name.strip_suffix(".ovf"))
            .filter(|s| !s.is_empty())
            .unwrap_or(output_name);
        Names { descriptor: format!("{stem}.ovf"), disk: format!("{stem}-disk1.vmdk"), manifest: format!("{stem}.mf") }
    }
}

/// Where the package's parts go.
pub enum Layout {
    /// One tar archive on a seekable sink that can be read back.
    Ova(Box<dyn Sink>),
    /// Three files: the disk, the descriptor, the manifest.
    Ovf {
        /// The VMDK (must be readable back).
        disk: Box<dyn Sink>,
        /// The `.ovf`.
        descriptor: Box<dyn Sink>,
        /// The `.mf`.
        manifest: Box<dyn Sink>,
    },
}

enum Parts {
    Ova { reserved: u64 },
    Ovf { descriptor: Box<dyn Sink>, manifest: Box<dyn Sink> },
}

/// Writes an OVA or OVF package; the guest data goes through a VMDK writer inside it.
pub struct PackageWriter {
    disk: Box<dyn ImageWriter>,
    /// The sink holding the disk (the archive, or the VMDK file), shared with the disk writer's [`Member`].
    disk_file: Rc<RefCell<Box<dyn Sink>>>,
    /// Where the disk starts in `disk_file`, and its length once the disk writer has finished.
    disk_base: u64,
    disk_len: Rc<Cell<u64>>,
    parts: Parts,
    names: Names,
    options: OvfOptions,
    firmware: Firmware,
    capacity: u64,
    populated: u64,
    epoch: u64,
}

/// The disk as the VMDK writer sees it: offsets shifted to where the disk starts, its final length remembered.
struct Member {
    file: Rc<RefCell<Box<dyn Sink>>>,
    base: u64,
    len: Rc<Cell<u64>>,
    /// Whether the disk is the whole file (OVF), so its length is the file's.
    whole_file: bool,
}

impl Sink for Member {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.borrow_mut().write_at(self.base + offset, data)
    }

    fn is_seekable(&self) -> bool {
        self.file.borrow().is_seekable()
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        self.len.set(len);
        if self.whole_file { self.file.borrow_mut().finish(len) } else { Ok(()) }
    }
}

impl PackageWriter {
    /// A package for a disk of `virtual_size` bytes. `target.options` holds the OVF keys and the VMDK keys.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad option or an output that cannot seek and be read back.
    pub fn new(target: &Target, virtual_size: u64, layout: Layout) -> Result<Self> {
        let names = Names::for_output(&target.output_name);
        let mut options = target.options.clone();
        let stem = names.descriptor.trim_end_matches(".ovf").to_string();
        let ovf_options = OvfOptions::from_options(&mut options, &stem)?;
        let disk_target = Target { format: Format::Vmdk, options, output_name: names.disk.clone(), ..target.clone() };
        let (file, disk_base, parts) = match layout {
            Layout::Ova(archive) => {
                let reserved = Self::reserved_descriptor_len(&ovf_options, &names);
                (archive, tar::BLOCK + reserved + tar::BLOCK, Parts::Ova { reserved })
            }
            Layout::Ovf { disk, descriptor, manifest } => (disk, 0, Parts::Ovf { descriptor, manifest }),
        };
        if !file.is_seekable() {
            return Err(Error::argument("An OVF package needs a seekable output (a file, not a pipe)"));
        }
        let disk_file = Rc::new(RefCell::new(file));
        let disk_len = Rc::new(Cell::new(0));
        let member = Member {
            file: Rc::clone(&disk_file),
            base: disk_base,
            len: Rc::clone(&disk_len),
            whole_file: matches!(parts, Parts::Ovf { .. }),
        };
        Ok(PackageWriter {
            disk: target::writer(&disk_target, virtual_size, Box::new(member))?,
            disk_file,
            disk_base,
            disk_len,
            parts,
            names,
            firmware: ovf_options.firmware,
            options: ovf_options,
            capacity: virtual_size.div_ceil(512) * 512,
            populated: 0,
            epoch: target.epoch,
        })
    }

    /// The descriptor's length with every number at its widest, rounded up to tar blocks.
    fn reserved_descriptor_len(options: &OvfOptions, names: &Names) -> u64 {
        let widest = DiskFile { href: names.disk.clone(), size: u64::MAX, capacity: u64::MAX, populated: u64::MAX };
        let len = ovf::descriptor(options, Firmware::Efi, &widest).len() as u64;
        len.next_multiple_of(tar::BLOCK)
    }
}

impl ImageWriter for PackageWriter {
    fn unit_size(&self) -> u64 {
        self.disk.unit_size()
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        self.disk.encoder()
    }

    fn plan(&mut self, source: &mut dyn Image) -> Result<()> {
        if self.firmware == Firmware::Auto {
            // EFI only when the guest cannot boot any other way: hybrid cloud images boot with BIOS too, and
            // BIOS is what older ESXi hardware versions default to.
            let guest = crate::guest::inspect(source)?;
            self.firmware = if guest.uefi_only() { Firmware::Efi } else { Firmware::Bios };
        }
        self.disk.plan(source)
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        if encoded.is_some() {
            let start = index * self.disk.unit_size();
            self.populated += self.disk.unit_size().min(self.capacity.saturating_sub(start));
        }
        self.disk.write_unit(index, encoded)
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn Sink>> {
        let PackageWriter {
            disk,
            disk_file,
            disk_base,
            disk_len,
            parts,
            names,
            options,
            firmware,
            capacity,
            populated,
            epoch,
        } = *self;
        drop(disk.finish()?);
        let disk_size = disk_len.get();
        let mut file =
            Rc::try_unwrap(disk_file).map_err(|_| Error::argument("The package's disk is still in use"))?.into_inner();

        let digest = options.digest();
        let mut disk_hash = Hasher::new(digest);
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < disk_size {
            let n = (disk_size - pos).min(buf.len() as u64) as usize;
            file.read_back(disk_base + pos, &mut buf[..n])?;
            disk_hash.update(&buf[..n]);
            pos += n as u64;
        }

        let facts = DiskFile { href: names.disk.clone(), size: disk_size, capacity, populated };
        let mut xml = ovf::descriptor(&options, firmware, &facts).into_bytes();
        match parts {
            Parts::Ova { reserved } => {
                xml.resize(reserved as usize - 1, b' ');
                xml.push(b'\n');
                let manifest = manifest(digest, &names, &xml, disk_hash);
                file.write_at(0, &tar::header(&names.descriptor, reserved, epoch)?)?;
                file.write_at(tar::BLOCK, &xml)?;
                file.write_at(tar::BLOCK + reserved, &tar::header(&names.disk, disk_size, epoch)?)?;
                let manifest_at = disk_base + disk_size + tar::padding(disk_size);
                let manifest_len = manifest.len() as u64;
                file.write_at(manifest_at, &tar::header(&names.manifest, manifest_len, epoch)?)?;
                file.write_at(manifest_at + tar::BLOCK, manifest.as_bytes())?;
                // Two zero blocks end the archive; the sink's gaps read as zeros and finish() sets the length.
                file.finish(manifest_at + tar::BLOCK + manifest_len + tar::padding(manifest_len) + 2 * tar::BLOCK)?;
            }
            Parts::Ovf { mut descriptor, manifest: mut manifest_sink } => {
                let manifest = manifest(digest, &names, &xml, disk_hash);
                descriptor.write_at(0, &xml)?;
                descriptor.finish(xml.len() as u64)?;
                manifest_sink.write_at(0, manifest.as_bytes())?;
                manifest_sink.finish(manifest.len() as u64)?;
            }
        }
        Ok(file)
    }
}

/// The manifest: the descriptor's digest first, then the disk's, as open-vmdk's ova-compose lists them.
fn manifest(digest: ovf::Digest, names: &Names, descriptor: &[u8], disk_hash: Hasher) -> String {
    let mut ovf_hash = Hasher::new(digest);
    ovf_hash.update(descriptor);
    ovf::manifest_line(digest, &names.descriptor, &ovf_hash.hex())
        + &ovf::manifest_line(digest, &names.disk, &disk_hash.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_follow_the_output_name() {
        let n = Names::for_output("ubuntu.ova");
        assert_eq!(
            (n.descriptor.as_str(), n.disk.as_str(), n.manifest.as_str()),
            ("ubuntu.ovf", "ubuntu-disk1.vmdk", "ubuntu.mf")
        );
        assert_eq!(Names::for_output("vm.ovf").disk, "vm-disk1.vmdk");
        assert_eq!(Names::for_output("plain").descriptor, "plain.ovf");
    }
}
