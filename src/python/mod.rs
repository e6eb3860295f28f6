//! Python source analysis on top of ruff's parser: parsing with a target version, the
//! module's imports, and which free names a function reads.

pub mod extractor;
pub mod functions;
pub mod gaming;
pub mod imports;
pub mod literals;
pub mod mutants;
pub mod names;
pub mod py2;
pub mod test_module;

use std::collections::HashSet;
use std::sync::LazyLock;

use ruff_python_ast::{ModModule, PythonVersion};
use ruff_python_parser::{Mode, ParseOptions, Parsed};

/// Stack size for threads that parse or walk ASTs. Dropping or walking a very deep AST
/// recurses; a 2 MiB stack overflows (and aborts the process) on inputs nobody wrote by hand.
pub const PARSE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// CPython's parser refuses more than 200 nested brackets ("too many nested parentheses"),
/// so deeper code can never run; we reject it before parsing.
pub const MAX_BRACKET_DEPTH: usize = 200;

/// The names of `builtins` in CPython 3.11 (`dir(builtins)`).
pub static BUILTINS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("builtins.txt").lines().map(str::trim).filter(|l| !l.is_empty()).collect());

/// Parse a module, reporting syntax newer than `target` as unsupported-syntax errors.
pub fn parse_module(source: &str, target: PythonVersion) -> Parsed<ModModule> {
    let options = ParseOptions::from(Mode::Module).with_target_version(target);
    match ruff_python_parser::parse_unchecked(source, options).try_into_module() {
        Some(parsed) => parsed,
        // Mode::Module always yields a module; fall back to the plain entry point.
        None => ruff_python_parser::parse_unchecked_source(source, ruff_python_ast::PySourceType::Python),
    }
}

/// The largest untrusted source parsed (a test module, a reply, a record's code): deeper
/// expression chains than a source this size can hold parse and drop safely on a
/// `PARSE_STACK_BYTES` stack (a 2,000,000-deep chain was measured to).
pub const MAX_UNTRUSTED_BYTES: usize = 4 << 20;

/// Parse untrusted source safely: refused (with the reason) when larger than
/// `MAX_UNTRUSTED_BYTES` or nested deeper than CPython accepts. Call it inside
/// [`on_parse_stack`]: the parse, any walk of the AST and its drop recurse.
pub fn parse_untrusted(source: &str, target: PythonVersion) -> Result<Parsed<ModModule>, String> {
    if source.len() > MAX_UNTRUSTED_BYTES {
        return Err(format!("{} bytes of source: more than the {} parsed", source.len(), MAX_UNTRUSTED_BYTES));
    }
    let depth = max_bracket_depth(source);
    if depth > MAX_BRACKET_DEPTH {
        return Err(format!("{depth} nested brackets: more than CPython accepts ({MAX_BRACKET_DEPTH})"));
    }
    Ok(parse_module(source, target))
}

/// Run `f` on a thread with a `PARSE_STACK_BYTES` stack, so that a deeply nested input
/// cannot overflow the caller's stack (which would abort the whole process). A panic in
/// `f` is passed on to the caller.
pub fn on_parse_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new().name("parse".into()).stack_size(PARSE_STACK_BYTES).spawn_scoped(scope, f);
        match handle {
            Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            // No thread to be had (resource limits): parse here rather than not at all.
            Err(_) => panic!("cannot start a parse thread"),
        }
    })
}

/// `a.b.c` for a chain of names (`None` for anything else: a call, a subscript).
pub fn dotted_name(e: &ruff_python_ast::Expr) -> Option<String> {
    match e {
        ruff_python_ast::Expr::Name(n) => Some(n.id.to_string()),
        ruff_python_ast::Expr::Attribute(a) => Some(format!("{}.{}", dotted_name(&a.value)?, a.attr.as_str())),
        _ => None,
    }
}

/// Parse "3.11" into a version.
pub fn parse_version(text: &str) -> Option<PythonVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(PythonVersion { major: major.parse().ok()?, minor: minor.parse().ok()? })
}

/// Deepest bracket nesting in `source`, ignoring brackets inside strings and comments
/// (approximately: enough to catch pathological inputs cheaply before parsing).
pub fn max_bracket_depth(source: &str) -> usize {
    // Fast path: the nesting can be no deeper than the number of opening brackets (this
    // count vectorises; the string-aware scan below does not).
    let opening = opening_brackets(source);
    if opening <= MAX_BRACKET_DEPTH {
        return opening;
    }
    precise_depth(source)
}

/// Number of opening brackets: a bound on the nesting depth, counted branch-free so it
/// vectorises.
fn opening_brackets(source: &str) -> usize {
    source.as_bytes().iter().map(|&b| usize::from(b == b'(' || b == b'[' || b == b'{')).sum()
}

/// Files with more opening brackets than this get the precise nesting scan before parsing.
/// Below it, parsing is safe on a `PARSE_STACK_BYTES` stack (ruff parses 1,000,000 nested
/// brackets there), and a candidate function nested deeper than CPython allows is dropped
/// by the AST depth limit instead.
pub const SCAN_ABOVE_BRACKETS: usize = 20_000;

/// True when `source` must be rejected before parsing as too deeply nested.
pub fn too_deep_to_parse(source: &str) -> Option<usize> {
    let opening = opening_brackets(source);
    if opening <= SCAN_ABOVE_BRACKETS {
        return None;
    }
    let depth = precise_depth(source);
    (depth > MAX_BRACKET_DEPTH).then_some(depth)
}

/// Byte classes for the scan: 0 = nothing to do.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'(' as usize] = 1;
    t[b'[' as usize] = 1;
    t[b'{' as usize] = 1;
    t[b')' as usize] = 2;
    t[b']' as usize] = 2;
    t[b'}' as usize] = 2;
    t[b'#' as usize] = 3;
    t[b'"' as usize] = 4;
    t[b'\'' as usize] = 4;
    t
};

fn precise_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match CLASS[b as usize] {
            0 => {}
            1 => {
                depth += 1;
                max = max.max(depth);
            }
            2 => depth = depth.saturating_sub(1),
            3 => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {
                let q = b;
                let triple = i + 2 < bytes.len() && bytes[i + 1] == q && bytes[i + 2] == q;
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    let c = bytes[i];
                    if c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if c == q && i + 2 < bytes.len() && bytes[i + 1] == q && bytes[i + 2] == q {
                            i += 2;
                            break;
                        }
                    } else if c == q || c == b'\n' {
                        break;
                    }
                    i += 1;
                }
            }
        }
        i += 1;
    }
    max
}

/// Offset → 1-based line number, counting newlines incrementally: queries in increasing
/// order (as when walking a module's statements) scan each byte once, with a count that
/// vectorises; a query behind the cursor rescans from the start.
pub struct LineIndex<'s> {
    bytes: &'s [u8],
    offset: usize,
    line: u32,
}

impl<'s> LineIndex<'s> {
    pub fn new(source: &'s str) -> Self {
        Self { bytes: source.as_bytes(), offset: 0, line: 1 }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&mut self, offset: usize) -> u32 {
        let offset = offset.min(self.bytes.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        let newlines = self.bytes[self.offset..offset].iter().map(|&b| u32::from(b == b'\n')).sum::<u32>();
        self.line += newlines;
        self.offset = offset;
        self.line
    }
}
