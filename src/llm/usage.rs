//! Tokens of one answer. `usage` is trusted when it can cover every choice; llama.cpp's
//! server reports it for one choice only when `n` > 1, and some servers send none. Then the
//! count is estimated from the reply text and flagged, so that budgets and costs are not
//! low by up to n×.

/// Characters per token used for estimates (code and English with BPE tokenizers).
const CHARS_PER_TOKEN: f64 = 4.0;
/// No tokenizer packs more characters than this into one token on average: a reported
/// count below `chars / this` cannot include that text.
const MAX_CHARS_PER_TOKEN: f64 = 6.0;

/// One choice as accounting sees it.
pub struct ChoiceText<'a> {
    pub text: &'a str,
    /// Cut at `max_tokens`: then it used exactly that many.
    pub hit_max_tokens: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    /// Some of these counts are estimates, not the server's.
    pub estimated: bool,
}

pub fn estimate(chars: usize) -> u64 {
    ((chars as f64 / CHARS_PER_TOKEN).ceil() as u64).max(1)
}

/// The tokens of an answer with `choices`, from the server's `usage` when it can be right.
pub fn account(
    reported_prompt: Option<u64>,
    reported_completion: Option<u64>,
    prompt_chars: usize,
    choices: &[ChoiceText],
    max_tokens: u32,
) -> Tokens {
    let max_tokens = u64::from(max_tokens);
    let estimate_of = |c: &ChoiceText| if c.hit_max_tokens { max_tokens } else { estimate(c.text.chars().count()) };
    let floor_of = |c: &ChoiceText| if c.hit_max_tokens { max_tokens } else { (c.text.chars().count() as f64 / MAX_CHARS_PER_TOKEN).ceil() as u64 };
    let (prompt, mut estimated) = match reported_prompt {
        Some(p) if p > 0 => (p, false),
        _ => (estimate(prompt_chars), true),
    };
    let completion = match reported_completion {
        Some(c) if choices.len() <= 1 && (c > 0 || choices.iter().all(|ch| ch.text.is_empty())) => c,
        Some(c) if c >= choices.iter().map(floor_of).sum::<u64>() => c,
        reported => {
            estimated = true;
            choices.iter().map(estimate_of).sum::<u64>().max(reported.unwrap_or(0))
        }
    };
    Tokens { prompt, completion, estimated }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str, cut: bool) -> ChoiceText<'_> {
        ChoiceText { text, hit_max_tokens: cut }
    }

    #[test]
    fn usage_of_one_choice_is_trusted() {
        let t = account(Some(32), Some(20), 100, &[c("Hello there, how can I help you today?", false)], 200);
        assert_eq!(t, Tokens { prompt: 32, completion: 20, estimated: false });
    }

    #[test]
    fn llama_cpp_usage_for_n_above_one_is_replaced_by_an_estimate() {
        // Seen from llama-server: n = 2, one reply cut at 20 tokens, usage says 20 in all.
        let choices = [
            c("Hello there. I'm here to help with whatever you need. How can I assist you today?", true),
            c("I'm here to help with anything! How about you?", false),
        ];
        let t = account(Some(32), Some(20), 100, &choices, 20);
        assert!(t.estimated);
        assert_eq!(t.completion, 20 + 12);
        // Four similar replies reported as one.
        let text = "x = compute(value)\n".repeat(20);
        let four = [c(&text, false), c(&text, false), c(&text, false), c(&text, false)];
        let one = estimate(text.len());
        let t = account(Some(10), Some(one), 50, &four, 2048);
        assert!(t.estimated && t.completion == 4 * one, "{t:?}");
    }

    #[test]
    fn honest_usage_for_several_choices_is_kept() {
        let text = "def f(x):\n    return x + 1\n".repeat(5);
        let two = [c(&text, false), c(&text, false)];
        let t = account(Some(10), Some(70), 50, &two, 2048);
        assert_eq!(t, Tokens { prompt: 10, completion: 70, estimated: false });
    }

    #[test]
    fn missing_usage_is_estimated() {
        let t = account(None, None, 400, &[c("abcdefgh", false)], 2048);
        assert_eq!(t, Tokens { prompt: 100, completion: 2, estimated: true });
    }
}
