//! The descriptor (VMDK 5.0 technote pp. 3–5; FORMATS.md §2.4): written embedded at sector 1 in the form
//! open-vmdk's `vmdk-convert` writes, since that is what the project's ESXi imports; parsed from any producer,
//! embedded or as a descriptor file.
//!
//! Reader pitfalls this text respects: qemu finds the content id with `strstr(desc, "CID")`, so `CID=` must
//! come before `parentCID=`; it wants `createType="…"` with no spaces around `=`; it ignores extents that
//! are not `RW`.

use super::{AdapterType, VmdkOptions};
use crate::error::{Error, Result};
use crate::random::Random;

/// Content ids: `CID` changes whenever the content does (a child records it as `parentCID`), and
/// `ddb.longContentID` is a longer form whose last 32 bits are the CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentIds {
    /// `CID`; never `ffffffff` (means "no parent") or `fffffffe` (taken by some software as "all zeros").
    pub cid: u32,
    /// The first 96 bits of `ddb.longContentID`.
    pub long_prefix: [u32; 3],
}

impl ContentIds {
    /// Draws the ids from `seed`, the CID first, as open-vmdk does.
    pub fn from_seed(seed: u64) -> Self {
        let mut random = Random::new(seed);
        let cid = loop {
            let cid = random.next_u32();
            if cid < 0xFFFF_FFFE {
                break cid;
            }
        };
        let long_prefix = [random.next_u32(), random.next_u32(), random.next_u32()];
        ContentIds { cid, long_prefix }
    }
}

/// `ddb.geometry.sectors`: the BIOS CHS convention VMware and qemu both use.
const GEOMETRY_SECTORS: u64 = 63;

/// `ddb.geometry.cylinders` for a disk of `capacity` sectors: open-vmdk's rounding up, so it is never 0
/// (qemu's floor gives 0 for small disks), capped at what the field can mean — 65535 (open-vmdk) for SCSI,
/// and for IDE the ATA CHS limit of 16383 cylinders × 16 heads × 63 sectors.
pub fn cylinders(capacity: u64, adapter: AdapterType) -> u64 {
    let cap = if adapter == AdapterType::Ide { 16383 } else { 65535 };
    capacity.div_ceil(adapter.heads() * GEOMETRY_SECTORS).clamp(1, cap)
}

/// The descriptor text for a disk of `capacity` sectors whose extent is the file `extent_name`.
///
/// # Errors
/// `InvalidArgument` when the name cannot be quoted in the descriptor (it holds `"` or a control character).
pub fn text(capacity: u64, extent_name: &str, opts: &VmdkOptions, ids: &ContentIds) -> Result<String> {
    if extent_name.chars().any(|c| c == '"' || c.is_control()) {
        return Err(Error::argument(format!(
            "The output name {extent_name:?} cannot be recorded in a VMDK descriptor (no quotes or control characters)"
        )));
    }
    let [l0, l1, l2] = ids.long_prefix;
    // As vmdk-convert writes it: `ddb.toolsInstallType = "4"` (unmanaged, i.e. open-vm-tools), and no newline
    // after the last line.
    Ok(format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{extent_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.longContentID = \"{l0:08x}{l1:08x}{l2:08x}{cid:08x}\"\n\
         ddb.virtualHWVersion = \"{hw}\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{heads}\"\n\
         ddb.geometry.sectors = \"{GEOMETRY_SECTORS}\"\n\
         ddb.adapterType = \"{adapter}\"\n\
         ddb.toolsInstallType = \"4\"\n\
         ddb.toolsVersion = \"{tools}\"",
        cid = ids.cid,
        hw = opts.hw_version,
        cylinders = cylinders(capacity, opts.adapter),
        heads = opts.adapter.heads(),
        adapter = opts.adapter.name(),
        tools = opts.tools_version,
    ))
}

/// The most descriptor text accepted, in a descriptor file or embedded: 1 MiB, qemu's cap too. Most are under
/// 2 KiB; the largest hosted disk VMware makes (8 TiB) split into 2 GiB extents lists 4096 in about 200 KiB.
pub const MAX_TEXT: u64 = 1 << 20;

