//! NoCloud seed disks: a small disk that makes a cloud image's first boot create a login. cloud-init's NoCloud
//! datasource looks for a file system labelled `CIDATA` and reads `meta-data` and `user-data` from it; this
//! module builds that disk from a host name, SSH public keys, a password and the user's own user-data.
//!
//! - [`ssh_key`], [`hostname`], [`password`], [`user_data`]: each input checked, with one clear error.
//! - [`cloud_config`]: the `meta-data` and `#cloud-config` written; [`mime`]: joined with the user's own
//!   user-data when both are given.
//! - [`fat`]: the FAT12 volume holding them.
//!
//! Every random value (instance id, volume serial, password salt, MIME boundary) is drawn from the caller's
//! seed and every timestamp is the caller's epoch, so the CLI and the page write the same bytes.

pub mod cloud_config;
pub mod fat;
pub mod hostname;
pub mod mime;
pub mod password;
pub mod ssh_key;
pub mod user_data;
pub mod yaml;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::random::Random;
use crate::raw::RawImage;
use crate::writer::SeedDisk;
use std::sync::Arc;

/// The label NoCloud looks for (it tries `CIDATA` and `cidata`; mkfs.fat and Windows store labels upper case).
pub const LABEL: &str = "CIDATA";

/// What the user asked the first boot to set up. At least one field must be given.
#[derive(Debug, Clone, Default)]
pub struct SeedConfig {
    /// The guest's host name.
    pub hostname: Option<String>,
    /// SSH public keys for the default user, one OpenSSH line each ([`ssh_key::keys_in`] reads them from a
    /// file or a paste).
    pub ssh_keys: Vec<String>,
    /// The default user's password, in plain text; only its hash is written.
    pub password: Option<String>,
    /// The user's own user-data, used as given.
    pub user_data: Option<Vec<u8>>,
}

impl SeedConfig {
    /// Whether nothing at all was asked for.
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.ssh_keys.is_empty() && self.password.is_none() && self.user_data.is_none()
    }
}

/// The checked contents of a seed disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The FAT volume serial number.
    pub volume_serial: u32,
    /// NoCloud `meta-data`.
    pub meta_data: String,
    /// `user-data`: the generated `#cloud-config`, the user's file as given, or both in one MIME message.
    pub user_data: Vec<u8>,
}

impl Contents {
    /// Checks `config` and writes the files, with every random value drawn from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty config, a bad host name, key, password or user-data (each saying what is
    /// wrong), or a setting given both in the user's `#cloud-config` and as a field; `LimitExceeded` for
    /// user-data over [`user_data::MAX_LEN`].
    pub fn new(config: &SeedConfig, seed: u64) -> Result<Contents> {
        if config.is_empty() {
            return Err(Error::argument("A seed needs a host name, an SSH key, a password or user data"));
        }
        let mut random = Random::new(seed);
        let volume_serial = random.next_u32();
        let instance_id = format!("iid-{:016x}", random.next_u64());
        let hostname = config.hostname.as_deref();
        if let Some(name) = hostname {
            hostname::check(name)?;
        }
        let ssh_keys = config.ssh_keys.iter().map(|k| ssh_key::key_line(k)).collect::<Result<Vec<_>>>()?;
        let password_hash = match &config.password {
            Some(password) => {
                let mut salt = [0u8; password::SALT_LEN];
                for chunk in salt.chunks_mut(8) {
                    chunk.copy_from_slice(&random.next_u64().to_le_bytes()[..chunk.len()]);
                }
                Some(password::hash(password, &salt)?)
            }
            None => None,
        };
        let login = cloud_config::Login { hostname, ssh_keys: &ssh_keys, password_hash: password_hash.as_deref() };
        let has_login = hostname.is_some() || !ssh_keys.is_empty() || password_hash.is_some();
        let user_data = match &config.user_data {
            None => cloud_config::cloud_config(&login).into_bytes(),
            Some(bytes) => {
                let given = user_data::inspect(bytes)?;
                if !has_login {
                    bytes.clone()
                } else {
                    refuse_conflicts(&given, config)?;
                    mime::merge(&given, &cloud_config::cloud_config(&login), &mut random).into_bytes()
                }
            }
        };
        Ok(Contents { volume_serial, meta_data: cloud_config::meta_data(&instance_id, hostname), user_data })
    }

    /// The seed disk: a [`fat::VOLUME_SIZE`] FAT12 volume labelled [`LABEL`], its files stamped with `epoch`.
    ///
    /// # Errors
    /// `LimitExceeded` when the files do not fit (only with very many keys).
    pub fn disk(&self, epoch: u64) -> Result<Vec<u8>> {
        fat::format(&fat::Volume {
            label: LABEL,
            serial: self.volume_serial,
            epoch,
            files: &[("meta-data", self.meta_data.as_bytes()), ("user-data", &self.user_data)],
        })
    }
}

/// A value the user's `#cloud-config` sets itself would win over the field (see [`mime::MERGE_TYPE`]), so the
/// field would be silently lost: refuse that instead.
fn refuse_conflicts(given: &user_data::UserData<'_>, config: &SeedConfig) -> Result<()> {
    let (hostname, password) = (config.hostname.is_some(), config.password.is_some());
    for (key, asked) in [("hostname", hostname), ("fqdn", hostname), ("password", password)] {
        if asked && given.keys.iter().any(|k| k == key) {
            return Err(Error::argument(format!(
                "The user data sets '{key}' itself; give that setting there or as an option, not both"
            )));
        }
    }
    Ok(())
}

