//! The core for the browser: a [`BlobReader`] over a picked `File`, a [`PickedFiles`] resolver for backing files,
//! a [`ChunkSink`] whose writes the worker drains to the picker's writable, OPFS or memory, and the bindings the
//! page's workers call ([`inspect`], [`Job`], [`Encoder`]). Built only for wasm32.
//!
//! Everything here runs inside a dedicated worker: `FileReaderSync` exists nowhere else, and a synchronous wasm
//! call must not block the page. Errors cross to JS as plain objects `{kind, message, offset, file}` (see
//! [`js_error`]), never as strings.

mod bindings;
mod blob;
mod sink;

pub use bindings::{Encoder, Job, inspect, js_error};
pub use blob::{BlobReader, PickedFiles};
pub use sink::ChunkSink;
