//! A self-contained HTML page with inline SVG charts: no JavaScript, no fonts or styles
//! from the network, so it opens from disk, offline, and renders the same everywhere.
//! Every mark carries a `<title>` (its numbers on hover) and every chart is followed by a
//! table of the same numbers. Knows nothing of unitcoder's records: labels and values in,
//! markup out.

use std::fmt::Write as _;

/// Text for HTML and SVG (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// One bar: its label, its length, the number printed beside it, and its colour class
/// (`ok`, `bad`, `warn`, `muted`, or empty for the default).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub class: &'static str,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64, text: impl Into<String>) -> Bar {
        Bar { label: label.into(), value, text: text.into(), class: "" }
    }

    pub fn class(mut self, class: &'static str) -> Bar {
        self.class = class;
        self
    }
}

const WIDTH: f64 = 760.0;
/// The width of an average character of the 12 px labels (DejaVu Sans, the widest of the
/// usual sans-serif fonts), for the room labels get.
const CHAR_W: f64 = 7.0;

/// At most `max` characters, the cut marked (the full text stays in the tooltip).
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn svg_open(out: &mut String, name: &str, height: f64) {
    let _ = write!(
        out,
        r#"<svg class="chart" data-chart="{}" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img">"#,
        escape(name)
    );
}

