//! OVF packages around a streamOptimized VMDK: one OVA (a tar: `.ovf`, the disk, a seed disk when asked for,
//! then the `.mf`) or an `.ovf`, its disks and `.mf` written side by side.
//!
//! The disks' sizes and digests are known only once they are finished, and a VMDK's grain tables are written
//! last, so the package is completed at the end: the OVA's descriptor slot is reserved at the front at its
//! largest possible length (the final XML is padded with trailing spaces, which XML allows after the root
//! element), the disk members' tar headers are back-patched, and the disks are read back to be hashed — a step
//! at a time, so progress and cancel reach it. The disks' writer comes from the caller (the table of formats),
//! so this module knows the VMDK format only by what the descriptor says of it. A seed disk (a few MiB) is
//! encoded here, on this thread, once the converted disk is finished.

use super::descriptor::{self, DiskFile, Firmware, Hasher, OvfOptions, Properties};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::io::Sink;
use crate::options::OptionList;
use crate::random::Random;
use crate::tar;
use crate::writer::{Finishing, ImageWriter, OneOutput, Outputs, SeedDisk, Settings, UnitEncoder, WriterFactory};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Bytes of a finished disk hashed per step.
const HASH_STEP: u64 = 8 << 20;

/// The member names of a package whose base name is `stem`.
#[derive(Debug, Clone)]
pub struct Names {
    /// The descriptor, `stem.ovf`.
    pub descriptor: String,
    /// The disk, `stem-disk1.vmdk`.
    pub disk: String,
    /// The seed disk, `stem-seed.vmdk`, when there is one.
    pub seed: String,
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
        Names {
            descriptor: format!("{stem}.ovf"),
            disk: format!("{stem}-disk1.vmdk"),
            seed: format!("{stem}-seed.vmdk"),
            manifest: format!("{stem}.mf"),
        }
    }
}

/// How the package is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One tar archive, the output itself, on a seekable sink that can be read back.
    Ova,
    /// Files beside the output's name: the descriptor, the disks, the manifest.
    Ovf,
}

enum Parts {
    Ova { reserved: u64 },
    Ovf { descriptor: Box<dyn Sink>, manifest: Box<dyn Sink> },
}

/// A disk of the package: where it is written and what the descriptor says of it.
struct DiskMember {
    name: String,
    /// The file holding it (the archive, or its own file), shared with its writer's [`Member`].
    file: Rc<RefCell<Box<dyn Sink>>>,
    /// Where it starts in that file, and its length once its writer has finished.
    base: u64,
    len: Rc<Cell<u64>>,
    capacity: u64,
    populated: u64,
}

impl DiskMember {
    /// A disk at `base` of `file`, and the sink its writer writes through.
    fn new(name: &str, file: Rc<RefCell<Box<dyn Sink>>>, base: u64, capacity: u64, whole_file: bool) -> (Self, Member) {
        let len = Rc::new(Cell::new(0));
        let member = Member { file: Rc::clone(&file), base, len: Rc::clone(&len), whole_file };
        (DiskMember { name: name.to_string(), file, base, len, capacity, populated: 0 }, member)
    }

    fn facts(&self, size: u64) -> DiskFile {
        DiskFile { href: self.name.clone(), size, capacity: self.capacity, populated: self.populated }
    }
}

/// Writes an OVA or OVF package; the guest data goes through the disk's writer inside it.
pub struct PackageWriter {
    disk: Box<dyn ImageWriter>,
    package: Package,
}

/// Everything about the package but its converted disk's writer.
struct Package {
    /// The converted disk, then the seed disk once it is written.
    disks: Vec<DiskMember>,
    /// The seed disk still to write, its own file for an OVF, and how to write it.
    seed: Option<(SeedDisk, Option<Box<dyn Sink>>)>,
    factory: WriterFactory,
    disk_options: OptionList,
    settings: Settings,
    parts: Parts,
    names: Names,
    options: OvfOptions,
    firmware: Firmware,
    properties: Option<Properties>,
}

