//! Telling Python 2 sources apart from plain syntax errors, so the drop reason says which.

/// Heuristic: does a file that failed to parse look like Python 2?
pub fn looks_like_python2(source: &str) -> bool {
    source.lines().take(5000).any(|line| {
        let t = line.trim_start();
        is_print_statement(t)
            || is_old_except(t)
            || (t.starts_with("exec ") && t[5..].trim_start().starts_with(['"', '\'']))
            || (t.starts_with("raise ") && t.contains(", ") && !t.contains('(') && !t.contains(" from "))
            || t.contains("<>")
            || t.starts_with("print >>")
            || t.contains("ur\"") && t.contains("= ur\"")
    })
}

fn is_print_statement(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("print") else { return false };
    let Some(first) = rest.chars().next() else { return false };
    if first != ' ' && first != '\t' {
        return false;
    }
    let rest = rest.trim_start();
    match rest.chars().next() {
        None => false,
        // `print (x)` is valid Python 3; `print = ...`, `print.x` are not statements.
        Some('(' | '=' | '.' | ',' | ')' | '[') => false,
        Some(c) => c == '"' || c == '\'' || c.is_alphanumeric() || c == '_' || c == '%',
    }
}

fn is_old_except(t: &str) -> bool {
    // `except ValueError, e:`
    let Some(rest) = t.strip_prefix("except ") else { return false };
    let Some(body) = rest.trim_end().strip_suffix(':') else { return false };
    if body.contains('(') || body.contains(" as ") {
        return false;
    }
    match body.split_once(',') {
        Some((a, b)) => {
            let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.');
            ident(a.trim()) && ident(b.trim())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_python2_forms() {
        assert!(looks_like_python2("print 'hello'\n"));
        assert!(looks_like_python2("try:\n    pass\nexcept ValueError, e:\n    pass\n"));
        assert!(looks_like_python2("print >>sys.stderr, 'x'\n"));
        assert!(!looks_like_python2("print('hello')\n"));
        assert!(!looks_like_python2("def f(:\n    pass\n"));
        assert!(!looks_like_python2("print (x)\n"));
    }
}
