//! Reading code out of model replies: fenced ```python blocks (or the bare reply when the
//! model forgot the fences), choosing the block that defines what was asked for.

use ruff_python_ast::Stmt;
use ruff_text_size::Ranged;

use crate::python::literals::{parse_inputs, InputLiteral, Signature};
use crate::python::{on_parse_stack, parse_untrusted};

/// Why no usable code was found in a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply contains no code")]
    NoCode,
    #[error("no code block parses as Python: {0}")]
    Syntax(String),
    #[error("no code block defines {0}")]
    Missing(String),
}

impl ReplyError {
    pub fn kind(&self) -> &'static str {
        match self {
            ReplyError::NoCode => "no_code_block",
            ReplyError::Syntax(_) => "syntax_error",
            ReplyError::Missing(_) => "missing_definition",
        }
    }
}

/// Code blocks of a reply, in order: fenced blocks (```python, ```py, ```), an unterminated
/// last fence (a truncated reply) included; the whole reply when there are no fences.
pub fn code_blocks(reply: &str) -> Vec<String> {
    fenced_blocks(reply).into_iter().map(|(b, _)| b).collect()
}

/// The blocks of a reply cut by the token limit that are certainly whole: those whose
/// closing fence arrived.
pub fn complete_blocks(reply: &str) -> Vec<String> {
    fenced_blocks(reply).into_iter().filter(|(_, closed)| *closed).map(|(b, _)| b).collect()
}

/// The complete items of a list literal cut short by the token limit: the last block
/// (closed or not) up to its last element that ended at the list's top level, closed with
/// `]`. `None` when no element is complete. (A cut list of 100 test cases keeps the 60
/// that arrived instead of losing all of them.)
pub fn complete_list_items(reply: &str) -> Option<String> {
    let (block, _) = fenced_blocks(reply).into_iter().last()?;
    let start = block.find('[')?;
    let bytes = block.as_bytes();
    let (mut depth, mut quote, mut escaped, mut comment, mut last_end) = (0i32, None::<u8>, false, false, None);
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if comment {
            comment = b != b'\n';
            continue;
        }
        if let Some(q) = quote {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'#' => comment = true,
            b'[' | b'(' | b'{' => depth += 1,
            b']' | b')' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return None; // the list is whole: nothing was cut
                }
                if depth == 1 {
                    last_end = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    Some(format!("{}]", &block[..last_end?]))
}

/// Blocks with whether each one's closing fence was seen.
fn fenced_blocks(reply: &str) -> Vec<(String, bool)> {
    enum State {
        Outside,
        Python(String),
        OtherLanguage,
    }
    let mut blocks = Vec::new();
    let mut state = State::Outside;
    let mut saw_fence = false;
    for line in reply.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            saw_fence = true;
            state = match state {
                State::Python(block) => {
                    blocks.push((block, true));
                    State::Outside
                }
                State::OtherLanguage => State::Outside,
                State::Outside => {
                    let lang = info.trim().to_ascii_lowercase();
                    if lang.is_empty() || lang.starts_with("py") {
                        State::Python(String::new())
                    } else {
                        State::OtherLanguage
                    }
                }
            };
        } else if let State::Python(block) = &mut state {
            block.push_str(line);
            block.push('\n');
        }
    }
    if let State::Python(block) = state {
        blocks.push((block, false));
    }
    if !saw_fence && !reply.trim().is_empty() {
        blocks.push((reply.to_string(), false));
    }
    blocks.retain(|(b, _)| !b.trim().is_empty());
    blocks
}

/// The first block that parses and satisfies `wanted` (which names what was missing).
pub fn pick_block(reply: &str, what: &str, wanted: impl Fn(&[Stmt]) -> bool + Sync) -> Result<String, ReplyError> {
    pick_from(code_blocks(reply), what, wanted)
}

/// `pick_block` over given blocks.
pub fn pick_from(blocks: Vec<String>, what: &str, wanted: impl Fn(&[Stmt]) -> bool + Sync) -> Result<String, ReplyError> {
    if blocks.is_empty() {
        return Err(ReplyError::NoCode);
    }
    let mut syntax = None;
    for block in &blocks {
        let verdict = on_parse_stack(|| match parse_untrusted(block, ruff_python_ast::PythonVersion::PY314) {
            Err(why) => Err(why),
            Ok(parsed) => match parsed.errors().first() {
                Some(e) => Err(e.error.to_string()),
                None => Ok(wanted(parsed.suite())),
            },
        });
        match verdict {
            Err(why) => {
                syntax.get_or_insert(why);
            }
            Ok(true) => return Ok(block.clone()),
            Ok(false) => {}
        }
    }
    match syntax {
        Some(e) if blocks.len() == 1 => Err(ReplyError::Syntax(e)),
        _ => Err(ReplyError::Missing(what.to_string())),
    }
}

/// Does a module define a `unittest.TestCase` subclass (any name) with a `test*` method?
pub fn defines_test_cases(suite: &[Stmt]) -> bool {
    crate::python::test_module::defines_test_class(suite)
}

