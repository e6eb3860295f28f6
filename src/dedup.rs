//! Code similarity for export: normalised code tokens, n-gram containment against benchmark
//! solutions (decontamination), and MinHash/LSH near-duplicate detection.
//!
//! Normalisation: comments and string literals (docstrings included) are dropped, so a
//! solution with a new docstring is still the same solution. For near-duplicates,
//! identifiers other than keywords and attribute names also become one placeholder, so a
//! renamed copy (function, parameters, locals) is still a copy.

use std::collections::{HashMap, HashSet};

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else", "except",
    "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Code tokens: identifiers, numbers and operator characters; no comments, strings or
/// whitespace. With `abstract_names`, non-keyword identifiers not preceded by `.` become `v`.
pub fn code_tokens(text: &str, abstract_names: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' {
            // A string literal (prefixes were read as an identifier just before; drop it).
            if let Some(last) = tokens.last() {
                if last.len() <= 2 && last.chars().all(|p| "rRbBuUfF".contains(p)) && !KEYWORDS.contains(&last.as_str()) {
                    tokens.pop();
                }
            }
            let triple = i + 2 < chars.len() && chars[i + 1] == c && chars[i + 2] == c;
            i += if triple { 3 } else { 1 };
            while i < chars.len() {
                if chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if triple {
                    if chars[i] == c && i + 2 < chars.len() && chars[i + 1] == c && chars[i + 2] == c {
                        i += 3;
                        break;
                    }
                } else if chars[i] == c || chars[i] == '\n' {
                    i += 1;
                    break;
                }
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after_dot = tokens.last().is_some_and(|t| t == ".");
            if abstract_names && !after_dot && !KEYWORDS.contains(&word.as_str()) {
                tokens.push("v".into());
            } else {
                tokens.push(word);
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

fn hash64(parts: &[String]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\x1f");
    }
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Hashes of all token n-grams (a set).
pub fn ngram_set(tokens: &[String], n: usize) -> HashSet<u64> {
    if tokens.len() < n || n == 0 {
        return HashSet::new();
    }
    tokens.windows(n).map(hash64).collect()
}

/// Benchmark solutions indexed by their n-grams.
pub struct ContaminationIndex {
    pub n: usize,
    /// n-gram → benchmark task indices.
    grams: HashMap<u64, Vec<u32>>,
    /// (benchmark name, task id, number of n-grams) per task.
    tasks: Vec<(String, String, usize)>,
}

/// A record that overlaps a benchmark task.
#[derive(Debug, Clone, PartialEq)]
pub struct Contamination {
    pub benchmark: String,
    pub task_id: String,
    /// |shared n-grams| / min(|record n-grams|, |task n-grams|).
    pub containment: f64,
}

impl ContaminationIndex {
    pub fn new(n: usize) -> Self {
        Self { n, grams: HashMap::new(), tasks: Vec::new() }
    }

    pub fn add(&mut self, benchmark: &str, task_id: &str, text: &str) {
        let set = ngram_set(&code_tokens(text, false), self.n);
        if set.is_empty() {
            return;
        }
        let idx = self.tasks.len() as u32;
        self.tasks.push((benchmark.to_string(), task_id.to_string(), set.len()));
        for g in set {
            self.grams.entry(g).or_default().push(idx);
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// The benchmarks indexed, sorted.
    pub fn benchmarks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tasks.iter().map(|(b, _, _)| b.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The most overlapping task if its containment reaches `threshold`.
    pub fn check(&self, code: &str, threshold: f64) -> Option<Contamination> {
        let set = ngram_set(&code_tokens(code, false), self.n);
        if set.is_empty() {
            return None;
        }
        let mut shared: HashMap<u32, usize> = HashMap::new();
        for g in &set {
            if let Some(ts) = self.grams.get(g) {
                for t in ts {
                    *shared.entry(*t).or_default() += 1;
                }
            }
        }
        let best = shared
            .into_iter()
            .map(|(t, k)| (t, k as f64 / set.len().min(self.tasks[t as usize].2).max(1) as f64))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
        (best.1 >= threshold).then(|| {
            let (benchmark, task_id, _) = &self.tasks[best.0 as usize];
            Contamination { benchmark: benchmark.clone(), task_id: task_id.clone(), containment: best.1 }
        })
    }
}

/// Lower-cased words and numbers of natural-language text (for near-duplicate problems).
pub fn text_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// MinHash signatures with banded LSH, for near-duplicate removal in input order.
pub struct NearDuplicates {
    shingle: usize,
    perms: usize,
    bands: usize,
    threshold: f64,
    seeds: Vec<u64>,
    buckets: Vec<HashMap<u64, Vec<u32>>>,
    signatures: Vec<Vec<u64>>,
}

impl NearDuplicates {
    /// `threshold`: estimated Jaccard similarity of token shingles at or above which a
    /// record is a near-duplicate of an earlier kept one. Bands are chosen so that pairs
    /// near the threshold almost always share a bucket.
    pub fn new(threshold: f64, shingle: usize) -> Self {
        let perms = 128;
        // LSH S-curve midpoint (1/b)^(1/r) ≈ threshold - 0.1 keeps recall high; every
        // candidate is confirmed with the signature estimate.
        let target = (threshold - 0.1).clamp(0.2, 0.95);
        let (mut bands, mut best) = (16, f64::MAX);
        for b in [4usize, 8, 16, 32, 64] {
            let r = perms / b;
            let mid = (1.0 / b as f64).powf(1.0 / r as f64);
            if (mid - target).abs() < best {
                best = (mid - target).abs();
                bands = b;
            }
        }
        let seeds = (0..perms as u64).map(|i| hash64(&[format!("minhash-seed-{i}")])).collect();
        Self { shingle, perms, bands, threshold, seeds, buckets: vec![HashMap::new(); bands], signatures: Vec::new() }
    }

    fn signature(&self, tokens: &[String]) -> Option<Vec<u64>> {
        let set = ngram_set(tokens, self.shingle);
        if set.is_empty() {
            return None;
        }
        Some(
            self.seeds
                .iter()
                .map(|seed| set.iter().map(|g| (g ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31)).min().unwrap_or(u64::MAX))
                .collect(),
        )
    }

    /// Index of the kept record `code` nearly duplicates (with the estimated similarity);
    /// otherwise remember `code` as kept and return `None`.
    pub fn check_and_insert(&mut self, code: &str) -> Option<(usize, f64)> {
        self.check_and_insert_tokens(&code_tokens(code, true))
    }

    /// The same for any token sequence (e.g. `text_tokens` of a problem statement).
    pub fn check_and_insert_tokens(&mut self, tokens: &[String]) -> Option<(usize, f64)> {
        let sig = self.signature(tokens)?;
        let rows = self.perms / self.bands;
        let band_keys: Vec<u64> =
            (0..self.bands).map(|b| hash64(&sig[b * rows..(b + 1) * rows].iter().map(u64::to_string).collect::<Vec<_>>())).collect();
        let mut candidates: Vec<u32> = band_keys.iter().enumerate().filter_map(|(b, k)| self.buckets[b].get(k)).flatten().copied().collect();
        candidates.sort_unstable();
        candidates.dedup();
        for c in candidates {
            let other = &self.signatures[c as usize];
            let same = sig.iter().zip(other).filter(|(a, b)| a == b).count();
            let jaccard = same as f64 / self.perms as f64;
            if jaccard >= self.threshold {
                return Some((c as usize, jaccard));
            }
        }
        let idx = self.signatures.len() as u32;
        for (b, k) in band_keys.into_iter().enumerate() {
            self.buckets[b].entry(k).or_default().push(idx);
        }
        self.signatures.push(sig);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLUTION: &str = "import numpy as np\n\ndef task_func(values, bins=10):\n    counts, edges = np.histogram(values, bins=bins)\n    centers = (edges[:-1] + edges[1:]) / 2\n    best = int(np.argmax(counts))\n    return float(centers[best]), int(counts[best])\n";

    #[test]
    fn tokens_drop_comments_and_strings() {
        let t = code_tokens("x = f'a{b}' # c\ny = \"\"\"doc\nstring\"\"\" + r'z'\n", false);
        assert_eq!(t, vec!["x", "=", "y", "=", "+"]);
        assert_eq!(code_tokens("foo.bar(baz)", true), vec!["v", ".", "bar", "(", "v", ")"]);
    }

    #[test]
    fn planted_solution_is_caught_and_unrelated_code_is_not() {
        let mut idx = ContaminationIndex::new(10);
        idx.add("bigcodebench", "BigCodeBench/7", SOLUTION);
        let planted = format!(
            "{}\n",
            SOLUTION.replace(
                "def task_func(values, bins=10):\n",
                "def task_func(values, bins=10):\n    \"\"\"A brand new docstring.\"\"\"\n    # comment\n"
            )
        );
        let hit = idx.check(&planted, 0.5).expect("caught");
        assert_eq!(hit.task_id, "BigCodeBench/7");
        assert!(hit.containment > 0.9);
        assert!(idx.check("import os\n\ndef walk(p):\n    return [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs]\n", 0.5).is_none());
    }

    #[test]
    fn renamed_copy_is_a_near_duplicate() {
        let mut nd = NearDuplicates::new(0.8, 5);
        assert!(nd.check_and_insert(SOLUTION).is_none());
        let renamed = SOLUTION.replace("task_func", "peak_bin").replace("values", "xs").replace("counts", "hist").replace("centers", "mid");
        let (first, sim) = nd.check_and_insert(&renamed).expect("near duplicate");
        assert_eq!(first, 0);
        assert!(sim >= 0.8);
        let different = "import pandas as pd\n\ndef load(path, sep=','):\n    df = pd.read_csv(path, sep=sep)\n    df = df.dropna(how='all')\n    return df.describe().T\n";
        assert!(nd.check_and_insert(different).is_none());
    }
}