/// A disk as its writer sees it: offsets shifted to where the disk starts, its final length remembered.
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
    /// it takes, and the disk's, which `disk` takes. With a seed disk in `settings` the package carries it as its
    /// second disk; without one, its descriptor asks the deployer for a first login instead.
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
        let disk_options = options.clone();
        let properties = match settings.seed_disk {
            Some(_) => None,
            None => {
                let mut random = Random::new(settings.seed ^ PROPERTIES_SEED);
                let instance_id = format!("iid-{:016x}", random.next_u64());
                Some(Properties { instance_id, hostname: host_name(&ovf_options.name) })
            }
        };
        let seeded = settings.seed_disk.is_some();
        let (file, disk_base, parts, seed_file) = match kind {
            Kind::Ova => {
                let reserved = Self::reserved_descriptor_len(&ovf_options, &names, seeded, properties.as_ref());
                (outputs.main()?, tar::BLOCK + reserved + tar::BLOCK, Parts::Ova { reserved }, None)
            }
            Kind::Ovf => {
                let descriptor = outputs.beside(&names.descriptor)?;
                let disk = outputs.beside(&names.disk)?;
                let seed_file = if seeded { Some(outputs.beside(&names.seed)?) } else { None };
                (disk, 0, Parts::Ovf { descriptor, manifest: outputs.beside(&names.manifest)? }, seed_file)
            }
        };
        if !file.is_seekable() {
            return Err(Error::argument("An OVF package needs a seekable output (a file, not a pipe)"));
        }
        let capacity = virtual_size.div_ceil(512) * 512;
        let (main, member) =
            DiskMember::new(&names.disk, Rc::new(RefCell::new(file)), disk_base, capacity, kind == Kind::Ovf);
        let disk_settings = Settings { output_name: names.disk.clone(), seed_disk: None, ..settings.clone() };
        Ok(PackageWriter {
            disk: disk(options, &disk_settings, virtual_size, &mut OneOutput::new(Box::new(member)))?,
            package: Package {
                disks: vec![main],
                seed: settings.seed_disk.clone().map(|seed| (seed, seed_file)),
                factory: disk,
                disk_options,
                settings: disk_settings,
                parts,
                names,
                firmware: ovf_options.firmware,
                options: ovf_options,
                properties,
            },
        })
    }

    /// The descriptor's length with every number at its widest, rounded up to tar blocks.
    fn reserved_descriptor_len(
        options: &OvfOptions,
        names: &Names,
        seeded: bool,
        properties: Option<&Properties>,
    ) -> u64 {
        let widest =
            |href: &str| DiskFile { href: href.to_string(), size: u64::MAX, capacity: u64::MAX, populated: u64::MAX };
        let mut disks = vec![widest(&names.disk)];
        if seeded {
            disks.push(widest(&names.seed));
        }
        let len = descriptor::descriptor(options, Firmware::Efi, &disks, properties).len() as u64;
        len.next_multiple_of(tar::BLOCK)
    }
}

/// Mixed into the seed for the properties' defaults, so that they differ from the disk's random fields.
const PROPERTIES_SEED: u64 = 0x0f0e_5eed;

/// A default host name made from the VM's name: letters, digits and hyphens, as RFC 1123 allows.
fn host_name(vm_name: &str) -> String {
    let name: String = vm_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() { "localhost".to_string() } else { name.to_string() }
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
            let main = &mut self.package.disks[0];
            let start = index * self.disk.unit_size();
            main.populated += self.disk.unit_size().min(main.capacity.saturating_sub(start));
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
        Ok(Box::new(Completion { stage: Stage::Disk(disk.finish()?), hash, digests: Vec::new(), package }))
    }
}

/// Where completing the package is.
enum Stage {
    /// The converted disk's writer is finishing.
    Disk(Box<dyn Finishing>),
    /// Disk `n` is complete up to its length, and hashed up to `pos`.
    Hash { n: usize, pos: u64 },
    /// Descriptor, manifest and tar headers are written.
    Done,
}

/// Completing a package after its last unit: the converted disk's own finish, the seed disk, the disks'
/// digests, then the descriptor and manifest that carry their sizes and digests.
struct Completion {
    package: Package,
    stage: Stage,
    hash: Hasher,
    /// The hex digests of the disks hashed so far.
    digests: Vec<String>,
}

impl Finishing for Completion {
    fn progress(&self) -> (u64, u64) {
        let sizes: Vec<u64> = self.package.disks.iter().map(|d| d.len.get()).collect();
        let total = sizes.iter().sum::<u64>().max(1);
        match self.stage {
            Stage::Disk(_) => (0, total),
            Stage::Hash { n, pos } => (sizes[..n].iter().sum::<u64>() + pos, total),
            Stage::Done => (total, total),
        }
    }

    fn step(&mut self) -> Result<bool> {
        match &mut self.stage {
            Stage::Disk(finishing) => {
                if finishing.step()? {
                    self.package.write_seed()?;
                    self.stage = Stage::Hash { n: 0, pos: 0 };
                }
            }
            Stage::Hash { n, pos } => match self.package.disks.get(*n) {
                Some(disk) if *pos < disk.len.get() => {
                    let len = (disk.len.get() - *pos).min(HASH_STEP) as usize;
                    let mut buf = vec![0u8; len];
                    disk.file.borrow_mut().read_back(disk.base + *pos, &mut buf)?;
                    self.hash.update(&buf);
                    *pos += len as u64;
                }
                Some(_) => {
                    let hash = std::mem::replace(&mut self.hash, Hasher::new(self.package.options.digest()));
                    self.digests.push(hash.hex());
                    self.stage = Stage::Hash { n: *n + 1, pos: 0 };
                }
                None => {
                    self.package.write_package(&self.digests)?;
                    self.stage = Stage::Done;
                }
            },
            Stage::Done => {}
        }
        Ok(matches!(self.stage, Stage::Done))
    }

