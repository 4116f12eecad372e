//! Request arguments as tornado's `get_argument` sees them: query string
//! and form body together (the body is parsed whatever the Content-Type
//! says), the last value wins, control characters become spaces and
//! surrounding whitespace is stripped (not for passwords).

/// Limit on the number of fields in one request.
pub const MAX_FIELDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    BadPercentEncoding,
    TooManyFields,
    NotUtf8(String),
}

#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Decodes `%XX` escapes with the percent-encoding crate, after checking
/// that every `%` starts one: `None` when a `%` is not followed by two hex
/// digits (Python's unquote would keep it literally; the crate would too,
/// so the check comes first). Used for form fields and the URL path.
pub fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let well_formed = s.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
        s.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode(s).collect())
}

/// `+` is a space; `%XX` a byte. A `%` not followed by two hex digits is
/// refused (the original would keep it literally).
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, FormError> {
    // `+` first: an escaped `%2B` must stay a plus.
    let plus_as_space: Vec<u8> = s.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    unescape(&plus_as_space).ok_or(FormError::BadPercentEncoding)
}

impl Form {
    pub fn add_urlencoded(&mut self, data: &[u8]) -> Result<(), FormError> {
        for pair in data.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            if self.fields.len() >= MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            self.fields.push((percent_decode(name)?, percent_decode(value)?));
        }
        Ok(())
    }

    fn last(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn decode(&self, name: &str, strip: bool) -> Result<Option<String>, FormError> {
        let Some(raw) = self.last(name) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(raw).map_err(|_| FormError::NotUtf8(name.to_owned()))?;
        let cleaned: String = text
            .chars()
            .map(|c| {
                if matches!(c, '\u{0}'..='\u{8}' | '\u{e}'..='\u{1f}') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        Ok(Some(if strip { cleaned.trim().to_owned() } else { cleaned }))
    }

    /// A stripped argument, or `default`.
    pub fn get(&self, name: &str, default: &str) -> Result<String, FormError> {
        Ok(self.decode(name, true)?.unwrap_or_else(|| default.to_owned()))
    }

    /// An argument kept as sent (passwords).
    pub fn get_unstripped(&self, name: &str) -> Result<String, FormError> {
        Ok(self.decode(name, false)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_tornado() {
        let mut f = Form::default();
        f.add_urlencoded(b"user=a&user=b&&flag&pw=+x%20y+&name=%C3%A9")
            .unwrap();
        assert_eq!(f.get("user", "").unwrap(), "b");
        assert_eq!(f.get("flag", "d").unwrap(), "");
        assert_eq!(f.get("missing", "d").unwrap(), "d");
        assert_eq!(f.get("pw", "").unwrap(), "x y");
        assert_eq!(f.get_unstripped("pw").unwrap(), " x y ");
        assert_eq!(f.get("name", "").unwrap(), "é");
        let mut f = Form::default();
        f.add_urlencoded(b"a=%01b").unwrap();
        assert_eq!(f.get("a", "").unwrap(), "b");
        assert_eq!(f.get_unstripped("a").unwrap(), " b");
    }

    #[test]
    fn unescapes_only_well_formed_escapes() {
        assert_eq!(
            unescape(b"/plain/a%20b%2Fc%2bd+e").as_deref(),
            Some(&b"/plain/a b/c+d+e"[..])
        );
        assert_eq!(unescape(b"%C3%A9%e9").as_deref(), Some(&b"\xc3\xa9\xe9"[..]));
        assert_eq!(unescape(b"").as_deref(), Some(&b""[..]));
        for bad in [&b"%+f"[..], b"%-1", b"% 1", b"%g0", b"%0", b"%", b"a%%41"] {
            assert_eq!(unescape(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(percent_decode(b"a+%2B+b").unwrap(), b"a + b");
    }

    #[test]
    fn rejects_bad_input() {
        let mut f = Form::default();
        assert_eq!(f.add_urlencoded(b"a=%zz"), Err(FormError::BadPercentEncoding));
        assert_eq!(f.add_urlencoded(b"a=%4"), Err(FormError::BadPercentEncoding));
        // A sign is not a hex digit (u8::from_str_radix would take "+f").
        assert_eq!(f.add_urlencoded(b"a=%+f"), Err(FormError::BadPercentEncoding));
        assert_eq!(f.add_urlencoded(b"a=%-1"), Err(FormError::BadPercentEncoding));
        assert_eq!(f.add_urlencoded(b"a=x%"), Err(FormError::BadPercentEncoding));
        let mut f = Form::default();
        f.add_urlencoded(b"user=%ff").unwrap();
        assert_eq!(f.get("user", ""), Err(FormError::NotUtf8("user".into())));
        let mut f = Form::default();
        let many = vec!["a=1"; MAX_FIELDS + 1].join("&");
        assert_eq!(f.add_urlencoded(many.as_bytes()), Err(FormError::TooManyFields));
    }
}
