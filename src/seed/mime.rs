//! Joining a user's own user-data with the `#cloud-config` diskbridge writes, as a `multipart/mixed` message
//! that cloud-init takes apart itself (`cloudinit/user_data.py`): the user's part first, exactly as given, then
//! ours with a `Merge-Type` header. The user's file is never parsed and rewritten, so its comments, anchors and
//! kind (a script, a MIME message of its own) all survive, and cloud-init's own merging decides the result.

use super::user_data::{Kind, UserData};
use crate::random::Random;
use base64ct::{Base64, Encoding};

/// How our part merges into what the user's parts set (cloud-init `mergers`): a key the user already set keeps
/// the user's value (`no_replace`), lists under the same key are joined (`recurse_array`, `list(append)`), so
/// both sets of `ssh_authorized_keys` end up on the guest.
pub const MERGE_TYPE: &str = "dict(recurse_array,no_replace)+list(append)";

/// Base64 characters per line (RFC 2045 6.8 allows at most 76).
const BASE64_LINE: usize = 76;

/// The message: `user`'s part, then `config` (a `#cloud-config` in ASCII). The boundary is drawn from `random`
/// until it appears nowhere in the user's data.
pub fn merge(user: &UserData<'_>, config: &str, random: &mut Random) -> String {
    let boundary = loop {
        let b = format!("diskbridge-{:016x}", random.next_u64());
        if !user.text.contains(&b) {
            break b;
        }
    };
    let mut out = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    out += &format!("--{boundary}\n");
    match user.kind.content_type() {
        // A message of its own is nested whole: its headers become the part's, its parts stay its parts.
        None => out += user.text,
        // Base64 carries any text byte for byte, where an 8-bit part would not: Python's email package hands its
        // non-ASCII characters back re-encoded (raw-unicode-escape), which cloud-init then misreads as UTF-8
        // ("é" arrives as U+FFFD). And no base64 line can be taken for our boundary.
        Some(content_type) => {
            out += &format!(
                "Content-Type: {content_type}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
                 Content-Transfer-Encoding: base64\n\n"
            );
            let encoded = Base64::encode_string(user.text.as_bytes());
            for line in encoded.as_bytes().chunks(BASE64_LINE) {
                out += std::str::from_utf8(line).unwrap_or_default();
                out.push('\n');
            }
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out += &format!(
        "--{boundary}\nContent-Type: {}; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: 7bit\nMerge-Type: {MERGE_TYPE}\n\n{config}--{boundary}--\n",
        Kind::CloudConfig.content_type().unwrap_or_default()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::user_data::inspect;

    #[test]
    fn wraps_a_script_in_base64_and_appends_our_part() {
        let user = inspect("#!/bin/sh\necho héllo\n".as_bytes()).unwrap();
        let message = merge(&user, "#cloud-config\nhostname: \"a\"\n", &mut Random::new(1));
        let boundary = message.split('"').nth(1).unwrap().to_string();
        assert!(message.starts_with("Content-Type: multipart/mixed; boundary=\"diskbridge-"));
        assert!(message.contains("Content-Type: text/x-shellscript; charset=\"utf-8\""));
        assert!(message.contains(&Base64::encode_string("#!/bin/sh\necho héllo\n".as_bytes())));
        assert!(
            message.contains(&format!("Merge-Type: {MERGE_TYPE}\n\n#cloud-config\nhostname: \"a\"\n--{boundary}--\n"))
        );
        assert!(message.is_ascii());
        assert_eq!(message, merge(&user, "#cloud-config\nhostname: \"a\"\n", &mut Random::new(1)));
        // The result is itself user-data this module accepts.
        assert_eq!(inspect(message.as_bytes()).unwrap().kind, Kind::Mime);
    }

    #[test]
    fn nests_a_mime_message_whole_and_never_reuses_its_boundary() {
        let taken = format!("diskbridge-{:016x}", Random::new(5).next_u64());
        let text = format!(
            "Content-Type: multipart/mixed; boundary=\"{taken}\"\nMIME-Version: 1.0\n\n--{taken}\n\
             Content-Type: text/x-shellscript\n\n#!/bin/sh\n--{taken}--"
        );
        let user = inspect(text.as_bytes()).unwrap();
        let message = merge(&user, "#cloud-config\n", &mut Random::new(5));
        assert!(message.contains(&text));
        let ours = message.split('"').nth(1).unwrap();
        assert_ne!(ours, taken);
        assert!(message.contains(&format!("--{taken}--\n--{ours}\n")));
    }
}
