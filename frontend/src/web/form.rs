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

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `+` is a space; `%XX` a byte. A `%` not followed by two hex digits is
/// refused (the original would keep it literally).
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex);
                let lo = s.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::BadPercentEncoding),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
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
    fn rejects_bad_input() {
        let mut f = Form::default();
        assert_eq!(f.add_urlencoded(b"a=%zz"), Err(FormError::BadPercentEncoding));
        assert_eq!(f.add_urlencoded(b"a=%4"), Err(FormError::BadPercentEncoding));
        let mut f = Form::default();
        f.add_urlencoded(b"user=%ff").unwrap();
        assert_eq!(f.get("user", ""), Err(FormError::NotUtf8("user".into())));
        let mut f = Form::default();
        let many = vec!["a=1"; MAX_FIELDS + 1].join("&");
        assert_eq!(f.add_urlencoded(many.as_bytes()), Err(FormError::TooManyFields));
    }
}
