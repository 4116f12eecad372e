//! Checking one response against its expectation.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::http::Response;
use super::scenario::Expect;
use super::vars::Vars;

/// All mismatches, one line each (empty when the response is as expected).
pub fn check(resp: &Response, expect: &Expect, vars: &Vars) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    if let Some(status) = expect.status {
        if resp.status != status {
            problems.push(format!("status: expected {status}, got {}", resp.status));
        }
    }
    if let Some(ct) = &expect.content_type {
        let got = resp.header("content-type").unwrap_or("<none>");
        if got != ct {
            problems.push(format!("content-type: expected {ct:?}, got {got:?}"));
        }
    }
    for (name, want) in &expect.headers {
        let want = vars.expand(want)?;
        match resp.header(name) {
            Some(got) if got == want => {}
            got => problems.push(format!("header {name}: expected {want:?}, got {got:?}")),
        }
    }
    if let Some(body) = &expect.body {
        let want = vars.expand(body)?;
        let (w, g) = if expect.body_keys_any_order {
            (keys_sorted(&want), keys_sorted(&resp.body))
        } else {
            (want.clone(), resp.body.clone())
        };
        if w != g {
            problems.push(format!("body differs:\n{}", diff(&w, &g)));
        }
    }
    for c in &expect.contains {
        let c = vars.expand(c)?;
        if !resp.body.contains(&c) {
            problems.push(format!("body lacks {c:?}"));
        }
    }
    for c in &expect.not_contains {
        let c = vars.expand(c)?;
        if resp.body.contains(&c) {
            problems.push(format!("body contains {c:?}"));
        }
    }
    for m in &expect.matches {
        let re = multiline(&vars.expand(m)?)?;
        if !re.is_match(&resp.body) {
            problems.push(format!("body does not match /{}/", re.as_str()));
        }
    }
    for m in &expect.not_matches {
        let re = multiline(&vars.expand(m)?)?;
        if re.is_match(&resp.body) {
            problems.push(format!("body matches /{}/", re.as_str()));
        }
    }
    if let Some(json) = &expect.json {
        let want: Value =
            serde_json::from_str(&vars.expand(json)?).map_err(|e| format!("scenario json invalid: {e}"))?;
        match serde_json::from_str::<Value>(&resp.body) {
            Ok(got) => json_match(&want, &got, "$", expect.json_subset, &mut problems)?,
            Err(e) => problems.push(format!("body is not JSON ({e})")),
        }
    }
    for f in &expect.files_exist {
        let f = vars.expand(f)?;
        if !std::path::Path::new(&f).exists() {
            problems.push(format!("file missing: {f}"));
        }
    }
    for f in &expect.files_absent {
        let f = vars.expand(f)?;
        if std::path::Path::new(&f).exists() {
            problems.push(format!("file present: {f}"));
        }
    }
    for (f, pattern) in &expect.files_match {
        let f = vars.expand(f)?;
        let re = multiline(&vars.expand(pattern)?)?;
        match std::fs::read_to_string(&f) {
            Ok(text) if re.is_match(&text) => {}
            Ok(text) => problems.push(format!("file {f}: {text:?} does not match /{}/", re.as_str())),
            Err(e) => problems.push(format!("file {f}: {e}")),
        }
    }
    for (f, pattern) in &expect.files_not_match {
        let f = vars.expand(f)?;
        let re = multiline(&vars.expand(pattern)?)?;
        if let Ok(text) = std::fs::read_to_string(&f) {
            if re.is_match(&text) {
                problems.push(format!("file {f}: {text:?} matches /{}/", re.as_str()));
            }
        }
    }
    if !problems.is_empty() {
        problems.push(format!("actual body:\n{}", indent(&resp.body)));
    }
    Ok(problems)
}

/// Regex in multi-line mode, so `^`/`$` work on lines.
pub fn multiline(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| format!("bad regex {pattern:?}: {e}"))
}

/// Sorts the `key=value` lines inside each `[section]` block of a plain answer.
fn keys_sorted(body: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut in_section = false;
    let flush = |keys: &mut Vec<&str>, out: &mut Vec<String>| {
        keys.sort_unstable();
        out.extend(keys.drain(..).map(str::to_owned));
    };
    for line in body.split('\n') {
        let is_header = line.starts_with('[') && line.ends_with(']');
        if in_section && !is_header && line.contains('=') {
            keys.push(line);
            continue;
        }
        flush(&mut keys, &mut out);
        in_section = is_header;
        out.push(line.to_owned());
    }
    flush(&mut keys, &mut out);
    out.join("\n")
}

fn json_match(
    want: &Value,
    got: &Value,
    at: &str,
    subset: bool,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    match (want, got) {
        (Value::String(w), Value::String(g)) if w.starts_with("re:") => {
            let re =
                Regex::new(&format!("^(?:{})$", &w[3..])).map_err(|e| format!("bad regex {w:?}: {e}"))?;
            if !re.is_match(g) {
                problems.push(format!("{at}: {g:?} does not match /{}/", &w[3..]));
            }
        }
        (Value::Object(w), Value::Object(g)) => {
            for k in w.keys().filter(|k| !g.contains_key(*k)) {
                problems.push(format!("{at}: missing key {k:?}"));
            }
            for k in g.keys().filter(|k| !subset && !w.contains_key(*k)) {
                problems.push(format!("{at}: unexpected key {k:?} = {}", g[k]));
            }
            for (k, wv) in w {
                if let Some(gv) = g.get(k) {
                    json_match(wv, gv, &format!("{at}.{k}"), subset, problems)?;
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                json_match(wv, gv, &format!("{at}[{i}]"), subset, problems)?;
            }
        }
        _ if want == got => {}
        _ => problems.push(format!("{at}: expected {want}, got {got}")),
    }
    Ok(())
}

/// Line-by-line difference, enough to spot the mismatch.
fn diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.split('\n').collect();
    let g: Vec<&str> = got.split('\n').collect();
    let mut out = Vec::new();
    for i in 0..w.len().max(g.len()) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(format!("  line {}: expected {:?}, got {:?}", i + 1, a, b)),
        }
        if out.len() >= 12 {
            out.push("  …".into());
            break;
        }
    }
    out.join("\n")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_inside_sections_is_ignored_but_not_elsewhere() {
        let a = "Access granted\nSTART\n\n[b]\nx=1\ny=2\n\n[a]\nz=1\n\nEND\n";
        let b = "Access granted\nSTART\n\n[b]\ny=2\nx=1\n\n[a]\nz=1\n\nEND\n";
        assert_eq!(keys_sorted(a), keys_sorted(b));
        let c = "Access granted\nSTART\n\n[a]\nz=1\n\n[b]\nx=1\ny=2\n\nEND\n";
        assert_ne!(keys_sorted(a), keys_sorted(c));
    }

    #[test]
    fn json_regex_and_structure() {
        let mut p = Vec::new();
        let want: Value = serde_json::from_str(r#"{"a":"re:[0-9]+","b":[1,2]}"#).unwrap();
        json_match(
            &want,
            &serde_json::json!({"a":"42","b":[1,2]}),
            "$",
            false,
            &mut p,
        )
        .unwrap();
        assert!(p.is_empty(), "{p:?}");
        json_match(
            &want,
            &serde_json::json!({"a":"x","b":[1],"c":1}),
            "$",
            false,
            &mut p,
        )
        .unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