/// How an extent may be accessed (`RW`, `RDONLY`, `NOACCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `RW`.
    ReadWrite,
    /// `RDONLY`: a base disk shared by linked clones.
    ReadOnly,
    /// `NOACCESS`: the data is not available.
    NoAccess,
}

/// What an extent line's type says the extent file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentType {
    /// `FLAT`: the guest bytes as they are, from a sector offset of the file.
    Flat,
    /// `SPARSE`: a hosted sparse extent (`KDMV` header, grain directory).
    Sparse,
    /// `ZERO`: no file; reads as zeros.
    Zero,
    /// `VMFS`: ESXi's flat extent, the `-flat.vmdk` beside a `createType="vmfs"` descriptor.
    Vmfs,
    /// `VMFSSPARSE`: ESXi's `COWD` snapshot extent.
    VmfsSparse,
    /// `SESPARSE`: ESXi 6.5+'s space-efficient snapshot extent.
    SeSparse,
    /// `VMFSRDM`: a raw device mapping.
    VmfsRdm,
    /// `VMFSRAW`: a raw device.
    VmfsRaw,
}

impl ExtentType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FLAT" => ExtentType::Flat,
            "SPARSE" => ExtentType::Sparse,
            "ZERO" => ExtentType::Zero,
            "VMFS" => ExtentType::Vmfs,
            "VMFSSPARSE" => ExtentType::VmfsSparse,
            "SESPARSE" => ExtentType::SeSparse,
            "VMFSRDM" => ExtentType::VmfsRdm,
            "VMFSRAW" => ExtentType::VmfsRaw,
            _ => return None,
        })
    }
}

/// One line of the extent description: `ACCESS SECTORS TYPE ["FILENAME" [OFFSET]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// The access mode.
    pub access: Access,
    /// Guest sectors the extent covers.
    pub sectors: u64,
    /// The extent's kind.
    pub kind: ExtentType,
    /// The extent file, relative to the descriptor; empty for `ZERO`.
    pub file: String,
    /// Sector of the file where a flat extent's data starts.
    pub offset: u64,
}

/// The facts of a descriptor a reader needs; `ddb.*` entries other than encryption markers are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `CID`: the content id.
    pub cid: u32,
    /// `parentCID`: the parent's content id when this disk was made, `ffffffff` without a parent.
    pub parent_cid: u32,
    /// `createType`, e.g. `monolithicSparse`, `streamOptimized`, `vmfs`.
    pub create_type: String,
    /// `parentFileNameHint`: the parent of a delta disk, relative to this descriptor.
    pub parent_hint: Option<String>,
    /// The extents in guest order.
    pub extents: Vec<ExtentLine>,
}

/// `parentCID` of a disk without a parent.
pub const NO_PARENT: u32 = 0xFFFF_FFFF;

