//! OVF packages around a streamOptimized VMDK: one OVA (a tar: `.ovf`, then the disk, then the `.mf`) or an
//! `.ovf` + disk + `.mf` written side by side.
//!
//! The disk's size and digest are known only once it is finished, and its grain tables are written last, so
//! the package is completed at the end: the OVA's descriptor slot is reserved at the front at its largest
//! possible length (the final XML is padded with trailing spaces, which XML allows after the root element),
//! the disk member's tar header is back-patched, and the disk is read back to be hashed — a step at a time, so
//! progress and cancel reach it. The disk's own writer comes from the caller (the table of formats), so this
//! module knows the VMDK format only by what the descriptor says of it.

use super::descriptor::{self, DiskFile, Firmware, Hasher, OvfOptions};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::io::Sink;
use crate::options::OptionList;
use crate::tar;
use crate::writer::{Finishing, ImageWriter, OneOutput, Outputs, Settings, UnitEncoder, WriterFactory};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Bytes of the finished disk hashed per step.
const HASH_STEP: u64 = 8 << 20;

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

/// How the package is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One tar archive, the output itself, on a seekable sink that can be read back.
    Ova,
    /// Three files beside the output's name: the descriptor, the disk, the manifest.
    Ovf,
}

enum Parts {
    Ova { reserved: u64 },
    Ovf { descriptor: Box<dyn Sink>, manifest: Box<dyn Sink> },
}

/// Writes an OVA or OVF package; the guest data goes through the disk's writer inside it.
pub struct PackageWriter {
    disk: Box<dyn ImageWriter>,
    package: Package,
}

/// Everything about the package but its disk's writer.
struct Package {
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

/// The disk as its writer sees it: offsets shifted to where the disk starts, its final length remembered.
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
    /// A package for a disk of `virtual_size` bytes, its files from `outputs`; `options` holds the OVF keys, which
    /// it takes, and the disk's, which `disk` takes.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad option or an output that cannot seek and be read back.
    pub fn new(
        kind: Kind,
        options: &mut OptionList,
        settings: &Settings,
        virtual_size: u64,
        outputs: &mut dyn Outputs,
        disk: WriterFactory,
    ) -> Result<Self> {
        let names = Names::for_output(&settings.output_name);
        let stem = names.descriptor.trim_end_matches(".ovf").to_string();
        let ovf_options = OvfOptions::from_options(options, &stem)?;
        let (file, disk_base, parts) = match kind {
            Kind::Ova => {
                let reserved = Self::reserved_descriptor_len(&ovf_options, &names);
                (outputs.main()?, tar::BLOCK + reserved + tar::BLOCK, Parts::Ova { reserved })
            }
            Kind::Ovf => {
                let descriptor = outputs.beside(&names.descriptor)?;
                let disk = outputs.beside(&names.disk)?;
                (disk, 0, Parts::Ovf { descriptor, manifest: outputs.beside(&names.manifest)? })
            }
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
            whole_file: kind == Kind::Ovf,
        };
        let disk_settings = Settings { output_name: names.disk.clone(), ..settings.clone() };
        Ok(PackageWriter {
            disk: disk(options, &disk_settings, virtual_size, &mut OneOutput::new(Box::new(member)))?,
            package: Package {
                disk_file,
                disk_base,
                disk_len,
                parts,
                names,
                firmware: ovf_options.firmware,
                options: ovf_options,
                capacity: virtual_size.div_ceil(512) * 512,
                populated: 0,
                epoch: settings.epoch,
            },
        })
    }

