//! Reading guest data from any bytes opened as an image: every data extent's first and last cluster,
//! which drives L2 lookups, compressed-cluster decoding and backing fallbacks.
#![no_main]

use diskbridge::chain::NoFiles;
use diskbridge::extent::ExtentKind;
use diskbridge::image::Extents;
use diskbridge::open::open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut image) = open("fuzz.img", Box::new(data.to_vec()), None, &NoFiles) else { return };
    let extents: Vec<_> = Extents::all(image.as_mut()).take(64).filter_map(Result::ok).collect();
    let mut buf = vec![0u8; 64 << 10];
    for e in extents.into_iter().filter(|e| e.kind == ExtentKind::Data) {
        for offset in [e.offset, e.end().saturating_sub(buf.len() as u64).max(e.offset)] {
            let len = (e.end() - offset).min(buf.len() as u64) as usize;
            let _ = image.read_at(offset, &mut buf[..len]);
        }
    }
});
