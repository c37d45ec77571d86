//! Any text as a VMDK descriptor: parsing it, and opening it as a descriptor file whose extents are nowhere to
//! be found, must end in a value or one error.
#![no_main]

use diskbridge::chain::NoFiles;
use diskbridge::formats::Format;
use diskbridge::open::open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diskbridge::vmdk::descriptor::parse(data);
    let vmdk = Format::from_name("vmdk").ok();
    let _ = open("fuzz.vmdk", Box::new(data.to_vec()), vmdk, &NoFiles);
});