/// Parses descriptor text (embedded, NUL-padded, or a whole descriptor file).
///
/// The grammar is the technote's: `#` comments, `key=value` lines (spaces around `=` allowed, values
/// optionally quoted), and extent lines. Anything else is refused, so that a file that merely starts like a
/// descriptor is not taken for one.
///
/// # Errors
/// `Corrupt` for text that is not UTF-8, lines that are neither, bad numbers, and a missing `createType` or
/// extent; `Unsupported` for encrypted disks and descriptor versions above 3.
pub fn parse(bytes: &[u8]) -> Result<Descriptor> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = decode(&bytes[..end])?;
    let mut d = Descriptor {
        cid: 0,
        parent_cid: NO_PARENT,
        create_type: String::new(),
        parent_hint: None,
        extents: Vec::new(),
    };
    for (number, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| Error::corrupt(format!("Descriptor line {}: {what}: {:.80}", number + 1, line));
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(bad("control character"));
        }
        if let Some(extent) = parse_extent(line).map_err(bad)? {
            d.extents.push(extent);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("not a key=value or extent line"));
        };
        let key = key.trim();
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(bad("not a key=value or extent line"));
        }
        // VMware's encrypted disks carry `encryption.keySafe` and `encryption.data` in the descriptor.
        if key.to_ascii_lowercase().starts_with("encryption.") {
            return Err(Error::unsupported(format!("Encrypted VMDKs are not supported ({key})")));
        }
        let hex = |v: &str| u32::from_str_radix(v, 16).map_err(|_| bad("not a 32-bit hex content id"));
        match key {
            "version" => match value.parse::<u32>() {
                Ok(1..=3) => {}
                Ok(n) => {
                    return Err(Error::unsupported(format!("VMDK descriptor version {n} is not supported")));
                }
                Err(_) => return Err(bad("not a version number")),
            },
            "CID" => d.cid = hex(value)?,
            "parentCID" => d.parent_cid = hex(value)?,
            "createType" => d.create_type = value.to_string(),
            "parentFileNameHint" if !value.is_empty() => d.parent_hint = Some(value.to_string()),
            _ => {}
        }
    }
    if d.create_type.is_empty() {
        return Err(Error::corrupt("The descriptor has no createType"));
    }
    if d.extents.is_empty() {
        return Err(Error::corrupt("The descriptor lists no extent"));
    }
    Ok(d)
}

/// The descriptor as text: UTF-8, or the Windows code page older VMware Workstations wrote on Windows
/// (`encoding="windows-1252"`), whose file names become the UTF-8 names they have once copied off Windows.
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>> {
    let err = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text.into()),
        Err(e) => e,
    };
    // The key and its value are ASCII in every encoding VMware uses, so they can be found in the raw bytes.
    let encoding = bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| line.trim_ascii().strip_prefix(b"encoding"))
        .filter_map(|rest| rest.trim_ascii().strip_prefix(b"="))
        .map(|value| String::from_utf8_lossy(value.trim_ascii()).trim_matches('"').to_ascii_lowercase())
        .next();
    match encoding.as_deref() {
        Some("windows-1252" | "iso-8859-1" | "latin1") => Ok(bytes.iter().map(|&b| windows_1252(b)).collect()),
        Some(other) => Err(Error::unsupported(format!("VMDK descriptors in encoding '{other}' are not supported"))),
        None => Err(Error::corrupt(format!("The descriptor is not UTF-8 text (byte {} of it)", err.valid_up_to()))),
    }
}

