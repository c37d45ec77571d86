//! A user's own user-data file, recognised as cloud-init recognises it (`cloudinit/user_data.py`
//! `convert_string`, `cloudinit/handlers` `type_from_starts_with`) and checked where a mistake would otherwise
//! only show as a guest that boots without its configuration.

use super::yaml::{self, Top};
use crate::error::{Error, Result};

/// The largest user-data file taken. EC2 takes 16 KiB, which users meet by gzipping; cloud-init on a seed disk
/// has no such limit, so the limit here only has to refuse the wrong file (an image, an archive) while holding
/// any hand-written configuration with scripts and certificates in it, uncompressed.
pub const MAX_LEN: usize = 64 << 10;

/// How far into the data cloud-init looks for `MIME-Version:` to take it as a MIME message.
const MIME_PROBE: usize = 4096;

/// What kind of user-data a file is, by its first characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `#cloud-config`: a YAML mapping of module settings.
    CloudConfig,
    /// `#cloud-config-archive`: a YAML list of parts.
    CloudConfigArchive,
    /// `#cloud-config-jsonp`: a JSON patch over the cloud-config gathered so far.
    CloudConfigJsonp,
    /// `#!`: a script run once at first boot.
    Script,
    /// `#cloud-boothook`: a script run early at every boot.
    Boothook,
    /// `#include`: URLs to fetch user-data from.
    Include,
    /// `#include-once`: URLs fetched on the first boot only.
    IncludeOnce,
    /// `#part-handler`: Python code handling further parts.
    PartHandler,
    /// `## template: jinja`: a Jinja template of one of the other kinds.
    JinjaTemplate,
    /// A MIME message (it has `MIME-Version:` in its first 4 KiB).
    Mime,
}

/// Each kind's first characters, longest first as cloud-init tries them (case-insensitive, after leading
/// white space), with the content type cloud-init gives it.
const STARTS: &[(&str, Kind, &str)] = &[
    ("#cloud-config-archive", Kind::CloudConfigArchive, "text/cloud-config-archive"),
    ("#cloud-config-jsonp", Kind::CloudConfigJsonp, "text/cloud-config-jsonp"),
    ("## template: jinja", Kind::JinjaTemplate, "text/jinja2"),
    ("#cloud-boothook", Kind::Boothook, "text/cloud-boothook"),
    ("#include-once", Kind::IncludeOnce, "text/x-include-once-url"),
    ("#part-handler", Kind::PartHandler, "text/part-handler"),
    ("#cloud-config", Kind::CloudConfig, "text/cloud-config"),
    ("#include", Kind::Include, "text/x-include-url"),
    ("#!", Kind::Script, "text/x-shellscript"),
];

impl Kind {
    /// The MIME content type cloud-init handles this kind under; `None` for a MIME message, which has its own.
    pub fn content_type(self) -> Option<&'static str> {
        STARTS.iter().find(|(_, kind, _)| *kind == self).map(|(_, _, content_type)| *content_type)
    }
}

/// A checked user-data file.
#[derive(Debug, Clone)]
pub struct UserData<'a> {
    /// The file's text, as given.
    pub text: &'a str,
    /// What kind it is.
    pub kind: Kind,
    /// For `#cloud-config`, the top-level keys it sets.
    pub keys: Vec<String>,
}

/// Recognises and checks a user-data file.
///
/// # Errors
/// `LimitExceeded` past [`MAX_LEN`]; `InvalidArgument` for gzip, text that is not UTF-8, a start cloud-init
/// does not recognise, `#cloud-config` that is not one YAML mapping (archives and JSON patches: not a list), or
/// a MIME message without its content type or closing boundary.
pub fn inspect(bytes: &[u8]) -> Result<UserData<'_>> {
    if bytes.len() > MAX_LEN {
        return Err(Error::limit(format!("User data over {} KiB is refused as the wrong file", MAX_LEN >> 10)));
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::argument("User data is gzip-compressed; give it uncompressed (the seed disk has room)"));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::argument(format!("User data is not UTF-8 text (byte {} is not)", e.valid_up_to())))?;
    let head = &bytes[..bytes.len().min(MIME_PROBE)];
    if head.to_ascii_lowercase().windows(13).any(|w| w == b"mime-version:") && starts_with_header(text) {
        check_mime(text)?;
        return Ok(UserData { text, kind: Kind::Mime, keys: Vec::new() });
    }
    let start = text.trim_start().chars().take(32).collect::<String>().to_ascii_lowercase();
    let Some(&(_, kind, _)) = STARTS.iter().find(|(prefix, ..)| start.starts_with(prefix)) else {
        return Err(Error::argument(
            "User data is none of the kinds cloud-init runs: it must start with #cloud-config, #! (a script), \
             #cloud-boothook, #include, #part-handler, #cloud-config-archive, ## template: jinja, or be a MIME \
             multipart message",
        ));
    };
    let yaml = |what: &str| yaml::top_of(text).map_err(|e| Error::argument(format!("{what}: {}", e.message())));
    let keys = match kind {
        Kind::CloudConfig => match yaml("User data #cloud-config")? {
            Top::Mapping(keys) => keys,
            Top::Empty => return Err(Error::argument("User data has nothing after #cloud-config")),
            Top::Sequence | Top::Scalar => {
                return Err(Error::argument("User data #cloud-config is not a YAML mapping of 'key: value' lines"));
            }
        },
        Kind::CloudConfigArchive | Kind::CloudConfigJsonp => match yaml("User data")? {
            Top::Sequence => Vec::new(),
            _ => return Err(Error::argument("User data #cloud-config-archive or -jsonp is not a list")),
        },
        _ => Vec::new(),
    };
    Ok(UserData { text, kind, keys })
}

