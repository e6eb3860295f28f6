//! Prompt templates: one minijinja file per LLM task, `prompts/<name>.j2`, built into the
//! binary; a file of the same name in `--prompts DIR` overrides it. A rendered template is
//! split into chat messages at lines `### system`, `### user`, `### assistant`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::client::Message;

/// Built-in templates by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("gen_tests", include_str!("../../prompts/gen_tests.j2")),
    ("fix", include_str!("../../prompts/fix.j2")),
    ("refine", include_str!("../../prompts/refine.j2")),
    ("case2code_inputs", include_str!("../../prompts/case2code_inputs.j2")),
    ("problems_generate", include_str!("../../prompts/problems_generate.j2")),
    ("problems_rate", include_str!("../../prompts/problems_rate.j2")),
    ("consensus_tests", include_str!("../../prompts/consensus_tests.j2")),
    ("consensus_solve", include_str!("../../prompts/consensus_solve.j2")),
];

pub struct Prompts {
    env: minijinja::Environment<'static>,
    /// Content hash of each template's text (part of a stage's fingerprint).
    hashes: std::collections::BTreeMap<String, String>,
}

impl Prompts {
    /// Load the built-in templates, then any `<name>.j2` in `override_dir`.
    pub fn load(override_dir: &str) -> Result<Prompts> {
        let mut env = minijinja::Environment::new();
        let mut hashes = std::collections::BTreeMap::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, source) in BUILT_IN {
            let path = Path::new(override_dir).join(format!("{name}.j2"));
            let text = if !override_dir.is_empty() && path.is_file() {
                std::fs::read_to_string(&path).with_context(|| format!("cannot read prompt {}", path.display()))?
            } else {
                source.to_string()
            };
            hashes.insert(name.to_string(), crate::hash::content_id(&text));
            env.add_template_owned(name.to_string(), text).with_context(|| format!("prompt template {name} does not parse"))?;
        }
        Ok(Prompts { env, hashes })
    }

    /// Content hash of template `name` (changes when the template text changes).
    pub fn source(&self, name: &str) -> String {
        self.hashes.get(name).cloned().unwrap_or_default()
    }

    /// Render template `name` with `context` into chat messages.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<Vec<Message>> {
        let template = self.env.get_template(name).with_context(|| format!("no prompt template {name}"))?;
        let text = template.render(context).with_context(|| format!("prompt {name} failed to render"))?;
        split_messages(&text)
    }
}

/// Split rendered text into messages at `### <role>` lines.
pub fn split_messages(text: &str) -> Result<Vec<Message>> {
    let mut messages: Vec<Message> = Vec::new();
    for line in text.split_inclusive('\n') {
        let marker = line.trim_end();
        if let Some(role) = marker.strip_prefix("### ").filter(|r| matches!(*r, "system" | "user" | "assistant")) {
            messages.push(Message { role: role.to_string(), content: String::new() });
        } else if let Some(last) = messages.last_mut() {
            last.content.push_str(line);
        } else if !line.trim().is_empty() {
            bail!("prompt text before the first `### system|user|assistant` line");
        }
    }
    for m in &mut messages {
        m.content = m.content.trim().to_string();
    }
    if messages.iter().all(|m| m.role != "user") {
        bail!("prompt has no `### user` message");
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_gen_tests_prompt_renders() {
        let p = Prompts::load("").unwrap();
        let msgs = p
            .render("gen_tests", serde_json::json!({"code": "import os\n\ndef f(a):\n    return a\n", "function": "", "entry_point": "f", "imports": ["import os"], "packages": ["os"]}))
            .unwrap();
        assert_eq!(msgs.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user"]);
        assert!(msgs[1].content.contains("Function name: f"));
        assert!(msgs[1].content.contains("def f(a):"));
        assert!(msgs[1].content.contains("`import os`"));
    }

    #[test]
    fn refine_prompt_reads_as_sentences() {
        let p = Prompts::load("").unwrap();
        let msgs = p
            .render("refine", serde_json::json!({"code": "def f(a):\n    return a\n", "tests": "T", "entry_point": "f", "signature": "def f(a)"}))
            .unwrap();
        let user = &msgs[1].content;
        assert!(user.contains("Function name: f\n\nIt passes the unit tests shown after it"), "{user}");
        // No line that starts with a stray space (the broken sentence did).
        assert!(!user.lines().any(|l| l.starts_with(' ') && !l.starts_with("  ")), "{user}");
    }

    #[test]
    fn override_dir_replaces_a_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gen_tests.j2"), "### user\nTest {{ entry_point }} please.\n").unwrap();
        let p = Prompts::load(dir.path().to_str().unwrap()).unwrap();
        let msgs = p.render("gen_tests", serde_json::json!({"entry_point": "g"})).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].content, "Test g please.");
    }

    #[test]
    fn strict_undefined_variables() {
        let p = Prompts::load("").unwrap();
        assert!(p.render("gen_tests", serde_json::json!({"entry_point": "f"})).is_err());
    }
}
