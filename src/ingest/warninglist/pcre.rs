//! MISP's PCRE entries (`/…/flags`) translated into what the `regex` crate runs, and its
//! errors said in one line.

/// The useful line of a `regex` error (the full text draws the pattern with a caret).
pub(super) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("error:")
                .map(|r| r.trim().to_string())
        })
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

/// Turns a PHP/PCRE pattern with delimiters (`/^(abuse|noc)@/i`, `#a/b#`, `{x}`) into the
/// `regex` crate's syntax: the body with the flags as an inline group.
pub(super) fn translate_pcre(entry: &str) -> Result<String, String> {
    let mut chars = entry.char_indices();
    let Some((_, open)) = chars.next() else {
        return Err("empty entry".into());
    };
    if open.is_alphanumeric() || open == '\\' || open.is_whitespace() {
        // No delimiters: the entry is the pattern.
        return Ok(translate_escapes(entry));
    }
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        c => c,
    };
    // The body ends at the first unescaped closing delimiter (nesting for bracket pairs).
    let mut depth = 0usize;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in chars {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == close && depth == 0 {
            end = Some(i);
            break;
        } else if close != open && c == open {
            depth += 1;
        } else if close != open && c == close {
            depth -= 1;
        }
    }
    let Some(end) = end else {
        // `^abc$` has no delimiters at all; `/abc` has lost its closing one.
        if "/#~@!%;,=+".contains(open) {
            return Err(format!("no ending delimiter `{close}`"));
        }
        return Ok(translate_escapes(entry));
    };
    let body = &entry[open.len_utf8()..end];
    let mut inline = String::new();
    let mut anchored = false;
    for flag in entry[end + close.len_utf8()..].chars() {
        match flag {
            'i' | 'm' | 's' | 'x' | 'U' => {
                if !inline.contains(flag) {
                    inline.push(flag);
                }
            }
            'A' => anchored = true,
            // Global (JavaScript habit), Unicode, dollar-end-only, study, extra, no auto
            // capture: none changes whether a value matches.
            'g' | 'u' | 'D' | 'S' | 'X' | 'n' => {}
            c if c.is_whitespace() => {}
            c => return Err(format!("unknown pattern flag `{c}`")),
        }
    }
    let body = translate_escapes(body);
    let mut out = String::with_capacity(body.len() + 12);
    if !inline.is_empty() {
        out.push_str("(?");
        out.push_str(&inline);
        out.push(')');
    }
    if anchored {
        out.push_str("\\A(?:");
        out.push_str(&body);
        out.push(')');
    } else {
        out.push_str(&body);
    }
    Ok(out)
}

/// Rewrites the PCRE escapes whose meaning differs in the `regex` crate: `\<` and `\>` are
/// literal in PCRE but word boundaries in `regex`; `\Z` (end, or before a final newline) has
/// no `regex` equivalent and becomes `\z` (values never end in a newline). Every other escape
/// is kept; `regex` accepts escaped punctuation such as `\/` and `\@` and refuses the PCRE-only
/// ones, which then become `E_WL_REGEX` problems.
pub(super) fn translate_escapes(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(c @ ('<' | '>')) => out.push(c),
            Some('Z') => out.push_str("\\z"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}
