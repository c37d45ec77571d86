//! The qcow2 header and its extensions (qcow2 spec, "Header" and "Header extensions"), parsed from the bytes of
//! cluster 0 and checked against qemu's limits and the file's length before anything in it is used; and
//! serialized for the writer from the same field offsets.

use super::compressed::Compression;
use super::entry::Layout;
use crate::error::{Error, Result};
use byteorder::{BigEndian, ByteOrder};

/// "QFI\xfb".
const MAGIC: u32 = 0x5146_49fb;

// Field offsets, as the spec names them.
const VERSION: usize = 4;
const BACKING_FILE_OFFSET: usize = 8;
const BACKING_FILE_SIZE: usize = 16;
const CLUSTER_BITS: usize = 20;
const SIZE: usize = 24;
const CRYPT_METHOD: usize = 32;
const L1_SIZE: usize = 36;
const L1_TABLE_OFFSET: usize = 40;
const REFCOUNT_TABLE_OFFSET: usize = 48;
const REFCOUNT_TABLE_CLUSTERS: usize = 56;
const NB_SNAPSHOTS: usize = 60;
const SNAPSHOTS_OFFSET: usize = 64;
const INCOMPATIBLE_FEATURES: usize = 72;
const COMPATIBLE_FEATURES: usize = 80;
const REFCOUNT_ORDER: usize = 96;
const HEADER_LENGTH: usize = 100;
const COMPRESSION_TYPE: usize = 104;
/// The version 3 header qemu writes: up to the compression type and its 7 bytes of padding.
const V3_WRITTEN_LENGTH: usize = 112;
/// Version 2 headers end here; version 3 headers are at least `V3_LENGTH` long.
const V2_LENGTH: usize = 72;
const V3_LENGTH: usize = 104;

// Header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_DATA_FILE: u32 = 0x4441_5441; // "DATA"
const EXT_BITMAPS: u32 = 0x2385_2875;

// Incompatible feature bits this reader handles.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;
const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
/// Refcounts the writer uses (and version 2 implies): 16 bits.
pub const REFCOUNT_ORDER_16: u32 = 4;

// qemu's limits (block/qcow2.h).
/// Smallest cluster size qemu accepts: 512 bytes.
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest: 2 MiB.
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Extended L2 needs subclusters of at least 512 bytes: 32 x 512.
const MIN_EXTENDED_L2_CLUSTER_BITS: u32 = 14;
const MAX_REFCOUNT_ORDER: u32 = 6;
/// `QCOW_MAX_L1_SIZE`, in bytes; it also bounds the virtual size an image can have.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// `QCOW_MAX_REFTABLE_SIZE`, in bytes.
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
const MAX_SNAPSHOTS: u32 = 65536;
const MAX_BACKING_NAME: u64 = 1023;
/// qemu keeps the backing format in a 16-byte C string.
const MAX_BACKING_FORMAT: usize = 15;
/// One feature-name table entry: type, bit number, 46-byte NUL-padded name.
const FEATURE_NAME_ENTRY: usize = 48;

/// The header, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Table geometry.
    pub layout: Layout,
    /// Guest size in bytes, as stored (not rounded).
    pub size: u64,
    /// File offset of the active L1 table.
    pub l1_table_offset: u64,
    /// L1 entries that map the guest disk (entries beyond hold VM state, or nothing).
    pub l1_entries: u64,
    /// L1 entries in the table, as stored (at least `l1_entries`).
    pub l1_size: u32,
    /// File offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// File offset of the snapshot table (cluster-aligned, inside the file, when there are snapshots).
    pub snapshots_offset: u64,
    /// Whether a bitmaps extension is present (its tables hold clusters too).
    pub bitmaps: bool,
    /// Incompatible feature bits (all of them known to this reader).
    pub incompatible: u64,
    /// Compatible feature bits.
    pub compatible: u64,
    /// log2 of the refcount width in bits.
    pub refcount_order: u32,
    /// How compressed clusters are encoded.
    pub compression: Compression,
    /// The backing file name as stored, if any.
    pub backing_file: Option<String>,
    /// The backing format extension, if any.
    pub backing_format: Option<String>,
}

impl Header {
    /// The cluster size, from the first bytes of the file (a few hundred are enough), so the caller knows how
    /// much to read for [`Header::parse`].
    ///
    /// # Errors
    /// As [`Header::parse`] for the fixed fields.
    pub fn cluster_size(head: &[u8]) -> Result<u64> {
        Ok(1 << Fixed::parse(head)?.cluster_bits)
    }

