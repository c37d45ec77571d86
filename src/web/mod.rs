//! The core for the browser: a [`BlobReader`] over a picked `File`, a [`PickedFiles`] resolver for backing files,
//! a [`ChunkSink`] whose writes the worker drains to the picker's writable, a stream, OPFS or memory, and what the
//! page's workers call ([`inspect`], [`Job`], [`Encoder`], [`compare`]). Built only for wasm32.
//!
//! Everything here runs inside a dedicated worker: `FileReaderSync` exists nowhere else, and a synchronous wasm
//! call must not block the page. Errors cross to JS as plain objects `{kind, message, offset, file}` (see
//! [`js_error`]), never as strings.

mod bindings;
mod blob;
mod job;
mod protocol;
mod sink;
#[cfg(test)]
mod tests;

pub use bindings::{compare, inspect};
pub use blob::{BlobReader, PickedFiles};
pub use job::{Encoder, Job};
pub use protocol::js_error;
pub use sink::ChunkSink;
