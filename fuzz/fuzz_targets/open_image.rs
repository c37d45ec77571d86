//! Opening any bytes as an image (format probed) and walking its whole guest map must end in a value or an
//! error — never a panic, a hang or a giant allocation.
#![no_main]

use diskbridge::chain::NoFiles;
use diskbridge::image::Extents;
use diskbridge::open::open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut image) = open("fuzz.img", Box::new(data.to_vec()), None, &NoFiles) else { return };
    // Crafted maps can hold millions of extents; a bounded walk still reaches every metadata path.
    for extent in Extents::all(image.as_mut()).take(100_000) {
        if extent.is_err() {
            break;
        }
    }
    let _ = diskbridge::guest::inspect(image.as_mut());
});