/// Whether the first line is a header field (`Name: value`), as a MIME message starts.
fn starts_with_header(text: &str) -> bool {
    let line = text.lines().next().unwrap_or("");
    line.split_once(':').is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()))
}

/// Checks that a MIME message declares its content type and, for a multipart one, closes its boundary.
fn check_mime(text: &str) -> Result<()> {
    let header_end = text.find("\n\n").or_else(|| text.find("\r\n\r\n"));
    let Some(header_end) = header_end else {
        return Err(Error::argument("User data starts as a MIME message but has no blank line after its headers"));
    };
    // Unfold continuation lines (RFC 5322 2.2.3) so a parameter on the next line is found too.
    let headers = text[..header_end].replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
    let Some(content_type) =
        headers.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-type")))
    else {
        return Err(Error::argument("User data is a MIME message without a Content-Type header"));
    };
    let content_type = content_type.1.trim();
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return Ok(());
    }
    let boundary = content_type.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    });
    match boundary {
        Some(b) if !b.is_empty() && text[header_end..].contains(&format!("--{b}--")) => Ok(()),
        Some(b) if !b.is_empty() => Err(Error::argument(format!(
            "User data is a MIME multipart message whose closing boundary '--{b}--' is missing (cut short?)"
        ))),
        _ => Err(Error::argument("User data is a MIME multipart message without a boundary parameter")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        inspect(text.as_bytes()).unwrap_err().message().to_string()
    }

    #[test]
    fn recognises_each_kind_as_cloud_init_does() {
        let cases = [
            ("#cloud-config\nruncmd: [ls]\n", Kind::CloudConfig),
            ("  #Cloud-Config\na: 1\n", Kind::CloudConfig),
            ("#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n", Kind::CloudConfigArchive),
            ("#cloud-config-jsonp\n[{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}]\n", Kind::CloudConfigJsonp),
            ("#!/bin/sh\necho hi\n", Kind::Script),
            ("#cloud-boothook\n#!/bin/sh\n", Kind::Boothook),
            ("#include\nhttps://example.com/ud\n", Kind::Include),
            ("#include-once\nhttps://example.com/ud\n", Kind::IncludeOnce),
            ("#part-handler\ndef list_types(): return []\n", Kind::PartHandler),
            ("## template: jinja\n#cloud-config\nhostname: {{ v1.instance_id }}\n", Kind::JinjaTemplate),
        ];
        for (text, kind) in cases {
            assert_eq!(inspect(text.as_bytes()).unwrap().kind, kind, "{text}");
        }
        let config = inspect(b"#cloud-config\nhostname: a\nusers: [default]\n").unwrap();
        assert_eq!(config.keys, ["hostname", "users"]);
        assert_eq!(Kind::Script.content_type(), Some("text/x-shellscript"));
        assert_eq!(Kind::Mime.content_type(), None);
    }

    #[test]
    fn mime_messages_are_checked_for_type_and_boundary() {
        let good = "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\n\
                    Content-Type: text/x-shellscript\n\n#!/bin/sh\n--XX--\n";
        assert_eq!(inspect(good.as_bytes()).unwrap().kind, Kind::Mime);
        let folded = good.replace("; boundary", ";\r\n boundary").replace('\n', "\r\n").replace("\r\r", "\r");
        assert_eq!(inspect(folded.as_bytes()).unwrap().kind, Kind::Mime);
        assert!(err(&good.replace("--XX--", "--XX")).contains("closing boundary '--XX--' is missing"));
        assert!(err(&good.replace("; boundary=\"XX\"", "")).contains("without a boundary"));
        assert!(err("MIME-Version: 1.0\n\n#cloud-config\n").contains("without a Content-Type"));
        // A mention in a cloud-config's content does not make it MIME, as the first line is no header.
        assert_eq!(
            inspect(b"#cloud-config\nwrite_files: [{content: 'MIME-Version: 1.0'}]\n").unwrap().kind,
            Kind::CloudConfig
        );
    }

    #[test]
    fn every_truncation_is_checked_without_panicking() {
        let mime = "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\n\
                    Content-Type: text/cloud-config\n\n#cloud-config\na: [1, {b: &x c}, *x]\n--XX--\n";
        let config = "#cloud-config\nusers:\n  - name: é\n    ssh_authorized_keys: [\"k\"]\nruncmd: |\n  ls\n";
        for text in [mime, config] {
            for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
                let _ = inspect(&text.as_bytes()[..end]);
            }
        }
    }

    #[test]
    fn refuses_each_mistake_with_its_reason() {
        assert!(err("echo hi\n").contains("none of the kinds cloud-init runs"));
        assert!(err("").contains("none of the kinds"));
        assert!(err("#cloud-config\nhostname: [a\n").starts_with("User data #cloud-config: Not valid YAML: "));
        assert!(err("#cloud-config\n- a\n").contains("not a YAML mapping"));
        assert!(err("#cloud-config\n# nothing\n").contains("nothing after #cloud-config"));
        assert!(err("#cloud-config-archive\na: 1\n").contains("is not a list"));
        assert!(inspect(b"\x1f\x8b\x08\x00").unwrap_err().message().contains("gzip"));
        assert!(inspect(b"#!/bin/sh\n\xff\n").unwrap_err().message().contains("not UTF-8 text (byte 10"));
        let big = format!("#!/bin/sh\n{}", "#".repeat(MAX_LEN));
        assert_eq!(inspect(big.as_bytes()).unwrap_err().kind(), crate::ErrorKind::LimitExceeded);
    }
}
