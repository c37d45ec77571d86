//! Opening a VMDK disk (FORMATS.md §2): a descriptor file naming its extents, or a hosted sparse extent
//! (`KDMV`) carrying its descriptor inside; its extent files and the parent of a delta disk; and reading the
//! guest disk across its extents. A sparse extent's own tables and grains are [`super::sparse`]'s.
//!
//! ```text
//! disk = extents in guest order, each ZERO | FLAT (file + sector offset) | SPARSE (hosted sparse extent)
//! ```

use super::descriptor::{self, Access, Descriptor, ExtentType, MAX_TEXT, NO_PARENT};
use super::sparse::{Cache, Grain, MAX_VIRTUAL_SIZE, SECTOR, Sparse};
use crate::chain::{Opener, parent_extent, read_parent, unless_missing};
use crate::error::{Error, ErrorKind, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Fact, Image, ImageInfo, Specific};
use crate::io::{ReadAt, zeroed_buffer};

/// The text a descriptor file starts with, which format probing also looks for.
const DESCRIPTOR_MAGIC: &[u8] = b"# Disk DescriptorFile";

/// An opened VMDK disk: its extents, and the parent of a delta disk.
pub struct VmdkImage {
    info: ImageInfo,
    file_len: u64,
    parts: Vec<Part>,
    cache: Cache,
    /// The extent last returned: the pipeline asks again at every unit inside it, and finding its end anew
    /// would scan the rest of the grain table each time.
    last: Option<Extent>,
    parent: Option<Box<dyn Image>>,
}

/// One extent of the disk, placed in guest space.
struct Part {
    /// First guest byte.
    start: u64,
    /// Guest bytes.
    len: u64,
    kind: PartKind,
}

enum PartKind {
    Zero,
    Flat { file: Box<dyn ReadAt>, name: String, offset: u64 },
    Sparse(Box<Sparse>),
}

impl VmdkImage {
    /// Opens `file` (named `name`): a descriptor file with its extent files and parent, or a sparse extent
    /// with its parent, all found through `opener`.
    ///
    /// # Errors
    /// `InvalidFormat` for a file that is neither; `Unsupported` naming ESXi snapshots, raw device mappings and
    /// encrypted disks; `Corrupt` or `LimitExceeded` for structures that do not fit the file or the limits.
    pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<VmdkImage> {
        let file_len = file.len();
        let mut head = [0u8; 4];
        let sparse = file_len >= 4 && {
            file.read_exact_at(0, &mut head)?;
            &head == b"KDMV" || &head == b"COWD"
        };
        let (descriptor, parts) = if sparse {
            let (sparse, text) = Sparse::open(file, name.to_string())?;
            // The extent files of a split disk reserve the space but leave it blank (qemu does).
            let text = text.filter(|t| !t.iter().all(|&b| b == 0 || b.is_ascii_whitespace()));
            let descriptor = text.as_deref().map(descriptor::parse).transpose()?;
            let part = Part { start: 0, len: sparse.capacity, kind: PartKind::Sparse(Box::new(sparse)) };
            (descriptor, vec![part])
        } else {
            let descriptor = read_descriptor_file(file.as_ref())?;
            let parts = open_extents(&descriptor, name, opener)?;
            (Some(descriptor), parts)
        };
        let virtual_size = parts.last().map_or(0, |p| p.start + p.len);
        let mut info = ImageInfo::basic("vmdk", virtual_size);
        info.cluster_size = parts.iter().find_map(|p| match &p.kind {
            PartKind::Sparse(s) => Some(s.grain_bytes),
            _ => None,
        });
        if let Some(unclean) = parts.iter().find_map(|p| match &p.kind {
            PartKind::Sparse(s) if s.header.unclean_shutdown => Some(&s.name),
            _ => None,
        }) {
            info.dirty = true;
            info.warnings.push(format!("The extent '{unclean}' was not closed cleanly; reading it as it is"));
        }
        let mut parent = None;
        if let Some(d) = &descriptor {
            info.specific = Some(Specific(vec![
                ("cid", Fact::Number(d.cid.into())),
                ("parent-cid", Fact::Number(d.parent_cid.into())),
                ("create-type", Fact::Text(d.create_type.clone())),
            ]));
            if let Some(hint) = &d.parent_hint {
                info.backing_filename = Some(hint.clone());
                info.backing_format = Some("vmdk".to_string());
                let opened = open_parent_file(opener, hint, name);
                if let Some((resolved, file)) = unless_missing(opener, opened)? {
                    // qemu creates VMDK deltas over VMDK parents only.
                    let image = opener.open_file(&resolved, file, Some("vmdk"))?;
                    let cid = image.info().specific.as_ref().and_then(|s| s.number("cid"));
                    if let Some(cid) = cid.and_then(|c| u32::try_from(c).ok()) {
                        if d.parent_cid != NO_PARENT && cid != d.parent_cid {
                            info.warnings.push(format!(
                                "The parent's CID {cid:08x} is not the parentCID {:08x} recorded here: the parent \
                                 changed after this delta was made",
                                d.parent_cid
                            ));
                        }
                    }
                    info.full_backing_filename = Some(resolved);
                    parent = Some(image);
                }
            }
        }
        Ok(VmdkImage { info, file_len, parts, cache: Cache::new(), last: None, parent })
    }

