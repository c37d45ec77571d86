//! diskbridge: convert disk images between hypervisors' formats, streaming, in bounded memory — the same core
//! for the native CLI and for WebAssembly in a browser tab.
//!
//! The modules form layers; each imports only from the layers below it (`tests/layers.rs` checks this):
//!
//! 1. **Vocabulary** — [`error`], [`io`] (positioned reads and writes; the core never opens files itself),
//!    [`options`], [`random`], [`extent`], [`image`] (an opened input as a guest map plus guest reads),
//!    [`chain`] (the files an image names: backing files, parents, extents), [`writer`] (what an output format's
//!    writer is to the pipeline), [`report`] (what a check found).
//! 2. **Shared pieces** — [`tar`], [`guest`] (the guest's partition table and boot method), [`bitmap`] (one bit per
//!    block), [`sparse`] (outputs with holes).
//! 3. **Formats**, one folder each, knowing nothing of one another — [`qcow2`], [`vmdk`], [`vhdx`], [`vpc`],
//!    [`raw`], [`ova`].
//! 4. **Registry** — [`formats`] (the table of formats: names, probing, opening, writing, checking) and
//!    [`open`] (opening an image and its chain through that table).
//! 5. **Operations** — [`convert`] (the pipeline, in phases, on all cores), [`target`] (what to write),
//!    [`check`], [`compare`], [`seed`] (a NoCloud seed disk giving a cloud image its first login).
//! 6. **Shims** — [`native`] for the CLI (not on wasm32) and `web` for the page's workers (wasm32 only).
#![deny(missing_docs)]

pub mod bitmap;
pub mod chain;
pub mod check;
pub mod compare;
pub mod convert;
pub mod error;
pub mod extent;
pub mod formats;
pub mod guest;
pub mod image;
pub mod io;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod open;
pub mod options;
pub mod ova;
pub mod qcow2;
pub mod random;
pub mod raw;
pub mod report;
pub mod seed;
pub mod sparse;
pub mod tar;
pub mod target;
pub mod vhdx;
pub mod vmdk;
pub mod vpc;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod writer;

pub use error::{Error, ErrorKind, Result};
