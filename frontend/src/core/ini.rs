//! INI files with the semantics of Python's `configparser.RawConfigParser`
//! (as the original broker uses it, with case-sensitive option names):
//! `[DEFAULT]` is inherited by every section, `=` or `:` separate name and
//! value, whole-line `#`/`;` comments, indented lines continue the previous
//! value, duplicate sections or options are errors, no interpolation.

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_SECTION: &str = "DEFAULT";

/// One section: options in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub options: Vec<(String, String)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed INI file. `defaults` holds the `[DEFAULT]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    pub defaults: Section,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}, line {}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for IniError {}

impl Ini {
    /// Reads a file; a missing file is an empty configuration, as for
    /// `RawConfigParser.read()`.
    pub fn load(path: &Path) -> Result<Ini, IniError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ini::default()),
            Err(e) => {
                return Err(IniError {
                    file: path.to_owned(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            IniError {
                file: path.to_owned(),
                line,
                message: "not valid UTF-8".into(),
            }
        })?;
        Ini::parse(&text, path)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Ini, IniError> {
        let err = |line: usize, message: String| IniError {
            file: file.to_owned(),
            line,
            message,
        };
        let mut ini = Ini {
            defaults: Section {
                name: DEFAULT_SECTION.into(),
                options: Vec::new(),
            },
            sections: Vec::new(),
        };
        // None: before any header; Some(None): [DEFAULT]; Some(Some(i)): section i.
        let mut current: Option<Option<usize>> = None;
        // Index of the option that continuation lines extend, and its indent.
        let mut last_option: Option<usize> = None;
        let mut indent_level = 0usize;
        // Continuation lines collected per option, joined at the end.
        for (idx, raw) in text.split('\n').enumerate() {
            let lineno = idx + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = raw.trim();
            let is_comment = trimmed.starts_with('#') || trimmed.starts_with(';');
            if trimmed.is_empty() || is_comment {
                // Blank lines inside a value are kept (trailing ones are
                // stripped at the end); comment lines are skipped.
                if !is_comment {
                    if let (Some(sec), Some(opt)) = (current, last_option) {
                        section_mut(&mut ini, sec).options[opt].1.push('\n');
                    }
                }
                continue;
            }
            let cur_indent = raw.len() - raw.trim_start().len();
            if let (Some(sec), Some(opt)) = (current, last_option) {
                if cur_indent > indent_level {
                    let value = &mut section_mut(&mut ini, sec).options[opt].1;
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }
            indent_level = cur_indent;
            if let Some(rest) = trimmed.strip_prefix('[') {
                if let Some(end) = rest.rfind(']') {
                    let name = &rest[..end];
                    if !name.is_empty() {
                        last_option = None;
                        if name == DEFAULT_SECTION {
                            current = Some(None);
                        } else if ini.sections.iter().any(|s| s.name == name) {
                            return Err(err(lineno, format!("section '{name}' already exists")));
                        } else {
                            ini.sections.push(Section {
                                name: name.to_owned(),
                                options: Vec::new(),
                            });
                            current = Some(Some(ini.sections.len() - 1));
                        }
                        continue;
                    }
                }
            }
            let Some(sec) = current else {
                return Err(err(lineno, "option line before any [section] header".into()));
            };
            let Some(sep) = trimmed.find(['=', ':']) else {
                return Err(err(
                    lineno,
                    format!("not a section header or 'name = value' line: {trimmed}"),
                ));
            };
            let name = trimmed[..sep].trim_end();
            let value = trimmed[sep + 1..].trim();
            if name.is_empty() {
                return Err(err(lineno, "option without a name".into()));
            }
            let section = section_mut(&mut ini, sec);
            if section.options.iter().any(|(k, _)| k == name) {
                return Err(err(
                    lineno,
                    format!("option '{name}' in section '{}' already exists", section.name),
                ));
            }
            section.options.push((name.to_owned(), value.to_owned()));
            last_option = Some(section.options.len() - 1);
        }
        for section in std::iter::once(&mut ini.defaults).chain(ini.sections.iter_mut()) {
            for (_, value) in section.options.iter_mut() {
                let kept = value.trim_end().len();
                value.truncate(kept);
            }
        }
        Ok(ini)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        if name == DEFAULT_SECTION {
            return Some(&self.defaults);
        }
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// A value as RawConfigParser's `get()` sees it: the section's own, else
    /// the `[DEFAULT]` one.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)
            .and_then(|s| s.get(key))
            .or_else(|| self.defaults.get(key))
    }
}

fn section_mut(ini: &mut Ini, sec: Option<usize>) -> &mut Section {
    match sec {
        Some(i) => &mut ini.sections[i],
        None => &mut ini.defaults,
    }
}

/// RawConfigParser's boolean words, case-insensitive.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `int()` on a configuration string: surrounding whitespace, a
/// sign and single underscores between digits are accepted.
pub fn parse_int(value: &str) -> Option<i64> {
    let v = value.trim();
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if !clean.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = clean.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// A list value: comma-separated, items stripped. The original `eval`s values
/// written as `[...]`; we read such a value as data: brackets removed and
/// each item's quotes stripped.
pub fn parse_list(value: &str) -> Vec<String> {
    let v = value.trim();
    if v.starts_with('[') && v.ends_with(']') && v.len() >= 2 {
        let inner = v[1..v.len() - 1].trim();
        if inner.is_empty() {
            return Vec::new();
        }
        return inner
            .split(',')
            .map(|item| {
                let item = item.trim();
                let unquoted = item
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| item.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                unquoted.unwrap_or(item).to_owned()
            })
            .filter(|item| !item.is_empty())
            .collect();
    }
    if v.contains(',') {
        v.split(',').map(|s| s.trim().to_owned()).collect()
    } else {
        vec![v.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Ini, IniError> {
        Ini::parse(text, Path::new("test.conf"))
    }

    #[test]
    fn defaults_are_inherited_and_keys_keep_case() {
        let ini = parse("[DEFAULT]\nKey = d\nother=x\n[s]\nkey = own\n").unwrap();
        assert_eq!(ini.get("s", "key"), Some("own"));
        assert_eq!(ini.get("s", "Key"), Some("d"));
        assert_eq!(ini.get("s", "other"), Some("x"));
        assert_eq!(ini.get("nosuch", "other"), Some("x"));
        assert!(!ini.has_section("DEFAULT"));
    }

    #[test]
    fn separators_comments_and_whitespace() {
        let ini =
            parse("# c\n; c2\n[s]\na: 1\nb=2=3\nc  =  spaced value  \nd = x # not a comment\n").unwrap();
        let s = ini.section("s").unwrap();
        assert_eq!(s.get("a"), Some("1"));
        assert_eq!(s.get("b"), Some("2=3"));
        assert_eq!(s.get("c"), Some("spaced value"));
        assert_eq!(s.get("d"), Some("x # not a comment"));
        // The first of '=' and ':' separates.
        let ini = parse("[s]\nurl: http://x=y\n").unwrap();
        assert_eq!(ini.get("s", "url"), Some("http://x=y"));
    }

    #[test]
    fn continuation_lines() {
        let ini = parse("[s]\na = one,\n  two,\n\n  # comment\n  three\nb = 2\n\n\n").unwrap();
        assert_eq!(ini.get("s", "a"), Some("one,\ntwo,\n\nthree"));
        assert_eq!(ini.get("s", "b"), Some("2"));
    }

    #[test]
    fn header_with_trailing_text_and_brackets() {
        let ini = parse("[a [b]] junk\nk=v\n").unwrap();
        assert_eq!(ini.get("a [b]", "k"), Some("v"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("k = v\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("[s]\nk = v\n\nnonsense\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.to_string().contains("test.conf, line 4"), "{e}");
        let e = parse("[s]\n[s]\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[s]\nk=1\nk=2\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("[s]\n= v\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn booleans_ints_lists() {
        for t in ["1", "yes", "TRUE", "On"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "no", "False", "OFF"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("2"), None);
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-1_000"), Some(-1000));
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("not-set"), None);
        assert_eq!(parse_list("a, b ,c"), vec!["a", "b", "c"]);
        assert_eq!(parse_list("single"), vec!["single"]);
        assert_eq!(parse_list(""), vec![""]);
        assert_eq!(parse_list("a,"), vec!["a", ""]);
        assert_eq!(parse_list("['x', \"y\"]"), vec!["x", "y"]);
        assert_eq!(parse_list("[]"), Vec::<String>::new());
    }

    #[test]
    fn missing_file_is_empty_and_bad_utf8_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.conf");
        assert_eq!(Ini::load(&missing).unwrap(), Ini::default());
        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, b"[s]\nk = \xff\n").unwrap();
        let e = Ini::load(&bad).unwrap_err();
        assert_eq!(e.line, 2);
    }
}
