//! Python source analysis on top of ruff's parser: parsing with a target version, the
//! module's imports, and which free names a function reads.

pub mod imports;
pub mod names;
pub mod py2;

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

/// Parse "3.11" into a version.
pub fn parse_version(text: &str) -> Option<PythonVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(PythonVersion { major: major.parse().ok()?, minor: minor.parse().ok()? })
}

/// Deepest bracket nesting in `source`, ignoring brackets inside strings and comments
/// (approximately: enough to catch pathological inputs cheaply before parsing).
pub fn max_bracket_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                let triple = i + 2 < bytes.len() && bytes[i + 1] == q && bytes[i + 2] == q;
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    if bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if bytes[i] == q && i + 2 < bytes.len() && bytes[i + 1] == q && bytes[i + 2] == q {
                            i += 2;
                            break;
                        }
                    } else if bytes[i] == q || bytes[i] == b'\n' {
                        break;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    max
}

/// Byte offsets where each line starts, for offset → line number.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        match self.starts.binary_search(&offset) {
            Ok(i) => i as u32 + 1,
            Err(i) => i as u32,
        }
    }
}
