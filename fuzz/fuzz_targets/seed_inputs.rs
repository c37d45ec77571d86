//! Any bytes as a seed's SSH key file, user-data and password, then built into a seed disk: each must end in
//! a value or one error — never a panic, a hang or a giant allocation.
#![no_main]

use diskbridge::seed::{Contents, SeedConfig, ssh_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = ssh_key::keys_in(data).unwrap_or_default();
    let config = SeedConfig {
        hostname: Some("fuzz".into()),
        ssh_keys: keys,
        password: std::str::from_utf8(data).ok().map(|p| p.chars().take(600).collect()),
        user_data: Some(data.to_vec()),
    };
    if let Ok(contents) = Contents::new(&config, 1) {
        let _ = contents.disk(0);
    }
});
