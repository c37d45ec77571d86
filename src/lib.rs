//! diskbridge: convert disk images between hypervisors' formats, streaming, in bounded memory — the same core
//! for the native CLI and for WebAssembly in a browser tab.
//!
//! The pieces:
//! - [`io`]: positioned reads ([`io::ReadAt`]) and writes ([`io::Sink`]); the core never opens files itself.
//! - [`image`]: an opened input ([`image::Image`]) as a guest map plus guest reads; probing and backing chains.
//! - [`convert`]: the pipeline from an image to an [`convert::ImageWriter`], encoding on all cores.
//! - [`check`]: qemu-img check's consistency check, for the formats that have one.
//! - one module per format: [`qcow2`], [`vmdk`], [`vhdx`], [`vpc`], [`raw`]; [`ova`] packages a VMDK with its
//!   [`ovf`] descriptor for ESXi.
//! - `web` (wasm32 only): the bindings the browser page's workers call.
#![deny(missing_docs)]

pub mod bitmap;
pub mod check;
pub mod compare;
pub mod convert;
pub mod error;
pub mod extent;
pub mod guest;
pub mod image;
pub mod io;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod options;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod random;
pub mod raw;
pub mod sparse;
pub mod tar;
pub mod target;
pub mod vhdx;
pub mod vmdk;
pub mod vpc;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, ErrorKind, Result};