    /// The index of the part holding guest byte `offset`, and `offset` inside it.
    fn part(&self, offset: u64) -> Result<(usize, u64)> {
        let i = self.parts.partition_point(|p| p.start + p.len <= offset);
        let part = self
            .parts
            .get(i)
            .ok_or_else(|| Error::argument(format!("Guest offset {offset:#x} is past the end of the disk")))?;
        Ok((i, offset - part.start))
    }

    /// The extent at `offset` as the metadata gives it: one run of a grain table, or a whole flat or zero
    /// extent; absent grains as the parent maps them.
    fn map_at(&mut self, offset: u64) -> Result<Extent> {
        let (i, rel) = self.part(offset)?;
        let part = &self.parts[i];
        let left = part.len - rel;
        let (length, kind) = match &part.kind {
            PartKind::Zero => (left, ExtentKind::Zero),
            PartKind::Flat { .. } => (left, ExtentKind::Data),
            PartKind::Sparse(s) => {
                let (length, kind) = s.run(self.cache.claim(i), rel).map_err(|e| e.in_file(s.name.clone()))?;
                (length.min(left), kind)
            }
        };
        if kind == ExtentKind::Unallocated {
            return parent_extent(self.parent.as_deref_mut(), offset, offset + length);
        }
        Ok(Extent { offset, length, kind })
    }
}

/// Opens the parent named by `parentFileNameHint`. VMware records linked clones' parents as absolute paths
/// of the machine that made them (`C:\VMs\base.vmdk`, `/vmfs/volumes/…/base.vmdk`); when such a path is
/// not there, the parent is looked for by its base name beside the child, as the page does anyway.
fn open_parent_file(opener: &dyn Opener, hint: &str, name: &str) -> Result<(String, Box<dyn ReadAt>)> {
    match opener.open_part(hint, name) {
        Err(e) if e.kind() == ErrorKind::NotFound => match hint.rsplit(['/', '\\']).next() {
            Some(base) if base != hint && !base.is_empty() => opener.open_part(base, name).map_err(|_| e),
            _ => Err(e),
        },
        r => r,
    }
}

/// Reads and parses a descriptor file, which holds nothing but text.
fn read_descriptor_file(file: &dyn ReadAt) -> Result<Descriptor> {
    let len = file.len();
    let mut start = [0u8; DESCRIPTOR_MAGIC.len()];
    let looks_like = file.read_exact_at(0, &mut start).is_ok() && start == DESCRIPTOR_MAGIC;
    if len > MAX_TEXT {
        return Err(if looks_like {
            Error::limit(format!("A VMDK descriptor file of {len} bytes exceeds the {MAX_TEXT}-byte limit"))
        } else {
            Error::invalid("Not a VMDK: neither a sparse extent (KDMV) nor a descriptor file")
        });
    }
    let mut text = zeroed_buffer(len, "the VMDK descriptor")?;
    file.read_exact_at(0, &mut text)?;
    descriptor::parse(&text).map_err(|e| {
        if looks_like {
            e
        } else {
            Error::invalid(format!(
                "Not a VMDK: neither a sparse extent (KDMV) nor a descriptor file ({})",
                e.message()
            ))
        }
    })
}

