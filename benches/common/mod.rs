//! What the benches share: writing their section of bench/RESULTS.md.

use std::path::Path;

/// Replace the `<!-- name:begin -->` … `<!-- name:end -->` section of bench/RESULTS.md with
/// `section` (which carries both markers), or append it; notes outside the markers stay.
pub fn write_results_section(name: &str, section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/RESULTS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->\n"));
    let text = match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) => format!("{}{}{}", &text[..a], section, &text[b + end.len()..]),
        _ => format!("{text}\n{section}"),
    };
    std::fs::write(&path, text).expect("write RESULTS.md");
}
