//! qemu-img's option syntax: `-o key=value,flag,key2=value2` lists and sizes like `64k` or `20G`.

use crate::error::{Error, Result};

/// A parsed `-o` list. Writers take the keys they know; whatever is left is reported as unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionList {
    entries: Vec<(String, String)>,
}

impl OptionList {
    /// Parses `key=value,flag,…` as qemu does: a bare key means `on`, and `,,` is a literal comma.
    pub fn parse(text: &str) -> Result<OptionList> {
        let mut list = OptionList::default();
        list.extend(text)?;
        Ok(list)
    }

    /// Adds the options of another `-o` argument (qemu lets `-o` repeat).
    pub fn extend(&mut self, text: &str) -> Result<()> {
        let mut items = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == ',' {
                if chars.peek() == Some(&',') {
                    chars.next();
                    current.push(',');
                } else {
                    items.push(std::mem::take(&mut current));
                }
            } else {
                current.push(c);
            }
        }
        items.push(current);
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item, "on".to_string()),
            };
            if key.is_empty() {
                return Err(Error::argument(format!("Invalid option '{key}={value}'")));
            }
            self.set(&key, &value);
        }
        Ok(())
    }

    /// Sets `key` (a later value replaces an earlier one, as in qemu).
    pub fn set(&mut self, key: &str, value: &str) {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_string(), value.to_string()));
    }

    /// Removes and returns `key`'s value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// Removes `key` as a boolean (`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        match v.as_str() {
            "on" | "true" | "yes" | "1" => Ok(Some(true)),
            "off" | "false" | "no" | "0" => Ok(Some(false)),
            _ => Err(Error::argument(format!("Option '{key}' expects on or off, not '{v}'"))),
        }
    }

    /// Removes `key` as a size (`64k`, `1M`, plain bytes).
    pub fn take_size(&mut self, key: &str) -> Result<Option<u64>> {
        self.take(key).map(|v| parse_size(&v).map_err(|_| bad_value(key, &v))).transpose()
    }

    /// Removes `key` as a whole number.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>> {
        self.take(key).map(|v| v.parse::<u64>().map_err(|_| bad_value(key, &v))).transpose()
    }

    /// Fails on the first key nobody took, naming the output format.
    pub fn finish(&self, format: &str) -> Result<()> {
        match self.entries.first() {
            Some((k, _)) => Err(Error::argument(format!("Invalid parameter '{k}' for format {format}"))),
            None => Ok(()),
        }
    }

    /// Whether no options remain.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn bad_value(key: &str, value: &str) -> Error {
    Error::argument(format!("Invalid value '{value}' for option '{key}'"))
}

/// Parses a size as qemu-img does: bytes, or a number with a suffix `b`/`k`/`M`/`G`/`T`/`P`/`E` (powers of
/// 1024, case-insensitive), optionally fractional (`1.5G`).
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || Error::argument(format!("Invalid size '{text}'"));
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        "e" | "eb" | "eib" => 60,
        _ => return Err(bad()),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(1u64 << shift).ok_or_else(bad);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !(0.0..1.8e19).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_line_options() {
        let mut o = OptionList::parse("adapter_type=lsilogic,subformat=streamOptimized,compat6").unwrap();
        assert_eq!(o.take("subformat").as_deref(), Some("streamOptimized"));
        assert_eq!(o.take_bool("compat6").unwrap(), Some(true));
        assert!(o.finish("vmdk").is_err());
        assert_eq!(o.take("adapter_type").as_deref(), Some("lsilogic"));
        assert!(o.finish("vmdk").is_ok());
    }

    #[test]
    fn double_comma_is_a_literal_comma() {
        let mut o = OptionList::parse("name=a,,b,x=1").unwrap();
        assert_eq!(o.take("name").as_deref(), Some("a,b"));
        assert_eq!(o.take_u64("x").unwrap(), Some(1));
    }

    #[test]
    fn sizes_parse_like_qemu_img() {
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("1000000000").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert!(parse_size("12q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999E").is_err());
    }
}
