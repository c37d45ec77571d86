//! Host names as RFC 1123 (2.1) allows them: dot-separated labels of letters, digits and hyphens, each 1 to 63
//! characters, not starting or ending with a hyphen, 253 characters in all.

use crate::error::{Error, Result};

/// The longest host name (RFC 1035's 255-byte wire form less its length and terminator bytes).
const MAX_LEN: usize = 253;
/// The longest label.
const MAX_LABEL: usize = 63;

/// Checks that `name` is a host name.
///
/// # Errors
/// `InvalidArgument`, saying what is wrong with it.
pub fn check(name: &str) -> Result<()> {
    let bad = |why: String| Err(Error::argument(format!("'{name}' is not a valid host name: {why}")));
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_LEN {
        return bad(format!("it is {} characters long, the most is {MAX_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return bad(format!("{c:?} is not allowed (letters, digits, '-' and '.' are)"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("it has an empty label (a leading, trailing or double '.')".into());
        }
        if label.len() > MAX_LABEL {
            return bad(format!("the label '{label}' is {} characters long, the most is {MAX_LABEL}", label.len()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("the label '{label}' starts or ends with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc_1123_names_and_says_what_is_wrong_with_others() {
        for good in ["web", "web-01.example.com", "1host", &"a".repeat(63), &vec!["a".repeat(63); 4].join(".")[..251]] {
            check(good).unwrap();
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("a_b", "'_' is not allowed"),
            ("web.", "empty label"),
            ("a..b", "empty label"),
            ("-web", "starts or ends with '-'"),
            ("wéb", "'é' is not allowed"),
            ("web name", "' ' is not allowed"),
            ("x\"y: z", "'\"' is not allowed"),
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(e.message().contains(why), "{bad}: {e}");
        }
        assert!(check(&"a".repeat(64)).unwrap_err().message().contains("64 characters long, the most is 63"));
        assert!(check(&vec!["a".repeat(63); 5].join(".")).unwrap_err().message().contains("the most is 253"));
    }
}
