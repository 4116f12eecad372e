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

/// A JSON value for documents built at request time (UCCS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Str(String),
    Bool(bool),
    List(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// `json.dumps(value, sort_keys=True, indent=width)`.
    pub fn dump(&self, width: usize) -> String {
        let mut out = String::new();
        self.write(&mut out, width, 0);
        out
    }

    fn write(&self, out: &mut String, width: usize, depth: usize) {
        let pad = |out: &mut String, depth: usize| out.push_str(&" ".repeat(width * depth));
        match self {
            Json::Str(s) => string(out, s),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::List(items) if items.is_empty() => out.push_str("[]"),
            Json::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, depth + 1);
                    item.write(out, width, depth + 1);
                }
                out.push('\n');
                pad(out, depth);
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                let mut sorted: Vec<&(String, Json)> = fields.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (k, v)) in sorted.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, depth + 1);
                    string(out, k);
                    out.push_str(": ");
                    v.write(out, width, depth + 1);
                }
                out.push('\n');
                pad(out, depth);
                out.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_values_with_indent_two() {
        let v = Json::Obj(vec![
            ("b".into(), Json::List(vec![])),
            ("a".into(), Json::List(vec![Json::Bool(true), Json::Obj(vec![])])),
        ]);
        assert_eq!(
            v.dump(2),
            "{\n  \"a\": [\n    true,\n    {}\n  ],\n  \"b\": []\n}"
        );
    }

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
