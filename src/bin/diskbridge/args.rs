//! A getopt-style parser for qemu-img's command lines: `-f qcow2`, `-fqcow2`, `-pO vmdk`, `--output=json`,
//! `--output json`, `--` ending the options.

/// One parsed argument.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// A short flag with its value, if it takes one.
    Short(char, Option<String>),
    /// A long option with its value, if it takes one.
    Long(String, Option<String>),
    /// A positional argument.
    Positional(String),
}

/// A usage mistake, reported with exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

/// Splits `args` into flags and positionals. `short_with_value` lists the short flags taking a value;
/// `long_with_value` the long ones.
pub fn parse(args: &[String], short_with_value: &str, long_with_value: &[&str]) -> Result<Vec<Arg>, UsageError> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.extend(it.by_ref().map(|p| Arg::Positional(p.clone())));
        } else if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            };
            let value = if long_with_value.contains(&name.as_str()) {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        Some(it.next().cloned().ok_or_else(|| UsageError(format!("option '--{name}' needs a value")))?)
                    }
                }
            } else if inline.is_some() {
                return Err(UsageError(format!("option '--{name}' takes no value")));
            } else {
                None
            };
            out.push(Arg::Long(name, value));
        } else if a.len() > 1 && a.starts_with('-') {
            for (i, c) in a[1..].char_indices() {
                if short_with_value.contains(c) {
                    let rest = &a[1 + i + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        it.next().cloned().ok_or_else(|| UsageError(format!("option '-{c}' needs a value")))?
                    } else {
                        rest.to_string()
                    };
                    out.push(Arg::Short(c, Some(value)));
                    break;
                }
                out.push(Arg::Short(c, None));
            }
        } else {
            out.push(Arg::Positional(a.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_seed_command_line() {
        let args = strings(&["-p", "-f", "qcow2", "-O", "vmdk", "-o", "adapter_type=lsilogic,compat6", "in", "out"]);
        let parsed = parse(&args, "fOo", &[]).unwrap();
        assert_eq!(parsed[0], Arg::Short('p', None));
        assert_eq!(parsed[1], Arg::Short('f', Some("qcow2".into())));
        assert_eq!(parsed[3], Arg::Short('o', Some("adapter_type=lsilogic,compat6".into())));
        assert_eq!(parsed[5], Arg::Positional("out".into()));
    }

    #[test]
    fn bundled_flags_and_attached_values() {
        let parsed =
            parse(&strings(&["-pOvmdk", "--output=json", "--output", "human", "--", "-x"]), "fOo", &["output"])
                .unwrap();
        assert_eq!(parsed[0], Arg::Short('p', None));
        assert_eq!(parsed[1], Arg::Short('O', Some("vmdk".into())));
        assert_eq!(parsed[2], Arg::Long("output".into(), Some("json".into())));
        assert_eq!(parsed[3], Arg::Long("output".into(), Some("human".into())));
        assert_eq!(parsed[4], Arg::Positional("-x".into()));
        assert!(parse(&strings(&["-f"]), "f", &[]).is_err());
    }
}