    /// Parses and validates the header in `cluster0` (the whole first cluster, or the whole file when it is
    /// shorter) of a file of `file_len` bytes.
    ///
    /// # Errors
    /// `InvalidFormat` for a non-qcow2 file; `Unsupported` for versions, encryption and features this reader
    /// does not implement; `Corrupt` or `LimitExceeded` for fields out of range — each at the field's offset.
    pub fn parse(cluster0: &[u8], file_len: u64) -> Result<Header> {
        let f = Fixed::parse(cluster0)?;
        let cluster_size = 1u64 << f.cluster_bits;

        let ext_end = if f.backing_file_offset != 0 { f.backing_file_offset } else { cluster_size };
        let ext = Extensions::parse(cluster0, f.header_length, ext_end as usize)?;

        check_features(f.incompatible, &ext)?;
        let compression = compression(f.compression_type, f.incompatible)?;
        match f.crypt_method {
            0 => {}
            1 => return Err(Error::unsupported("Image is encrypted (AES)").at(CRYPT_METHOD as u64)),
            2 => return Err(Error::unsupported("Image is encrypted (LUKS)").at(CRYPT_METHOD as u64)),
            m => return Err(Error::unsupported(format!("Unknown encryption method {m}")).at(CRYPT_METHOD as u64)),
        }
        if f.refcount_order > MAX_REFCOUNT_ORDER {
            return Err(Error::corrupt(format!("Refcount order {} is above {MAX_REFCOUNT_ORDER}", f.refcount_order))
                .at(REFCOUNT_ORDER as u64));
        }
        let extended_l2 = f.incompatible & INCOMPAT_EXTENDED_L2 != 0;
        if extended_l2 && f.cluster_bits < MIN_EXTENDED_L2_CLUSTER_BITS {
            return Err(Error::corrupt(format!(
                "Extended L2 entries need clusters of at least {} bytes, not {cluster_size}",
                1 << MIN_EXTENDED_L2_CLUSTER_BITS
            ))
            .at(CLUSTER_BITS as u64));
        }
        let layout = Layout { cluster_bits: f.cluster_bits, extended_l2, zero_flag: f.version >= 3 };
        let l1_entries = f.check_tables(&layout, file_len)?;
        let backing_file = f.backing_file(cluster0)?;

        Ok(Header {
            version: f.version,
            layout,
            size: f.size,
            l1_table_offset: f.l1_table_offset,
            l1_entries,
            l1_size: f.l1_size,
            refcount_table_offset: f.refcount_table_offset,
            refcount_table_clusters: f.refcount_table_clusters,
            nb_snapshots: f.nb_snapshots,
            snapshots_offset: f.snapshots_offset,
            bitmaps: ext.bitmaps,
            incompatible: f.incompatible,
            compatible: f.compatible,
            refcount_order: f.refcount_order,
            compression,
            backing_file,
            backing_format: ext.backing_format,
        })
    }

    /// Incompatible bit 0: refcounts may be stale (L1/L2 are still right).
    pub fn dirty(&self) -> bool {
        self.incompatible & INCOMPAT_DIRTY != 0
    }

    /// Incompatible bit 1: qemu found an inconsistency and stopped writing.
    pub fn corrupt(&self) -> bool {
        self.incompatible & INCOMPAT_CORRUPT != 0
    }

    /// Compatible bit 0.
    pub fn lazy_refcounts(&self) -> bool {
        self.compatible & COMPAT_LAZY_REFCOUNTS != 0
    }

    /// The feature bits a new image with these settings carries: the compression type's incompatible bit,
    /// the lazy-refcounts compatible bit.
    pub fn features(compression: Compression, lazy_refcounts: bool) -> (u64, u64) {
        let incompatible = if compression == Compression::Deflate { 0 } else { INCOMPAT_COMPRESSION };
        (incompatible, if lazy_refcounts { COMPAT_LAZY_REFCOUNTS } else { 0 })
    }

