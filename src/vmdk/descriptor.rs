//! The embedded descriptor (VMDK 5.0 technote pp. 3–5; FORMATS.md §2.4.2): the text at sector 1, in the
//! form open-vmdk's `vmdk-convert` writes, since that is what the project's ESXi imports.
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
}
