//! Any bytes as an OVA: listing its tar members, reading its OVF descriptor, and opening its first disk in place
//! must end in a value or one error.
#![no_main]

use diskbridge::chain::NoFiles;
use diskbridge::formats::Format;
use diskbridge::image::Extents;
use diskbridge::open::open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diskbridge::ova::Package::read(&data.to_vec());
    let ova = Format::from_name("ova").ok();
    if let Ok(mut image) = open("fuzz.ova", Box::new(data.to_vec()), ova, &NoFiles) {
        for extent in Extents::all(image.as_mut()).take(10_000) {
            if extent.is_err() {
                break;
            }
        }
    }
});
