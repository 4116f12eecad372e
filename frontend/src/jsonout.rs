//! JSON text exactly as Python's `json.dumps(obj, indent=4, sort_keys=True)`
//! writes it (ASCII only, `": "` and `","` separators).

use std::fmt::Write;

pub fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A list of strings whose opening bracket sits at nesting `depth`.
pub fn string_list(out: &mut String, items: &[String], depth: usize) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('\n');
        indent(out, depth + 1);
        string(out, item);
    }
    out.push('\n');
    indent(out, depth);
    out.push(']');
}

/// Builds a JSON object of sorted keys; values are pre-rendered text.
pub struct Object {
    depth: usize,
    fields: Vec<(String, String)>,
}

impl Object {
    pub fn new(depth: usize) -> Object {
        Object {
            depth,
            fields: Vec::new(),
        }
    }

    pub fn raw(&mut self, key: &str, value: String) {
        self.fields.push((key.to_owned(), value));
    }

    pub fn str(&mut self, key: &str, value: &str) {
        let mut v = String::new();
        string(&mut v, value);
        self.raw(key, v);
    }

    pub fn finish(mut self) -> String {
        if self.fields.is_empty() {
            return "{}".into();
        }
        self.fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            indent(&mut out, self.depth + 1);
            string(&mut out, k);
            out.push_str(": ");
            out.push_str(v);
        }
        out.push('\n');
        indent(&mut out, self.depth);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n\u{1}\u{7f}é😀");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\\u007f\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn objects_and_lists() {
        let mut o = Object::new(0);
        o.str("task", "x");
        o.str("auth-status", "Access granted");
        let mut l = String::new();
        string_list(&mut l, &["a".into()], 1);
        o.raw("list", l);
        o.raw("empty", Object::new(1).finish());
        assert_eq!(
            o.finish(),
            "{\n    \"auth-status\": \"Access granted\",\n    \"empty\": {},\n    \"list\": [\n        \"a\"\n    ],\n    \"task\": \"x\"\n}"
        );
    }
}
