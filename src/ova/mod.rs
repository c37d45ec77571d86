//! OVF packages: reading the disks of an OVA in place (no unpacking), and writing an OVA / OVF around a
//! streamOptimized VMDK for ESXi with its [`descriptor`] and manifest.

pub mod descriptor;
mod reader;
mod writer;

pub use descriptor::OPTIONS;
pub use reader::{Member, Package, disk_count, open, probe};
pub use writer::{Kind, Names, PackageWriter};