    fn into_sink(self: Box<Self>) -> Box<dyn Sink> {
        Box::new(PackageFile(Rc::clone(&self.package.disks[0].file)))
    }
}

impl Package {
    /// Writes the seed disk, if there is one, with the converted disk's writer and options: after the converted
    /// disk's member in an OVA, into its own file in an OVF.
    fn write_seed(&mut self) -> Result<()> {
        let Some((seed, own_file)) = self.seed.take() else { return Ok(()) };
        let (file, base, whole_file) = match own_file {
            Some(file) => (Rc::new(RefCell::new(file)), 0, true),
            None => {
                let main = &self.disks[0];
                let end = main.base + main.len.get() + tar::padding(main.len.get());
                (Rc::clone(&main.file), end + tar::BLOCK, false)
            }
        };
        let size = seed.bytes.len() as u64;
        let (mut member, sink) = DiskMember::new(&self.names.seed, file, base, size, whole_file);
        let settings =
            Settings { seed: seed.container_seed, output_name: self.names.seed.clone(), ..self.settings.clone() };
        let mut writer =
            (self.factory)(&mut self.disk_options.clone(), &settings, size, &mut OneOutput::new(Box::new(sink)))?;
        let (encoder, unit) = (writer.encoder(), writer.unit_size());
        for (index, data) in seed.bytes.chunks(unit as usize).enumerate() {
            let encoded = encoder.encode(index as u64, data.to_vec())?;
            if encoded.is_some() {
                member.populated += data.len() as u64;
            }
            writer.write_unit(index as u64, encoded)?;
        }
        let mut finishing = writer.finish()?;
        while !finishing.step()? {}
        self.disks.push(member);
        Ok(())
    }

    /// The descriptor and manifest, now that the disks' sizes and digests are known, and the tar's headers.
    fn write_package(&mut self, digests: &[String]) -> Result<()> {
        let digest = self.options.digest();
        let facts: Vec<DiskFile> = self.disks.iter().map(|d| d.facts(d.len.get())).collect();
        let mut xml =
            descriptor::descriptor(&self.options, self.firmware, &facts, self.properties.as_ref()).into_bytes();
        let manifest_for = |xml: &[u8]| {
            let mut ovf_hash = Hasher::new(digest);
            ovf_hash.update(xml);
            let mut text = descriptor::manifest_line(digest, &self.names.descriptor, &ovf_hash.hex());
            for (disk, hex) in self.disks.iter().zip(digests) {
                text += &descriptor::manifest_line(digest, &disk.name, hex);
            }
            text
        };
        match &mut self.parts {
            Parts::Ova { reserved } => {
                let reserved = *reserved;
                xml.resize(reserved as usize - 1, b' ');
                xml.push(b'\n');
                let manifest = manifest_for(&xml);
                let epoch = self.settings.epoch;
                let mut file = self.disks[0].file.borrow_mut();
                file.write_at(0, &tar::header(&self.names.descriptor, reserved, epoch)?)?;
                file.write_at(tar::BLOCK, &xml)?;
                let mut end = 0;
                for disk in &self.disks {
                    let len = disk.len.get();
                    file.write_at(disk.base - tar::BLOCK, &tar::header(&disk.name, len, epoch)?)?;
                    end = disk.base + len + tar::padding(len);
                }
                let manifest_len = manifest.len() as u64;
                file.write_at(end, &tar::header(&self.names.manifest, manifest_len, epoch)?)?;
                file.write_at(end + tar::BLOCK, manifest.as_bytes())?;
                // Two zero blocks end the archive; the sink's gaps read as zeros and finish() sets the length.
                file.finish(end + tar::BLOCK + manifest_len + tar::padding(manifest_len) + 2 * tar::BLOCK)?;
            }
            Parts::Ovf { descriptor, manifest: manifest_sink } => {
                let manifest = manifest_for(&xml);
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
        assert_eq!(Names::for_output("vm.ova").seed, "vm-seed.vmdk");
    }

    #[test]
    fn default_host_names_are_valid_ones() {
        assert_eq!(host_name("Ubuntu 24.04 (noble)"), "ubuntu-24-04--noble");
        assert_eq!(host_name("日本"), "localhost");
        assert_eq!(host_name(&"a".repeat(80)).len(), 63);
    }
}