    /// Cluster 0 of a new image: the header as qemu writes it (version 3: 112 bytes with the compression
    /// type; version 2: 72 bytes), then the end-of-extensions marker, zeros to the end of the cluster. No
    /// snapshots, no backing file, no other extensions: the writer makes none, so they are not serialized.
    pub fn to_cluster(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.layout.cluster_size() as usize];
        BigEndian::write_u32(&mut b, MAGIC);
        BigEndian::write_u32(&mut b[VERSION..], self.version);
        BigEndian::write_u32(&mut b[CLUSTER_BITS..], self.layout.cluster_bits);
        BigEndian::write_u64(&mut b[SIZE..], self.size);
        BigEndian::write_u32(&mut b[L1_SIZE..], self.l1_size);
        BigEndian::write_u64(&mut b[L1_TABLE_OFFSET..], self.l1_table_offset);
        BigEndian::write_u64(&mut b[REFCOUNT_TABLE_OFFSET..], self.refcount_table_offset);
        BigEndian::write_u32(&mut b[REFCOUNT_TABLE_CLUSTERS..], self.refcount_table_clusters);
        // The end-of-extensions marker is 8 zero bytes right after the header, already in place.
        if self.version >= 3 {
            BigEndian::write_u64(&mut b[INCOMPATIBLE_FEATURES..], self.incompatible);
            BigEndian::write_u64(&mut b[COMPATIBLE_FEATURES..], self.compatible);
            BigEndian::write_u32(&mut b[REFCOUNT_ORDER..], self.refcount_order);
            BigEndian::write_u32(&mut b[HEADER_LENGTH..], V3_WRITTEN_LENGTH as u32);
            b[COMPRESSION_TYPE] = self.compression.code();
        }
        b
    }
}

/// The fixed-position fields; those a version 2 header lacks read as their implied values.
struct Fixed {
    version: u32,
    backing_file_offset: u64,
    backing_file_size: u32,
    cluster_bits: u32,
    size: u64,
    crypt_method: u32,
    l1_size: u32,
    l1_table_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
    nb_snapshots: u32,
    snapshots_offset: u64,
    incompatible: u64,
    compatible: u64,
    refcount_order: u32,
    header_length: usize,
    compression_type: u8,
}

fn truncated(len: usize) -> Error {
    Error::corrupt("File ends inside the qcow2 header").at(len as u64)
}