/// Horizontal bars, one per row, labels on the left (a funnel, a top-N list).
pub fn bar_chart(name: &str, bars: &[Bar]) -> String {
    // Labels get the room the longest needs, within reason; longer ones are cut.
    let longest = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(0) as f64;
    let (row, label_w, right) = (24.0, (longest * CHAR_W + 16.0).clamp(80.0, 330.0), 150.0);
    let fits = ((label_w - 16.0) / CHAR_W).round() as usize;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let height = row * bars.len() as f64 + 8.0;
    let mut out = String::new();
    svg_open(&mut out, name, height);
    for (i, b) in bars.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let w = if max > 0.0 { (WIDTH - label_w - right) * b.value / max } else { 0.0 };
        let _ = write!(
            out,
            r#"<g><title>{label}: {text}</title><text class="label" x="{lx:.0}" y="{ty:.1}" text-anchor="end">{shown}</text><rect class="bar {class}" x="{label_w:.0}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="2"/><text class="value" x="{vx:.1}" y="{ty:.1}">{text}</text></g>"#,
            label = escape(&b.label),
            shown = escape(&shorten(&b.label, fits)),
            text = escape(&b.text),
            lx = label_w - 8.0,
            ty = y + row * 0.62,
            class = b.class,
            h = row - 6.0,
            vx = label_w + w.max(1.0) + 6.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// Vertical columns over ordered buckets (a histogram), with an optional marker line at a
/// position between buckets (`0.0` = left edge of the first, `n` = right edge of the last).
pub fn column_chart(name: &str, bars: &[Bar], marker: Option<(f64, &str)>) -> String {
    let (height, top, bottom, left) = (220.0, 22.0, 40.0, 40.0);
    let plot_h = height - top - bottom;
    let slot = (WIDTH - left - 10.0) / bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let mut out = String::new();
    svg_open(&mut out, name, height);
    let _ = write!(out, r#"<line class="axis" x1="{left}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}"/>"#, y = top + plot_h, x2 = WIDTH - 10.0);
    for (i, b) in bars.iter().enumerate() {
        let h = if max > 0.0 { plot_h * b.value / max } else { 0.0 };
        let x = left + slot * i as f64;
        let _ = write!(
            out,
            r#"<g><title>{label}: {text}</title><rect class="bar {class}" x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{h:.1}" rx="2"/><text class="value" x="{cx:.1}" y="{vy:.1}" text-anchor="middle">{text}</text><text class="label" x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{label}</text></g>"#,
            label = escape(&b.label),
            text = escape(&b.text),
            class = b.class,
            bx = x + slot * 0.12,
            by = top + plot_h - h,
            bw = slot * 0.76,
            cx = x + slot / 2.0,
            vy = top + plot_h - h - 5.0,
            ly = top + plot_h + 18.0,
        );
    }
    if let Some((at, label)) = marker {
        let x = left + slot * at;
        let _ = write!(
            out,
            r#"<g><title>{label}</title><line class="marker" x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{y2:.1}"/><text class="marker-label" x="{tx:.1}" y="{ty:.1}">{label}</text></g>"#,
            label = escape(label),
            y1 = top - 8.0,
            y2 = top + plot_h,
            tx = x + 4.0,
            ty = top - 10.0 + 12.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// A rate (0–1) over ordered steps, as points joined by a line.
pub fn line_chart(name: &str, points: &[(String, f64)]) -> String {
    let (height, top, bottom, left, right) = (220.0, 24.0, 40.0, 60.0, 60.0);
    let plot_h = height - top - bottom;
    // Each point in the middle of its own slot, so the first is clear of the axis labels.
    let slot = (WIDTH - left - right) / points.len().max(1) as f64;
    let xy = |i: usize, v: f64| (left + slot * (i as f64 + 0.5), top + plot_h * (1.0 - v.clamp(0.0, 1.0)));
    let mut out = String::new();
    svg_open(&mut out, name, height);
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = top + plot_h * (1.0 - tick);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{left}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}"/><text class="label" x="{tx:.1}" y="{ty:.1}" text-anchor="end">{p:.0}%</text>"#,
            x2 = WIDTH - right,
            tx = left - 6.0,
            ty = y + 4.0,
            p = tick * 100.0
        );
    }
    let path: Vec<String> = points.iter().enumerate().map(|(i, (_, v))| xy(i, *v)).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(out, r#"<polyline class="line" points="{}"/>"#, path.join(" "));
    for (i, (label, v)) in points.iter().enumerate() {
        let (x, y) = xy(i, *v);
        let _ = write!(
            out,
            r#"<g><title>{label}: {p:.1}%</title><circle class="point" cx="{x:.1}" cy="{y:.1}" r="5"/><text class="value" x="{x:.1}" y="{vy:.1}" text-anchor="middle">{p:.1}%</text><text class="label" x="{x:.1}" y="{ly:.1}" text-anchor="middle">{label}</text></g>"#,
            label = escape(label),
            p = v * 100.0,
            vy = y - 10.0,
            ly = top + plot_h + 20.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// A grid of labelled cells (rows × columns), each with a colour class and a tooltip.
pub struct Cell {
    pub text: String,
    pub class: &'static str,
    pub title: String,
}

pub fn grid_chart(name: &str, columns: &[String], rows: &[(String, Vec<Cell>)]) -> String {
    let (head, row_h, label_w) = (26.0, 26.0, 90.0);
    let col_w = (WIDTH - label_w - 10.0) / columns.len().max(1) as f64;
    let height = head + row_h * rows.len() as f64 + 6.0;
    let mut out = String::new();
    svg_open(&mut out, name, height);
    for (c, name) in columns.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text class="label" x="{x:.1}" y="18" text-anchor="middle">{}</text>"#,
            escape(name),
            x = label_w + col_w * (c as f64 + 0.5)
        );
    }
    for (r, (label, cells)) in rows.iter().enumerate() {
        let y = head + row_h * r as f64;
        let _ = write!(
            out,
            r#"<text class="label" x="{x:.1}" y="{ty:.1}" text-anchor="end">{}</text>"#,
            escape(label),
            x = label_w - 8.0,
            ty = y + row_h * 0.62
        );
        for (c, cell) in cells.iter().enumerate() {
            let x = label_w + col_w * c as f64;
            let _ = write!(
                out,
                r#"<g><title>{title}</title><rect class="cell {class}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="3"/><text class="cell-text" x="{cx:.1}" y="{ty:.1}" text-anchor="middle">{text}</text></g>"#,
                title = escape(&cell.title),
                class = cell.class,
                w = col_w - 4.0,
                h = row_h - 4.0,
                cx = x + col_w / 2.0 - 2.0,
                ty = y + row_h * 0.6,
                text = escape(&cell.text),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A table; cells are text (escaped here).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A page of sections, each a heading, an optional note and its body (charts, tables).
#[derive(Default)]
pub struct Page {
    pub title: String,
    /// Lines under the title (escaped here).
    pub subtitle: Vec<String>,
    /// Highlighted notes (a run in progress, warnings), escaped here.
    pub banners: Vec<String>,
    sections: Vec<String>,
}

impl Page {
    pub fn new(title: impl Into<String>) -> Page {
        Page { title: title.into(), ..Default::default() }
    }

    /// A section: `id` anchors it, `note` (text) explains it, `body` is markup.
    pub fn section(&mut self, id: &str, heading: &str, note: &str, body: String) {
        let note = if note.is_empty() { String::new() } else { format!("<p class=\"note\">{}</p>", escape(note)) };
        self.sections.push(format!("<section id=\"{}\"><h2>{}</h2>{note}{body}</section>", escape(id), escape(heading)));
    }

    pub fn render(&self) -> String {
        let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        let _ = write!(out, "<title>{}</title><style>{STYLE}</style></head><body><header><h1>{}</h1>", escape(&self.title), escape(&self.title));
        for line in &self.subtitle {
            let _ = write!(out, "<p class=\"subtitle\">{}</p>", escape(line));
        }
        for b in &self.banners {
            let _ = write!(out, "<p class=\"banner\">{}</p>", escape(b));
        }
        out.push_str("</header><main>");
        for s in &self.sections {
            out.push_str(s);
        }
        out.push_str("</main></body></html>\n");
        out
    }
}

/// A chart and the table of its numbers, as one figure.
pub fn figure(caption: &str, chart: String, numbers: String) -> String {
    format!("<figure>{chart}<figcaption>{}</figcaption>{numbers}</figure>", escape(caption))
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;background:#f6f7f9;color:#1d2430}\
header{background:#1d2430;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}\
.subtitle{margin:2px 0;color:#c9d1dc;font-size:13px}.banner{margin:8px 0 0;padding:6px 10px;background:#fff4d6;color:#5a4300;border-radius:4px;font-size:13px}\
main{max-width:860px;margin:0 auto;padding:12px 24px 40px}\
section{background:#fff;border:1px solid #e2e6ec;border-radius:8px;margin:18px 0;padding:14px 20px}\
h2{font-size:17px;margin:4px 0 6px}section p{font-size:14px}.note{color:#5b6573;font-size:13px;margin:4px 0 10px}\
figure{margin:8px 0 14px}figcaption{font-size:12px;color:#5b6573;margin:2px 0 6px}\
svg.chart{display:block;max-width:100%;height:auto}\
svg text{font-size:12px;fill:#1d2430}svg .value{fill:#3b4654}svg .label{fill:#1d2430}\
.bar{fill:#4c78a8}.bar.ok{fill:#54a24b}.bar.bad{fill:#e45756}.bar.warn{fill:#f58518}.bar.muted{fill:#9aa5b1}\
.axis{stroke:#9aa5b1}.grid{stroke:#e6e9ee}.line{fill:none;stroke:#4c78a8;stroke-width:2.5}.point{fill:#4c78a8}\
.marker{stroke:#e45756;stroke-width:2;stroke-dasharray:5 3}.marker-label{fill:#e45756;font-size:11px}\
.cell{fill:#e6e9ee}.cell.ok{fill:#9fd49a}.cell.warn{fill:#ffd08a}.cell.bad{fill:#f4a3a3}.cell-text{font-size:11px}\
table{border-collapse:collapse;font-size:12.5px;margin:4px 0 6px;width:100%}\
th,td{border-bottom:1px solid #edf0f3;padding:3px 8px;text-align:left;vertical-align:top}th{color:#5b6573;font-weight:600}\
td:nth-child(n+2){font-variant-numeric:tabular-nums}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_in_charts_and_tables() {
        let chart = bar_chart("x", &[Bar::new("<script>a&b", 1.0, "\"1\"")]);
        assert!(chart.contains("&lt;script&gt;a&amp;b") && !chart.contains("<script>"), "{chart}");
        let t = table(&["h<"], &[vec!["</td>".into()]]);
        assert!(t.contains("h&lt;") && t.contains("&lt;/td&gt;"), "{t}");
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let chart = bar_chart("x", &[Bar::new("a", 10.0, "10"), Bar::new("b", 5.0, "5")]);
        let widths: Vec<f64> = chart
            .split("width=\"")
            .skip(2) // the svg's own width
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(widths.len(), 2, "{chart}");
        assert!((widths[0] - 2.0 * widths[1]).abs() < 0.2, "{widths:?}");
    }

    #[test]
    fn a_page_has_no_external_resources() {
        let mut p = Page::new("t");
        p.section("s", "S", "note", figure("c", column_chart("h", &[Bar::new("a", 1.0, "1")], Some((0.5, "gate"))), String::new()));
        let html = p.render();
        for bad in ["<script", "<link", "@import", "url(", "src="] {
            assert!(!html.contains(bad), "{bad} in page");
        }
        assert!(html.contains("data-chart=\"h\"") && html.contains("gate"));
    }
}
