//! The default user's password, checked and written as a SHA-512 crypt hash (`$6$`), so the password itself
//! never sits on the seed disk. cloud-init hands a value its pattern `$(1|2a|2y|5|6)$…$…` recognises to
//! `chpasswd -e` as a hash, from 22.x (Debian 12) to today; SHA-512 crypt is the hash every Linux C library
//! and PAM still verify.

use crate::error::{Error, Result};
use sha_crypt::{PasswordHasher, ShaCrypt};

/// The longest password taken: Linux-PAM's `PAM_MAX_RESP_SIZE`, 512 bytes, which is also all pam_unix's
/// checking helper (unix_chkpwd) reads, so a longer password would not always let the user in.
pub const MAX_LEN: usize = 512;

/// Bytes of salt; their crypt base64 form is 16 characters, the most SHA-crypt uses.
pub const SALT_LEN: usize = 12;

/// Checks that `password` can be typed at a login prompt.
///
/// # Errors
/// `InvalidArgument` when it is empty, too long, or holds a control character (which no prompt passes through).
pub fn check(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::argument("The password is empty"));
    }
    if password.len() > MAX_LEN {
        return Err(Error::argument(format!(
            "The password is {} bytes long; the most Linux logins take is {MAX_LEN}",
            password.len()
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::argument("The password holds a control character, which a login prompt cannot pass"));
    }
    Ok(())
}

/// Checks `password` ([`check`]) and returns its SHA-512 crypt hash with `salt` (5000 rounds, crypt's default).
///
/// # Errors
/// As [`check`].
pub fn hash(password: &str, salt: &[u8; SALT_LEN]) -> Result<String> {
    check(password)?;
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::argument(format!("Cannot hash the password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::PasswordVerifier;

    #[test]
    fn hashes_as_sha512_crypt_and_verifies() {
        let h = hash("pa$$: \"word\"", &[7; SALT_LEN]).unwrap();
        assert!(h.starts_with("$6$rounds=5000$"), "{h}");
        assert!(!h.contains(':') && !h.contains("word"));
        let parsed = sha_crypt::PasswordHash::new(&h).unwrap();
        ShaCrypt::SHA512.verify_password(b"pa$$: \"word\"", &parsed).unwrap();
        assert_eq!(h, hash("pa$$: \"word\"", &[7; SALT_LEN]).unwrap());
        assert_ne!(h, hash("pa$$: \"word\"", &[8; SALT_LEN]).unwrap());
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        assert_eq!(hash("", &[0; SALT_LEN]).unwrap_err().message(), "The password is empty");
        assert!(hash(&"x".repeat(513), &[0; SALT_LEN]).unwrap_err().message().contains("513 bytes"));
        assert!(hash("a\tb", &[0; SALT_LEN]).unwrap_err().message().contains("control character"));
        hash(&"x".repeat(512), &[0; SALT_LEN]).unwrap();
    }
}
