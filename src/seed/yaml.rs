//! The YAML a seed reads and writes: the shape of a user's document, found by walking the parser's events (no
//! tree is built, so aliases cannot multiply into a huge one), and strings quoted so that any text stays one
//! scalar.

use crate::error::{Error, Result};
use yaml_rust2::parser::{Event, Parser};

/// What a single YAML document holds at its top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Top {
    /// Nothing but comments, or an empty document.
    Empty,
    /// A mapping, with its keys that are plain strings, in order.
    Mapping(Vec<String>),
    /// A sequence.
    Sequence,
    /// A single scalar.
    Scalar,
}

/// The prefix `!!` stands for.
const CORE_TAGS: &str = "tag:yaml.org,2002:";

/// The tags PyYAML's safe loader (cloud-init's) constructs; any other tag makes it refuse the whole document.
const SAFE_TAGS: &[&str] =
    &["null", "bool", "int", "float", "binary", "timestamp", "omap", "pairs", "set", "str", "seq", "map", "merge"];

/// Parses `text` as one YAML document and says what is at its top.
///
/// # Errors
/// `InvalidArgument` for a syntax error (with its line), more than one document, or a tag cloud-init's safe
/// loader does not construct.
pub fn top_of(text: &str) -> Result<Top> {
    let mut parser = Parser::new_from_str(text);
    let (mut documents, mut depth, mut top, mut key_turn) = (0, 0usize, Top::Empty, true);
    loop {
        let (event, mark) =
            parser.next_token().map_err(|e| Error::argument(format!("Not valid YAML: {}", describe(&e))))?;
        let tag = match &event {
            Event::Scalar(_, _, _, tag) | Event::SequenceStart(_, tag) | Event::MappingStart(_, tag) => tag.as_ref(),
            _ => None,
        };
        if let Some(tag) = tag {
            let core = tag.handle == CORE_TAGS;
            if !(core && SAFE_TAGS.contains(&tag.suffix.as_str()) || tag.handle.is_empty() && tag.suffix == "!") {
                return Err(Error::argument(format!(
                    "The YAML tag '{}{}' on line {} is one cloud-init's safe loader refuses",
                    if core { "!!" } else { &tag.handle },
                    tag.suffix,
                    mark.line()
                )));
            }
        }
        match event {
            Event::StreamEnd => return Ok(top),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(Error::argument(format!(
                        "A second YAML document starts on line {}; cloud-init reads one",
                        mark.line()
                    )));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if depth == 0 => {
                top = if matches!(event, Event::MappingStart(..)) { Top::Mapping(Vec::new()) } else { Top::Sequence };
                (depth, key_turn) = (1, true);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 1 {
                    key_turn = !key_turn;
                }
                depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            Event::Scalar(value, ..) if depth == 0 => {
                // An empty document parses as one empty plain scalar.
                top = if value.is_empty() { Top::Empty } else { Top::Scalar };
            }
            Event::Scalar(value, ..) if depth == 1 => {
                if let (Top::Mapping(keys), true) = (&mut top, key_turn) {
                    keys.push(value);
                }
                key_turn = !key_turn;
            }
            Event::Alias(..) if depth == 1 => key_turn = !key_turn,
            _ => {}
        }
    }
}

/// The parser's message with a 1-based line, without its byte offset.
fn describe(e: &yaml_rust2::ScanError) -> String {
    format!("{} on line {}", e.info(), e.marker().line())
}

/// `text` as a double-quoted YAML scalar: `"` and `\` escaped, and every character outside printable ASCII
/// written as an escape, so the document is plain ASCII whatever the text holds.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\u{0}'..='\u{ff}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{100}'..='\u{ffff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            _ => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_and_its_plain_keys() {
        let top = top_of("#cloud-config\nhostname: a\nusers:\n  - name: b\n    groups: [x]\nruncmd: [[ls, -l]]\n");
        assert_eq!(top.unwrap(), Top::Mapping(vec!["hostname".into(), "users".into(), "runcmd".into()]));
        assert_eq!(top_of("? [complex]\n: 1\nafter: 2\n").unwrap(), Top::Mapping(vec!["after".into()]));
        assert_eq!(top_of("- a\n- b\n").unwrap(), Top::Sequence);
        assert_eq!(top_of("just text\n").unwrap(), Top::Scalar);
        assert_eq!(top_of("# only a comment\n").unwrap(), Top::Empty);
        assert_eq!(top_of("").unwrap(), Top::Empty);
    }

    #[test]
    fn refuses_what_cloud_init_cannot_load() {
        let e = top_of("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.message().starts_with("Not valid YAML: "), "{e}");
        assert!(top_of("a: 1\n---\nb: 2\n").unwrap_err().message().contains("second YAML document starts on line 2"));
        assert!(top_of("a: !!python/object:os.system x\n").unwrap_err().message().contains("!!python"));
        assert!(top_of("a: !custom x\n").unwrap_err().message().contains("'!custom' on line 1"));
        assert!(top_of("a: !!str 1\nb: ! x\n").is_ok());
    }

    #[test]
    fn aliases_are_not_expanded() {
        // A "billion laughs" document: nine levels of ten aliases each. Walking its events stays linear.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let refs = vec![format!("*a{}", level - 1); 10].join(", ");
            doc.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        assert_eq!(top_of(&doc).unwrap(), Top::Mapping((0..10).map(|l| format!("a{l}")).collect()));
    }

    #[test]
    fn quoting_keeps_any_text_one_ascii_scalar() {
        for text in ["a: b", "\"quoted\" \\ back", "#not a comment", "- x", "tab\there\nnew", "é✓😀", "&anchor *alias"]
        {
            let doc = format!("key: {}\n", quoted(text));
            assert!(doc.is_ascii());
            let mut parser = Parser::new_from_str(&doc);
            let mut scalars = Vec::new();
            while let Ok((event, _)) = parser.next_token() {
                match event {
                    Event::Scalar(v, ..) => scalars.push(v),
                    Event::StreamEnd => break,
                    _ => {}
                }
            }
            assert_eq!(scalars, ["key", text]);
        }
    }
}