/// Does a module define a top-level function `name`?
/// The inputs in a reply: those of its first code block that holds a list of input
/// literals (each element checked on its own, see `python::literals::parse_inputs`).
pub fn inputs_block(reply: &str, sig: Option<&Signature>) -> Result<Vec<Result<InputLiteral, String>>, String> {
    let mut last = "the reply contains no code block".to_string();
    for block in code_blocks(reply) {
        match parse_inputs(&block, sig) {
            Ok(items) => return Ok(items),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub fn defines_function(suite: &[Stmt], name: &str) -> bool {
    suite.iter().any(|s| matches!(s, Stmt::FunctionDef(f) if f.name.as_str() == name))
}

/// Remove imports of the function under test from a module (`from solution import f`):
/// the tests run in the program's namespace, where it is already defined. Returns the
/// cleaned module and what was removed. (A copy of the function in the tests is not
/// removed: `python::test_module::check` rejects such a module.)
pub fn clean_tests(tests: &str, entry_point: &str) -> (String, Vec<String>) {
    on_parse_stack(|| clean_tests_here(tests, entry_point))
}

fn clean_tests_here(tests: &str, entry_point: &str) -> (String, Vec<String>) {
    let Ok(parsed) = parse_untrusted(tests, ruff_python_ast::PythonVersion::PY314) else { return (tests.to_string(), Vec::new()) };
    if !parsed.errors().is_empty() {
        return (tests.to_string(), Vec::new());
    }
    let mut cut: Vec<(usize, usize, String)> = Vec::new();
    for stmt in parsed.suite() {
        let removed = match stmt {
            Stmt::ImportFrom(i) if i.names.iter().any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == entry_point) => {
                Some(format!("import of {entry_point} from {}", i.module.as_ref().map(|m| m.as_str()).unwrap_or(".")))
            }
            _ => None,
        };
        if let Some(what) = removed {
            let r = stmt.range();
            cut.push((r.start().to_usize(), r.end().to_usize(), what));
        }
    }
    if cut.is_empty() {
        return (tests.to_string(), Vec::new());
    }
    let mut out = String::with_capacity(tests.len());
    let mut pos = 0;
    for (start, end, _) in &cut {
        out.push_str(&tests[pos..*start]);
        out.push_str("pass  # removed by unitcoder: the function under test is already defined\n");
        pos = *end;
        if tests[pos..].starts_with('\n') {
            pos += 1;
        }
    }
    out.push_str(&tests[pos..]);
    (out, cut.into_iter().map(|c| c.2).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_list_keeps_its_complete_items() {
        let reply = "Here:\n```python\n[\n    {\"input\": {\"x\": [1, 2]}, \"output\": 3},  # two ] items\n    {\"input\": {\"x\": \"a}\"}, \"output\": 1},\n    {\"input\": {\"x\": [4, ";
        assert_eq!(
            complete_list_items(reply).as_deref(),
            Some("[\n    {\"input\": {\"x\": [1, 2]}, \"output\": 3},  # two ] items\n    {\"input\": {\"x\": \"a}\"}, \"output\": 1}]")
        );
        assert_eq!(complete_list_items("```python\n[{\"input\": {}}]\n```"), None, "a whole list was not cut");
        assert_eq!(complete_list_items("```python\n[{\"input\": {\"x\": 1"), None, "no complete item");
    }

    #[test]
    fn fenced_blocks_and_prose() {
        let reply = "Sure! Here:\n```python\nx = 1\n```\nand\n```\ny = 2\n```\n```bash\nrm -rf /\n```\n";
        assert_eq!(code_blocks(reply), ["x = 1\n", "y = 2\n"]);
        assert_eq!(code_blocks("def f():\n    return 1\n"), ["def f():\n    return 1\n"]);
        assert_eq!(code_blocks("```python\nx = 1\n"), ["x = 1\n"], "unterminated fence keeps its text");
        assert!(code_blocks("I cannot help with that.").len() == 1);
        assert!(code_blocks("```text\nhello\n```").is_empty());
    }

    #[test]
    fn picks_the_block_defining_testcases() {
        let reply = "```python\ndef helper():\n    pass\n```\n```python\nimport unittest\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        pass\n```";
        let got = pick_block(reply, "TestCases", defines_test_cases).unwrap();
        assert!(got.contains("class TestCases"));
        assert_eq!(pick_block("no code here at all, sorry", "TestCases", defines_test_cases).unwrap_err().kind(), "syntax_error");
        assert!(code_blocks("```python\nx = 1\n").len() == 1 && complete_blocks("```python\nx = 1\n").is_empty());
        assert_eq!(complete_blocks("```python\nx = 1\n```\n```python\ny ="), ["x = 1\n"]);
        assert_eq!(
            pick_block("```python\nclass TestCases:\n    def test_a(self):\n        pass\n```", "TestCases", defines_test_cases).unwrap_err().kind(),
            "missing_definition"
        );
        assert_eq!(pick_block("```python\ndef (:\n```", "TestCases", defines_test_cases).unwrap_err().kind(), "syntax_error");
        assert_eq!(pick_block("", "TestCases", defines_test_cases).unwrap_err().kind(), "no_code_block");
    }

    #[test]
    fn imports_of_the_function_are_removed() {
        let tests = "import unittest\nfrom solution import add\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n";
        let (clean, removed) = clean_tests(tests, "add");
        assert_eq!(removed, ["import of add from solution"]);
        assert!(!clean.contains("from solution"));
        assert!(clean.contains("class TestCases"));
        let parsed = crate::python::parse_module(&clean, ruff_python_ast::PythonVersion::PY311);
        assert!(parsed.errors().is_empty());
    }
}