/// Checks the disk's type and opens each extent it lists, placing them one after another in guest space.
fn open_extents(d: &Descriptor, name: &str, opener: &mut dyn Opener) -> Result<Vec<Part>> {
    // The names libvmdk knows; the flat and sparse kinds are read, whatever extents they list.
    let unsupported = match d.create_type.as_str() {
        "monolithicSparse"
        | "monolithicFlat"
        | "twoGbMaxExtentSparse"
        | "twoGbMaxExtentFlat"
        | "streamOptimized"
        | "vmfs"
        | "vmfsThin"
        | "vmfsPreallocated"
        | "vmfsEagerZeroedThick"
        | "custom" => None,
        "vmfsSparse" => Some(" (ESXi vmfsSparse snapshots)"),
        "seSparse" => Some(" (ESXi SEsparse snapshots)"),
        "vmfsRDM" | "vmfsRDMP" | "vmfsRawDeviceMap" | "vmfsPassthroughRawDeviceMap" | "vmfsRaw" => {
            Some(" (raw device mappings)")
        }
        "fullDevice" | "partitionedDevice" => Some(" (disks on physical devices)"),
        _ => Some(""),
    };
    if let Some(what) = unsupported {
        return Err(Error::unsupported(format!("VMDK create type '{}' is not supported{what}", d.create_type)));
    }
    let mut parts = Vec::new();
    let mut start = 0u64;
    for (i, line) in d.extents.iter().enumerate() {
        let number = i + 1;
        let len = line
            .sectors
            .checked_mul(SECTOR)
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= MAX_VIRTUAL_SIZE)
            .ok_or_else(|| Error::limit(format!("Extent {number} takes the disk past {MAX_VIRTUAL_SIZE} bytes")))?
            - start;
        if line.access == Access::NoAccess {
            return Err(Error::unsupported(format!("Extent {number} is NOACCESS: its data is not available")));
        }
        let kind = match line.kind {
            ExtentType::Zero => PartKind::Zero,
            ExtentType::Flat | ExtentType::Vmfs => {
                let (resolved, file) = opener.open_part(&line.file, name)?;
                let offset = line.offset.checked_mul(SECTOR).and_then(|o| o.checked_add(len));
                if offset.is_none_or(|end| end > file.len()) {
                    return Err(Error::corrupt(format!(
                        "The flat extent is shorter than the {} sectors from sector {} the descriptor gives it",
                        line.sectors, line.offset
                    ))
                    .at(file.len())
                    .in_file(resolved));
                }
                PartKind::Flat { file, name: resolved, offset: line.offset * SECTOR }
            }
            ExtentType::Sparse => {
                let (resolved, file) = opener.open_part(&line.file, name)?;
                let (sparse, _) = Sparse::open(file, resolved.clone()).map_err(|e| e.in_file(resolved.clone()))?;
                if sparse.capacity < len {
                    return Err(Error::corrupt(format!(
                        "The descriptor gives extent {number} {} sectors, its header only {}",
                        line.sectors, sparse.header.capacity
                    ))
                    .in_file(resolved));
                }
                PartKind::Sparse(Box::new(sparse))
            }
            ExtentType::VmfsSparse | ExtentType::SeSparse => {
                return Err(Error::unsupported(format!(
                    "Extent {number} is an ESXi {} snapshot extent, which is not supported; consolidate the \
                     snapshot first",
                    if line.kind == ExtentType::SeSparse { "SEsparse" } else { "vmfsSparse" }
                )));
            }
            ExtentType::VmfsRdm | ExtentType::VmfsRaw => {
                return Err(Error::unsupported(format!(
                    "Extent {number} is a raw device mapping (VMFSRDM/VMFSRAW), which is not supported"
                )));
            }
        };
        if len > 0 {
            parts.push(Part { start, len, kind });
        }
        start += len;
    }
    Ok(parts)
}

impl Image for VmdkImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        if let Some(last) = self.last.filter(|e| e.offset <= offset && offset < e.end()) {
            return Ok(Extent { offset, length: last.end() - offset, kind: last.kind });
        }
        let extent = self.map_at(offset)?;
        self.last = Some(extent);
        Ok(extent)
    }

    fn read_at(&mut self, mut offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let (i, rel) = self.part(offset)?;
            let part = &self.parts[i];
            let mut n = (part.len - rel).min((buf.len() - done) as u64) as usize;
            let absent = match &part.kind {
                PartKind::Zero => {
                    buf[done..done + n].fill(0);
                    false
                }
                PartKind::Flat { file, name, offset: start } => {
                    file.read_exact_at(*start + rel, &mut buf[done..done + n]).map_err(|e| e.in_file(name.clone()))?;
                    false
                }
                PartKind::Sparse(s) => {
                    // A grain at a time: neighbours may be absent, zeroed or compressed apart.
                    n = n.min((s.grain_bytes - rel % s.grain_bytes) as usize);
                    let chunk = &mut buf[done..done + n];
                    match s.read(self.cache.claim(i), rel, chunk).map_err(|e| e.in_file(s.name.clone()))? {
                        Grain::Absent => true,
                        Grain::Zeroed => {
                            chunk.fill(0);
                            false
                        }
                        Grain::Stored(_) => false,
                    }
                }
            };
            if absent {
                read_parent(self.parent.as_deref_mut(), offset, &mut buf[done..done + n])?;
            }
            offset += n as u64;
            done += n;
        }
        Ok(())
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        match &mut self.parent {
            Some(p) => Some(p.as_mut()),
            None => None,
        }
    }

    fn file_length(&self) -> u64 {
        self.file_len
    }
}