impl Fixed {
    fn parse(b: &[u8]) -> Result<Fixed> {
        if b.len() < 4 || BigEndian::read_u32(b) != MAGIC {
            return Err(Error::invalid("Not a qcow2 image (bad magic)").at(0));
        }
        if b.len() < V2_LENGTH {
            return Err(truncated(b.len()));
        }
        let u32_at = |o: usize| BigEndian::read_u32(&b[o..]);
        let u64_at = |o: usize| BigEndian::read_u64(&b[o..]);
        let version = u32_at(VERSION);
        if !(2..=3).contains(&version) {
            return Err(Error::unsupported(format!("qcow2 version {version} is not supported")).at(VERSION as u64));
        }
        let cluster_bits = u32_at(CLUSTER_BITS);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            let e = format!("Cluster size 2^{cluster_bits} is outside 2^{MIN_CLUSTER_BITS}..2^{MAX_CLUSTER_BITS}");
            return Err(Error::unsupported(e).at(CLUSTER_BITS as u64));
        }
        let mut f = Fixed {
            version,
            backing_file_offset: u64_at(BACKING_FILE_OFFSET),
            backing_file_size: u32_at(BACKING_FILE_SIZE),
            cluster_bits,
            size: u64_at(SIZE),
            crypt_method: u32_at(CRYPT_METHOD),
            l1_size: u32_at(L1_SIZE),
            l1_table_offset: u64_at(L1_TABLE_OFFSET),
            refcount_table_offset: u64_at(REFCOUNT_TABLE_OFFSET),
            refcount_table_clusters: u32_at(REFCOUNT_TABLE_CLUSTERS),
            nb_snapshots: u32_at(NB_SNAPSHOTS),
            snapshots_offset: u64_at(SNAPSHOTS_OFFSET),
            incompatible: 0,
            compatible: 0,
            refcount_order: 4,
            header_length: V2_LENGTH,
            compression_type: 0,
        };
        if version >= 3 {
            if b.len() < V3_LENGTH {
                return Err(truncated(b.len()));
            }
            let header_length = u32_at(HEADER_LENGTH);
            let bad = |what: &str| {
                Err(Error::corrupt(format!("Header length {header_length} {what}")).at(HEADER_LENGTH as u64))
            };
            if (header_length as usize) < V3_LENGTH {
                return bad("is shorter than 104 bytes");
            }
            if header_length % 8 != 0 {
                return bad("is not a multiple of 8");
            }
            if u64::from(header_length) > 1 << cluster_bits {
                return bad("exceeds the cluster size");
            }
            f.header_length = header_length as usize;
            f.incompatible = u64_at(INCOMPATIBLE_FEATURES);
            f.compatible = u64_at(COMPATIBLE_FEATURES);
            f.refcount_order = u32_at(REFCOUNT_ORDER);
            if f.header_length > COMPRESSION_TYPE {
                f.compression_type = *b.get(COMPRESSION_TYPE).ok_or_else(|| truncated(b.len()))?;
            }
        }
        if f.backing_file_offset > 1 << cluster_bits {
            return Err(Error::corrupt(format!(
                "Backing file name offset {:#x} is outside cluster 0",
                f.backing_file_offset
            ))
            .at(BACKING_FILE_OFFSET as u64));
        }
        Ok(f)
    }

    /// Checks the table offsets and sizes; returns the L1 entries the guest disk needs.
    fn check_tables(&self, layout: &Layout, file_len: u64) -> Result<u64> {
        let cluster_size = layout.cluster_size();
        let aligned = |offset: u64| offset & (cluster_size - 1) == 0;
        let l1_span = 1u64 << layout.l2_span_bits();
        let needed = self.size.div_ceil(l1_span);
        let max_entries = MAX_L1_BYTES / 8;
        if needed > max_entries {
            return Err(Error::limit(format!(
                "Virtual size {} needs an L1 table of {needed} entries, more than qemu's {max_entries}",
                self.size
            ))
            .at(SIZE as u64));
        }
        if u64::from(self.l1_size) > max_entries {
            return Err(
                Error::limit(format!("L1 table of {} entries is larger than 32 MiB", self.l1_size)).at(L1_SIZE as u64)
            );
        }
        if u64::from(self.l1_size) < needed {
            return Err(Error::corrupt(format!(
                "L1 table of {} entries is too small for the virtual size (needs {needed})",
                self.l1_size
            ))
            .at(L1_SIZE as u64));
        }
        if !aligned(self.l1_table_offset) {
            return Err(Error::corrupt(format!("L1 table offset {:#x} is not cluster-aligned", self.l1_table_offset))
                .at(L1_TABLE_OFFSET as u64));
        }
        if needed > 0 && self.l1_table_offset.checked_add(needed * 8).is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(format!(
                "L1 table at {:#x} extends beyond the end of the file",
                self.l1_table_offset
            ))
            .at(L1_TABLE_OFFSET as u64));
        }

        // The refcount table and snapshots are not needed for reading, but qemu refuses images where they are
        // out of place, and so do we: such a header is not one qemu wrote.
        if self.refcount_table_clusters == 0 {
            return Err(Error::corrupt("Image has no refcount table").at(REFCOUNT_TABLE_CLUSTERS as u64));
        }
        if u64::from(self.refcount_table_clusters) * cluster_size > MAX_REFTABLE_BYTES {
            return Err(Error::limit(format!(
                "Refcount table of {} clusters is larger than 8 MiB",
                self.refcount_table_clusters
            ))
            .at(REFCOUNT_TABLE_CLUSTERS as u64));
        }
        if !aligned(self.refcount_table_offset) || self.refcount_table_offset >= file_len {
            return Err(Error::corrupt(format!(
                "Refcount table offset {:#x} is unaligned or beyond the end of the file",
                self.refcount_table_offset
            ))
            .at(REFCOUNT_TABLE_OFFSET as u64));
        }
        if self.nb_snapshots > MAX_SNAPSHOTS {
            return Err(Error::limit(format!("{} snapshots are more than qemu's {MAX_SNAPSHOTS}", self.nb_snapshots))
                .at(NB_SNAPSHOTS as u64));
        }
        if self.nb_snapshots > 0 && (!aligned(self.snapshots_offset) || self.snapshots_offset >= file_len) {
            return Err(Error::corrupt(format!(
                "Snapshot table offset {:#x} is unaligned or beyond the end of the file",
                self.snapshots_offset
            ))
            .at(SNAPSHOTS_OFFSET as u64));
        }
        Ok(needed)
    }

    /// The backing file name (not NUL-terminated on disk; qemu stops at a NUL all the same).
    fn backing_file(&self, b: &[u8]) -> Result<Option<String>> {
        if self.backing_file_offset == 0 {
            return Ok(None);
        }
        let (start, len) = (self.backing_file_offset, u64::from(self.backing_file_size));
        if len > MAX_BACKING_NAME || start + len > 1 << self.cluster_bits {
            return Err(
                Error::corrupt(format!("Backing file name of {len} bytes is too long")).at(BACKING_FILE_SIZE as u64)
            );
        }
        let raw = b.get(start as usize..(start + len) as usize).ok_or_else(|| truncated(b.len()))?;
        let raw = raw.split(|&c| c == 0).next().unwrap_or_default();
        Ok((!raw.is_empty()).then(|| String::from_utf8_lossy(raw).into_owned()))
    }
}