/// A windows-1252 byte as a character: Latin-1 but for 0x80..0xA0, where Windows puts punctuation and a few
/// letters (the five bytes it leaves undefined are kept as the C1 controls Latin-1 has there).
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
    ];
    match b {
        0x80..0xA0 => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// An extent line, `None` for a line that does not start with an access mode, or what is wrong with it.
fn parse_extent(line: &str) -> std::result::Result<Option<ExtentLine>, &'static str> {
    let (first, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let access = match first {
        "RW" => Access::ReadWrite,
        "RDONLY" => Access::ReadOnly,
        "NOACCESS" => Access::NoAccess,
        _ => return Ok(None),
    };
    let rest = rest.trim_start();
    let (sectors, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let sectors = sectors.parse::<u64>().map_err(|_| "bad extent size")?;
    let rest = rest.trim_start();
    let (kind, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let kind = ExtentType::from_name(kind).ok_or("unknown extent type")?;
    let rest = rest.trim_start();
    let (file, rest) = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').ok_or("unterminated file name")?,
        None if kind == ExtentType::Zero && rest.is_empty() => ("", ""),
        None => return Err("missing quoted file name"),
    };
    let rest = rest.trim();
    let offset = if rest.is_empty() { 0 } else { rest.parse::<u64>().map_err(|_| "bad extent offset")? };
    Ok(Some(ExtentLine { access, sectors, kind, file: file.to_string(), offset }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptionList;

    fn opts(list: &str) -> VmdkOptions {
        VmdkOptions::from_options(&mut OptionList::parse(list).unwrap()).unwrap()
    }

    const IDS: ContentIds = ContentIds { cid: 0x26da83af, long_prefix: [0x50389051, 0xfad884a0, 0xe03c1f58] };

    #[test]
    fn default_text_is_vmdk_converts_with_the_real_name() {
        // vmdk-convert's output for a 64 KiB disk (FORMATS.md §2.4.2), with our extent name; like it, no
        // newline after the last line. toolsInstallType 4 = unmanaged (open-vm-tools).
        let expected = "# Disk DescriptorFile
version=1
encoding=\"UTF-8\"
CID=26da83af
parentCID=ffffffff
createType=\"streamOptimized\"

# Extent description
RW 128 SPARSE \"disk-0.vmdk\"

# The Disk Data Base
#DDB

ddb.longContentID = \"50389051fad884a0e03c1f5826da83af\"
ddb.virtualHWVersion = \"4\"
ddb.geometry.cylinders = \"1\"
ddb.geometry.heads = \"255\"
ddb.geometry.sectors = \"63\"
ddb.adapterType = \"lsilogic\"
ddb.toolsInstallType = \"4\"
ddb.toolsVersion = \"2147483647\"";
        assert_eq!(text(128, "disk-0.vmdk", &opts(""), &IDS).unwrap(), expected);
    }

    #[test]
    fn options_reach_the_text() {
        let t = text(2 << 21, "x.vmdk", &opts("adapter_type=ide,compat6,toolsversion=12345"), &IDS).unwrap();
        assert!(t.contains("ddb.virtualHWVersion = \"6\"\n"));
        assert!(t.contains("ddb.geometry.cylinders = \"4162\"\n"), "ceil(4194304 / (16 * 63))");
        assert!(t.contains("ddb.geometry.heads = \"16\"\n"));
        assert!(t.contains("ddb.adapterType = \"ide\"\n"));
        assert!(t.ends_with("ddb.toolsVersion = \"12345\""));
        let t = text(128, "x.vmdk", &opts("hwversion=11,adapter_type=legacyESX"), &IDS).unwrap();
        assert!(t.contains("ddb.virtualHWVersion = \"11\"\n"));
        assert!(t.contains("ddb.adapterType = \"legacyESX\"\n"));
    }

    #[test]
    fn cylinders_are_at_least_one_and_capped() {
        assert_eq!(cylinders(1, AdapterType::LsiLogic), 1);
        assert_eq!(cylinders(255 * 63, AdapterType::BusLogic), 1);
        assert_eq!(cylinders(255 * 63 + 1, AdapterType::BusLogic), 2);
        assert_eq!(cylinders(1 << 40, AdapterType::LsiLogic), 65535);
        assert_eq!(cylinders(1 << 40, AdapterType::Ide), 16383);
    }

    #[test]
    fn names_that_would_break_the_quoting_are_refused() {
        assert!(text(128, "a\"b.vmdk", &opts(""), &IDS).is_err());
        assert!(text(128, "a\nb.vmdk", &opts(""), &IDS).is_err());
        assert!(text(128, "disque équipé.vmdk", &opts(""), &IDS).is_ok());
    }

    #[test]
    fn ids_follow_the_seed_and_avoid_reserved_cids() {
        assert_eq!(ContentIds::from_seed(7), ContentIds::from_seed(7));
        assert_ne!(ContentIds::from_seed(7), ContentIds::from_seed(8));
        for seed in 0..1000 {
            assert!(ContentIds::from_seed(seed).cid < 0xFFFF_FFFE);
        }
    }

    /// qemu-img 10's descriptor for a monolithicSparse overlay (FORMATS.md §2.4.1), CID not zero-padded.
    const QEMU_OVERLAY: &str = "# Disk DescriptorFile
version=1
CID=465a4b7c
parentCID=1f2e3d
createType=\"monolithicSparse\"
parentFileNameHint=\"base.vmdk\"

# Extent description
RW 2048 SPARSE \"overlay.vmdk\"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = \"4\"
ddb.geometry.cylinders = \"0\"
ddb.geometry.heads = \"16\"
ddb.geometry.sectors = \"63\"
ddb.adapterType = \"ide\"
ddb.toolsVersion = \"2147483647\"
";

    /// What ESXi writes beside a thin `-flat.vmdk`.
    const ESXI_VMFS: &str = "# Disk DescriptorFile\r
version=1\r
encoding=\"UTF-8\"\r
CID=fffffffe\r
parentCID=ffffffff\r
isNativeSnapshot=\"no\"\r
createType=\"vmfs\"\r
\r
# Extent description\r
RW 16777216 VMFS \"web 01-flat.vmdk\"\r
\r
# The Disk Data Base\r
#DDB\r
\r
ddb.adapterType = \"lsilogic\"\r
ddb.longContentID = \"1c5f0f3e8b5e4f6e9d4b7d2bfffffffe\"\r
ddb.thinProvisioned = \"1\"\r
ddb.uuid = \"60 00 C2 9b 5d 8a 9e 6e-4f 17 1f 85 6b 3b 3e 0a\"\r
ddb.virtualHWVersion = \"13\"\r
";

    fn extent(access: Access, sectors: u64, kind: ExtentType, file: &str, offset: u64) -> ExtentLine {
        ExtentLine { access, sectors, kind, file: file.into(), offset }
    }

    #[test]
    fn parses_qemus_overlay() {
        let d = parse(QEMU_OVERLAY.as_bytes()).unwrap();
        assert_eq!((d.cid, d.parent_cid), (0x465a4b7c, 0x1f2e3d));
        assert_eq!(d.create_type, "monolithicSparse");
        assert_eq!(d.parent_hint.as_deref(), Some("base.vmdk"));
        assert_eq!(d.extents, [extent(Access::ReadWrite, 2048, ExtentType::Sparse, "overlay.vmdk", 0)]);
    }

    #[test]
    fn parses_our_own_text_nul_padded_as_embedded() {
        let mut bytes = text(128, "disk-0.vmdk", &opts(""), &IDS).unwrap().into_bytes();
        bytes.resize(20 * 512, 0);
        let d = parse(&bytes).unwrap();
        assert_eq!((d.cid, d.parent_cid, d.parent_hint), (0x26da83af, NO_PARENT, None));
        assert_eq!(d.create_type, "streamOptimized");
        assert_eq!(d.extents, [extent(Access::ReadWrite, 128, ExtentType::Sparse, "disk-0.vmdk", 0)]);
    }

    /// vmdk-convert's text (FORMATS.md §2.4.2) with `--sector-size 4096`: the extent literally named "disk",
    /// and no newline after the last line.
    const OPEN_VMDK: &str = "# Disk DescriptorFile
version=1
encoding=\"UTF-8\"
CID=26da83af
parentCID=ffffffff
createType=\"streamOptimized\"

# Extent description
RW 128 SPARSE \"disk\"

# The Disk Data Base
#DDB

ddb.longContentID = \"50389051fad884a0e03c1f5826da83af\"
ddb.virtualHWVersion = \"4\"
ddb.geometry.cylinders = \"1\"
ddb.geometry.heads = \"255\"
ddb.geometry.sectors = \"63\"
ddb.logicalSectorSize = \"4096\"
ddb.physicalSectorSize = \"4096\"
ddb.adapterType = \"lsilogic\"
ddb.toolsInstallType = \"4\"
ddb.toolsVersion = \"2147483647\"";

    #[test]
    fn parses_vmdk_converts_text() {
        let d = parse(OPEN_VMDK.as_bytes()).unwrap();
        assert_eq!((d.cid, d.parent_cid, d.create_type.as_str()), (0x26da83af, NO_PARENT, "streamOptimized"));
        assert_eq!(d.extents, [extent(Access::ReadWrite, 128, ExtentType::Sparse, "disk", 0)]);
    }

    #[test]
    fn parses_esxis_vmfs_descriptor_with_crlf_and_spaces_in_names() {
        let d = parse(ESXI_VMFS.as_bytes()).unwrap();
        assert_eq!((d.cid, d.create_type.as_str()), (0xfffffffe, "vmfs"));
        assert_eq!(d.extents, [extent(Access::ReadWrite, 16777216, ExtentType::Vmfs, "web 01-flat.vmdk", 0)]);
    }

    #[test]
    fn parses_every_extent_form() {
        let d = parse(
            b"createType=\"custom\"\n\
              RW 4192256 SPARSE \"a-s001.vmdk\"\n\
              RDONLY 100 FLAT \"a-f001.vmdk\" 7\n\
              NOACCESS 5 ZERO\n\
              RW\t9  FLAT\t\"x\"\t 3 \n\
              RW 1 VMFSSPARSE \"d-delta.vmdk\"\n\
              RW 1 SESPARSE \"d-sesparse.vmdk\"\n\
              RW 1 VMFSRDM \"d-rdm.vmdk\"\n\
              RW 1 VMFSRAW \"/dev/sda\"\n",
        )
        .unwrap();
        let kinds: Vec<ExtentType> = d.extents.iter().map(|e| e.kind).collect();
        use ExtentType::*;
        assert_eq!(kinds, [Sparse, Flat, Zero, Flat, VmfsSparse, SeSparse, VmfsRdm, VmfsRaw]);
        assert_eq!(d.extents[1], extent(Access::ReadOnly, 100, Flat, "a-f001.vmdk", 7));
        assert_eq!(d.extents[2], extent(Access::NoAccess, 5, Zero, "", 0));
        assert_eq!(d.extents[3], extent(Access::ReadWrite, 9, Flat, "x", 3));
    }

    #[test]
    fn windows_1252_descriptors_decode_to_the_names_files_get_off_windows() {
        let text =
            b"encoding=\"windows-1252\"\r\ncreateType=\"monolithicSparse\"\r\nRW 8 SPARSE \"Caf\xe9 \x80\x9f.vmdk\"";
        assert_eq!(parse(text).unwrap().extents[0].file, "Café €Ÿ.vmdk");
    }

    #[test]
    fn garbage_is_refused_with_the_line() {
        use crate::error::ErrorKind::*;
        let fail = |t: &[u8]| {
            let e = parse(t).unwrap_err();
            (e.kind(), e.message().to_string())
        };
        let (kind, msg) = fail(b"createType=\"x\"\nRW 1 SPARSE \"a\"\nhello world\n");
        assert_eq!(kind, Corrupt);
        assert!(msg.starts_with("Descriptor line 3: not a key=value or extent line: hello world"), "{msg}");
        assert!(fail(b"createType=\"x\"\nRW x SPARSE \"a\"").1.contains("bad extent size"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE a").1.contains("missing quoted"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"a").1.contains("unterminated"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"a\" 1 2").1.contains("bad extent offset"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSY \"a\"").1.contains("unknown extent type"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"a\"\nCID=xyz").1.contains("hex content id"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"a\"\nCID=1ffffffff").1.contains("hex content id"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"a\x01\"").1.contains("control"));
        assert!(fail(b"RW 1 SPARSE \"a\"").1.contains("createType"));
        assert!(fail(b"# Disk DescriptorFile\ncreateType=\"x\"\n").1.contains("no extent"));
        assert!(fail(b"createType=\"x\"\nRW 1 SPARSE \"\xff\"").1.contains("UTF-8"));
        assert_eq!(fail(b"encoding=\"Shift_JIS\"\ncreateType=\"x\"\nRW 1 SPARSE \"\x83\x66\"").0, Unsupported);
        assert_eq!(fail(b"version=4\ncreateType=\"x\"\nRW 1 ZERO").0, Unsupported);
        let (kind, msg) = fail(b"createType=\"x\"\nRW 1 SPARSE \"a\"\nencryption.keySafe = \"vmware:key\"");
        assert_eq!(kind, Unsupported);
        assert!(msg.contains("Encrypted"), "{msg}");
    }
}
