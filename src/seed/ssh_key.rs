//! SSH public keys in OpenSSH's one-line form (`.pub` files, `authorized_keys`): `TYPE BASE64 [COMMENT]`, one
//! key a line. Each key's base64 blob must decode and name its own type, so a mangled paste is caught here and
//! not at the guest's login. A private key is refused outright: it must never reach a disk.

use crate::error::{Error, Result};
use base64ct::{Base64, Encoding};

/// The key types current OpenSSH accepts for user authentication (DSA is off by default since 7.0 and gone
/// since 9.8; certificates belong with `cert-authority`, not in a key list).
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The largest key file read: a 16384-bit RSA key's line is under 3 KiB, so this holds many keys.
pub const MAX_FILE_LEN: usize = 64 << 10;

/// The keys in `text` (a `.pub` file, several keys, or pasted lines), each as one normalised line. Blank lines
/// and `#` comments are skipped.
///
/// # Errors
/// `InvalidArgument` for a private key, an RFC 4716 public key, a line that is not a key, or no key at all;
/// `LimitExceeded` past [`MAX_FILE_LEN`].
pub fn keys_in(text: &[u8]) -> Result<Vec<String>> {
    if text.len() > MAX_FILE_LEN {
        return Err(Error::limit(format!("More than {} KiB is not an SSH public key file", MAX_FILE_LEN >> 10)));
    }
    let text = std::str::from_utf8(text).map_err(|_| Error::argument("Not an SSH public key: not UTF-8 text"))?;
    if text.contains("PRIVATE KEY-----") || text.starts_with("PuTTY-User-Key-File-") {
        return Err(Error::argument(
            "This is a private key; give its public key (the .pub file) — a private key never goes on the seed",
        ));
    }
    if text.contains("---- BEGIN SSH2 PUBLIC KEY ----") {
        return Err(Error::argument(
            "This is an RFC 4716 public key; convert it to OpenSSH's form with 'ssh-keygen -i -f FILE'",
        ));
    }
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(key_line(line).map_err(|e| Error::argument(format!("Line {}: {}", n + 1, e.message())))?);
    }
    if keys.is_empty() {
        return Err(Error::argument("No SSH public key in it"));
    }
    Ok(keys)
}

/// `line` as one key, its fields separated by single spaces.
///
/// # Errors
/// `InvalidArgument` saying why it is not an accepted OpenSSH public key.
pub fn key_line(line: &str) -> Result<String> {
    if line.contains(['\n', '\r']) {
        return Err(Error::argument("An SSH key is one line; give each key as its own"));
    }
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        return Err(Error::argument("Not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"));
    };
    if !TYPES.contains(&kind) {
        return Err(Error::argument(format!(
            "'{}' is not an SSH key type accepted here ({})",
            kind.chars().take(40).collect::<String>(),
            TYPES.join(", ")
        )));
    }
    let decoded =
        Base64::decode_vec(blob).map_err(|_| Error::argument(format!("The {kind} key's data is not base64")))?;
    // The blob starts with its own type as an SSH string: a 32-bit big-endian length, then the name.
    let named = decoded
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| decoded.get(4..)?.get(..len));
    if named != Some(kind.as_bytes()) {
        return Err(Error::argument(format!("The key's data is not a {kind} key")));
    }
    let comment = fields.collect::<Vec<_>>().join(" ");
    Ok(if comment.is_empty() { format!("{kind} {blob}") } else { format!("{kind} {blob} {comment}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically real key line of `kind` (the key material is filler).
    fn line(kind: &str, comment: &str) -> String {
        let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(kind.as_bytes());
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(&[0x5a; 32]);
        format!("{kind} {} {comment}", Base64::encode_string(&blob)).trim_end().to_string()
    }

    #[test]
    fn reads_several_keys_and_skips_comments() {
        let text = format!(
            "# mine\n{}\r\n\n{}\n  {}  \n",
            line("ssh-ed25519", "me@laptop"),
            line("ecdsa-sha2-nistp256", ""),
            line("sk-ssh-ed25519@openssh.com", "yubi  key")
        );
        let keys = keys_in(text.as_bytes()).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], line("ssh-ed25519", "me@laptop"));
        assert!(keys[2].ends_with(" yubi key"));
    }

    #[test]
    fn refuses_what_is_not_a_public_key() {
        let cases = [
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n", "private key"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", "private key"),
            ("PuTTY-User-Key-File-3: ssh-ed25519\n", "private key"),
            ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n", "RFC 4716"),
            ("", "No SSH public key"),
            ("# nothing\n", "No SSH public key"),
            ("hello world\n", "Line 1: 'hello' is not an SSH key type"),
            ("ssh-ed25519\n", "Line 1: Not an OpenSSH public key"),
            ("ssh-ed25519 !!!notbase64\n", "not base64"),
        ];
        for (text, why) in cases {
            let e = keys_in(text.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(e.message().contains(why), "{text:?}: {e}");
        }
        assert!(keys_in(b"\xff\n").unwrap_err().message().contains("not UTF-8"));
        let dss = line("ssh-dss", "old");
        assert!(keys_in(dss.as_bytes()).unwrap_err().message().contains("'ssh-dss' is not an SSH key type"));
        // An RSA blob labelled ed25519.
        let swapped = line("ssh-rsa", "").replacen("ssh-rsa", "ssh-ed25519", 1);
        assert!(key_line(&swapped).unwrap_err().message().contains("not a ssh-ed25519 key"));
        let two = format!("{}\n{}", line("ssh-ed25519", "a"), line("ssh-rsa", "b"));
        assert!(key_line(&two).unwrap_err().message().contains("one line"));
        // A length field pointing far past the blob.
        let huge = format!("ssh-rsa {}", Base64::encode_string(&[0xff, 0xff, 0xff, 0xff, b's']));
        assert!(key_line(&huge).unwrap_err().message().contains("not a ssh-rsa key"));
        assert_eq!(keys_in(&vec![b'#'; MAX_FILE_LEN + 1]).unwrap_err().kind(), crate::ErrorKind::LimitExceeded);
    }
}