/// What the header extensions say that matters for reading.
#[derive(Default)]
struct Extensions {
    backing_format: Option<String>,
    data_file: Option<String>,
    bitmaps: bool,
    /// (bit, name) of the incompatible features the feature-name table names.
    incompatible_names: Vec<(u8, String)>,
}

impl Extensions {
    /// Walks the extensions from `start` to the first end marker, `end` (the backing file name or the end of
    /// cluster 0), or the end of `b`, whichever comes first. Unknown extensions are skipped.
    fn parse(b: &[u8], start: usize, end: usize) -> Result<Extensions> {
        let mut ext = Extensions::default();
        let mut pos = start;
        let end = end.min(b.len());
        while pos + 8 <= end {
            let kind = BigEndian::read_u32(&b[pos..]);
            let len = BigEndian::read_u32(&b[pos + 4..]) as usize;
            if kind == EXT_END {
                break;
            }
            let data_start = pos + 8;
            if len > end - data_start {
                return Err(
                    Error::corrupt(format!("Header extension {kind:#010x} of {len} bytes is too large")).at(pos as u64)
                );
            }
            let data = &b[data_start..data_start + len];
            let text = || String::from_utf8_lossy(data.split(|&c| c == 0).next().unwrap_or_default()).into_owned();
            match kind {
                EXT_BACKING_FORMAT if len > MAX_BACKING_FORMAT => {
                    return Err(
                        Error::corrupt(format!("Backing format name of {len} bytes is too long")).at(pos as u64)
                    );
                }
                EXT_BACKING_FORMAT => ext.backing_format = Some(text()),
                EXT_DATA_FILE => ext.data_file = Some(text()),
                EXT_BITMAPS => ext.bitmaps = true,
                EXT_FEATURE_NAMES => {
                    ext.incompatible_names = data
                        .chunks_exact(FEATURE_NAME_ENTRY)
                        .filter(|e| e[0] == 0)
                        .map(|e| {
                            (
                                e[1],
                                String::from_utf8_lossy(e[2..].split(|&c| c == 0).next().unwrap_or_default())
                                    .into_owned(),
                            )
                        })
                        .collect();
                }
                _ => {}
            }
            pos = data_start + len.next_multiple_of(8);
        }
        Ok(ext)
    }
}

/// Refuses incompatible features this reader cannot honour, naming them as the image's own table does.
fn check_features(incompatible: u64, ext: &Extensions) -> Result<()> {
    let at = INCOMPATIBLE_FEATURES as u64;
    let unknown = incompatible & !INCOMPAT_KNOWN;
    if unknown != 0 {
        let names: Vec<String> = (0..64u8)
            .filter(|bit| (unknown >> bit) & 1 != 0)
            .map(|bit| match ext.incompatible_names.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => format!("'{name}' (incompatible feature bit {bit})"),
                None => format!("unknown incompatible feature bit {bit}"),
            })
            .collect();
        return Err(Error::unsupported(format!("Unsupported qcow2 feature: {}", names.join(", "))).at(at));
    }
    if incompatible & INCOMPAT_DATA_FILE != 0 {
        let name = match &ext.data_file {
            Some(name) => format!(" '{name}'"),
            None => String::new(),
        };
        return Err(Error::unsupported(format!("Image keeps its data in an external data file{name}")).at(at));
    }
    Ok(())
}

fn compression(kind: u8, incompatible: u64) -> Result<Compression> {
    let at = COMPRESSION_TYPE as u64;
    let kind = Compression::ALL
        .into_iter()
        .find(|c| c.code() == kind)
        .ok_or_else(|| Error::unsupported(format!("Unknown compression type {kind}")).at(at))?;
    let flagged = incompatible & INCOMPAT_COMPRESSION != 0;
    if flagged != (kind != Compression::Deflate) {
        let what = if flagged { "set with zlib compression" } else { "clear with zstd compression" };
        return Err(Error::corrupt(format!("Compression type feature bit is {what}")).at(at));
    }
    Ok(kind)
}

#[cfg(test)]
mod tests;
