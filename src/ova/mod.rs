//! OVF packages: writing an OVA / OVF around a streamOptimized VMDK for ESXi, and reading the disks of an
//! OVA in place (no unpacking).

mod reader;
mod writer;

pub use reader::{Member, Package, open_disk};
pub use writer::{Layout, Names, PackageWriter};
