//! Just enough JSON output for `info --output=json`, formatted as qemu-img formats it (4-space indent).

/// A JSON value.
pub enum Json {
    Bool(bool),
    Number(u64),
    String(String),
    Object(Vec<(&'static str, Json)>),
    Array(Vec<Json>),
}

impl Json {
    /// Pretty-printed with 4-space indentation.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    /// A scalar as a human reads it: strings without quotes.
    pub fn plain(&self) -> String {
        match self {
            Json::String(s) => s.clone(),
            other => other.render(),
        }
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, d: usize| out.push_str(&"    ".repeat(d));
        match self {
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => quote(out, s),
            Json::Object(fields) => {
                out.push_str("{\n");
                for (i, (k, v)) in fields.iter().enumerate() {
                    pad(out, depth + 1);
                    quote(out, k);
                    out.push_str(": ");
                    v.write(out, depth + 1);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, depth);
                out.push('}');
            }
            Json::Array(items) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    pad(out, depth + 1);
                    v.write(out, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, depth);
                out.push(']');
            }
        }
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_qemu_img() {
        let j = Json::Object(vec![
            ("a", Json::Number(1)),
            ("b", Json::String("x\"\u{1}".into())),
            ("c", Json::Array(vec![Json::Bool(true)])),
        ]);
        assert_eq!(j.render(), "{\n    \"a\": 1,\n    \"b\": \"x\\\"\\u0001\",\n    \"c\": [\n        true\n    ]\n}");
    }
}