/// The seed disk as an image any writer takes (it is at most a few MiB, so it is held in memory).
///
/// # Errors
/// As [`Contents::new`] and [`Contents::disk`].
pub fn image(config: &SeedConfig, seed: u64, epoch: u64) -> Result<Box<dyn Image>> {
    let disk = Contents::new(config, seed)?.disk(epoch)?;
    Ok(Box::new(RawImage::new(Box::new(disk))))
}

/// The seed disk as a package (OVA, OVF) carries it beside the converted disk.
///
/// # Errors
/// As [`Contents::new`] and [`Contents::disk`].
pub fn for_package(config: &SeedConfig, seed: u64, epoch: u64) -> Result<SeedDisk> {
    let disk = Contents::new(config, seed)?.disk(epoch)?;
    Ok(SeedDisk { bytes: Arc::new(disk), container_seed: container_seed(seed) })
}

/// The seed for the seed disk's container (VHDX GUIDs, VMDK CID), apart from the one its contents and the
/// converted disk use: with one `DISKBRIDGE_SEED` for both, two disks of one VM must still not share a disk
/// GUID.
pub fn container_seed(seed: u64) -> u64 {
    // "CIDATA" in ASCII, to move to another stream of the generator.
    Random::new(seed ^ 0x4349_4441_5441).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(&[1; 32]);
        format!("ssh-ed25519 {} me@host", <base64ct::Base64 as base64ct::Encoding>::encode_string(&blob))
    }

    fn config() -> SeedConfig {
        SeedConfig {
            hostname: Some("web-1".into()),
            ssh_keys: vec![key()],
            password: Some("correct horse".into()),
            user_data: None,
        }
    }

    #[test]
    fn same_seed_same_disk_and_other_seeds_other_ids() {
        let a = Contents::new(&config(), 7).unwrap();
        assert_eq!(a, Contents::new(&config(), 7).unwrap());
        assert_eq!(a.disk(1_700_000_000).unwrap(), Contents::new(&config(), 7).unwrap().disk(1_700_000_000).unwrap());
        let b = Contents::new(&config(), 8).unwrap();
        assert_ne!(a.meta_data, b.meta_data);
        assert_ne!(a.volume_serial, b.volume_serial);
        assert!(a.meta_data.starts_with("instance-id: \"iid-") && a.meta_data.ends_with("local-hostname: \"web-1\"\n"));
        let text = String::from_utf8(a.user_data).unwrap();
        assert!(text.starts_with("#cloud-config\nhostname: \"web-1\"\n") && text.contains("password: \"$6$"));
        assert!(!text.contains("correct horse"));
        assert_ne!(container_seed(7), 7);
    }

    #[test]
    fn user_data_alone_is_written_as_given_and_with_fields_is_merged() {
        let script = b"#!/bin/sh\necho hi\n".to_vec();
        let alone = SeedConfig { user_data: Some(script.clone()), ..SeedConfig::default() };
        assert_eq!(Contents::new(&alone, 1).unwrap().user_data, script);
        let both = SeedConfig { user_data: Some(script), ..config() };
        let merged = String::from_utf8(Contents::new(&both, 1).unwrap().user_data).unwrap();
        assert!(merged.starts_with("Content-Type: multipart/mixed;") && merged.contains(mime::MERGE_TYPE));
    }

    #[test]
    fn each_bad_input_is_one_clear_error() {
        let cases = [
            (SeedConfig::default(), "A seed needs"),
            (SeedConfig { hostname: Some("a_b".into()), ..config() }, "not a valid host name"),
            (SeedConfig { ssh_keys: vec!["ssh-ed25519 AAAA".into()], ..config() }, "not a ssh-ed25519 key"),
            (SeedConfig { password: Some(String::new()), ..config() }, "The password is empty"),
            (SeedConfig { user_data: Some(b"hello".to_vec()), ..config() }, "none of the kinds"),
            (SeedConfig { user_data: Some(b"#cloud-config\nhostname: x\n".to_vec()), ..config() }, "sets 'hostname'"),
            (SeedConfig { user_data: Some(b"#cloud-config\npassword: x\n".to_vec()), ..config() }, "sets 'password'"),
        ];
        for (config, why) in cases {
            let e = Contents::new(&config, 1).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(e.message().contains(why), "{e}");
        }
        // Settings the options do not touch are the user's to give.
        let own = SeedConfig { user_data: Some(b"#cloud-config\nhostname: x\n".to_vec()), ..SeedConfig::default() };
        Contents::new(&SeedConfig { hostname: None, ..own.clone() }, 1).unwrap();
    }

    #[test]
    fn the_image_is_the_disk() {
        let mut image = image(&config(), 3, 0).unwrap();
        assert_eq!(image.virtual_size(), fat::VOLUME_SIZE as u64);
        let mut boot = [0u8; 512];
        image.read_at(0, &mut boot).unwrap();
        assert_eq!(&boot[0x2b..0x36], b"CIDATA     ");
        assert_eq!(&boot[0x1fe..], [0x55, 0xaa]);
    }
}