    /// The descriptor's length with every number at its widest, rounded up to tar blocks.
    fn reserved_descriptor_len(options: &OvfOptions, names: &Names) -> u64 {
        let widest = DiskFile { href: names.disk.clone(), size: u64::MAX, capacity: u64::MAX, populated: u64::MAX };
        let len = descriptor::descriptor(options, Firmware::Efi, &widest).len() as u64;
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

    fn warnings(&self) -> Vec<String> {
        self.disk.warnings()
    }

    fn prepare(&mut self, source: &mut dyn Image) -> Result<()> {
        if self.package.firmware == Firmware::Auto {
            // EFI only when the guest cannot boot any other way: hybrid cloud images boot with BIOS too, and
            // BIOS is what older ESXi hardware versions default to.
            let guest = crate::guest::inspect(source)?;
            self.package.firmware = if guest.uefi_only() { Firmware::Efi } else { Firmware::Bios };
        }
        self.disk.prepare(source)
    }

    fn wants_scan(&self) -> bool {
        self.disk.wants_scan()
    }

    fn scan_encoder(&self) -> Option<Arc<dyn UnitEncoder>> {
        self.disk.scan_encoder()
    }

    fn scan_unit(&mut self, index: u64, scanned: Option<Vec<u8>>) -> Result<()> {
        self.disk.scan_unit(index, scanned)
    }

    fn end_scan(&mut self) -> Result<()> {
        self.disk.end_scan()
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        if encoded.is_some() {
            let start = index * self.disk.unit_size();
            self.package.populated += self.disk.unit_size().min(self.package.capacity.saturating_sub(start));
        }
        self.disk.write_unit(index, encoded)
    }

    /// Hashing reads the finished, compressed disk back at SHA's speed: measured here, a few percent of the CPU
    /// time the write pass spends deflating the same data, and less for compressible disks.
    fn finish_cost(&self, pass_bytes: u64) -> u64 {
        pass_bytes / 32 + self.disk.finish_cost(pass_bytes)
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn Finishing>> {
        let PackageWriter { disk, package } = *self;
        let hash = Hasher::new(package.options.digest());
        Ok(Box::new(Completion { stage: Stage::Disk(disk.finish()?), hash, package }))
    }
}

/// Where completing the package is.
enum Stage {
    /// The disk's writer is finishing.
    Disk(Box<dyn Finishing>),
    /// The disk is complete up to its length, and hashed up to here.
    Hash(u64),
    /// Descriptor, manifest and tar headers are written.
    Done,
}

/// Completing a package after its last unit: the disk's own finish, the disk's digest, then the descriptor and
/// manifest that carry its size and digest.
struct Completion {
    package: Package,
    stage: Stage,
    hash: Hasher,
}

impl Finishing for Completion {
    fn progress(&self) -> (u64, u64) {
        let size = self.package.disk_len.get().max(1);
        match self.stage {
            Stage::Disk(_) => (0, size),
            Stage::Hash(pos) => (pos, size),
            Stage::Done => (size, size),
        }
    }

    fn step(&mut self) -> Result<bool> {
        match &mut self.stage {
            Stage::Disk(finishing) => {
                if finishing.step()? {
                    self.stage = Stage::Hash(0);
                }
            }
            Stage::Hash(pos) => {
                let (size, base) = (self.package.disk_len.get(), self.package.disk_base);
                if *pos < size {
                    let n = (size - *pos).min(HASH_STEP) as usize;
                    let mut buf = vec![0u8; n];
                    self.package.disk_file.borrow_mut().read_back(base + *pos, &mut buf)?;
                    self.hash.update(&buf);
                    *pos += n as u64;
                } else {
                    self.write_package()?;
                    self.stage = Stage::Done;
                }
            }
            Stage::Done => {}
        }
        Ok(matches!(self.stage, Stage::Done))
    }

    fn into_sink(self: Box<Self>) -> Box<dyn Sink> {
        Box::new(PackageFile(self.package.disk_file))
    }
}

impl Completion {
    /// The descriptor and manifest, now that the disk's size and digest are known, and the tar's headers.
    fn write_package(&mut self) -> Result<()> {
        let p = &mut self.package;
        let disk_size = p.disk_len.get();
        let digest = p.options.digest();
        let disk_hash = std::mem::replace(&mut self.hash, Hasher::new(digest));
        let facts =
            DiskFile { href: p.names.disk.clone(), size: disk_size, capacity: p.capacity, populated: p.populated };
        let mut xml = descriptor::descriptor(&p.options, p.firmware, &facts).into_bytes();
        let mut file = p.disk_file.borrow_mut();
        match &mut p.parts {
            Parts::Ova { reserved } => {
                let reserved = *reserved;
                xml.resize(reserved as usize - 1, b' ');
                xml.push(b'\n');
                let manifest = manifest(digest, &p.names, &xml, disk_hash);
                let epoch = p.epoch;
                file.write_at(0, &tar::header(&p.names.descriptor, reserved, epoch)?)?;
                file.write_at(tar::BLOCK, &xml)?;
                file.write_at(tar::BLOCK + reserved, &tar::header(&p.names.disk, disk_size, epoch)?)?;
                let manifest_at = p.disk_base + disk_size + tar::padding(disk_size);
                let manifest_len = manifest.len() as u64;
                file.write_at(manifest_at, &tar::header(&p.names.manifest, manifest_len, epoch)?)?;
                file.write_at(manifest_at + tar::BLOCK, manifest.as_bytes())?;
                // Two zero blocks end the archive; the sink's gaps read as zeros and finish() sets the length.
                file.finish(manifest_at + tar::BLOCK + manifest_len + tar::padding(manifest_len) + 2 * tar::BLOCK)?;
            }
            Parts::Ovf { descriptor, manifest: manifest_sink } => {
                let manifest = manifest(digest, &p.names, &xml, disk_hash);
                descriptor.write_at(0, &xml)?;
                descriptor.finish(xml.len() as u64)?;
                manifest_sink.write_at(0, manifest.as_bytes())?;
                manifest_sink.finish(manifest.len() as u64)?;
            }
        }
        Ok(())
    }
}

/// The finished package's file (the archive, or the OVF's disk), as the disk's writer shared it.
struct PackageFile(Rc<RefCell<Box<dyn Sink>>>);

impl Sink for PackageFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.0.borrow_mut().write_at(offset, data)
    }

    fn is_seekable(&self) -> bool {
        self.0.borrow().is_seekable()
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        self.0.borrow_mut().finish(len)
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.borrow_mut().read_back(offset, buf)
    }
}

/// The manifest: the descriptor's digest first, then the disk's, as open-vmdk's ova-compose lists them.
fn manifest(digest: descriptor::Digest, names: &Names, xml: &[u8], disk_hash: Hasher) -> String {
    let mut ovf_hash = Hasher::new(digest);
    ovf_hash.update(xml);
    descriptor::manifest_line(digest, &names.descriptor, &ovf_hash.hex())
        + &descriptor::manifest_line(digest, &names.disk, &disk_hash.hex())
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
