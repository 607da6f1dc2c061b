//! Human output: aligned tables, key/value blocks, byte sizes and ages.

use std::io::Write;

use serde::Serialize;
use shoal_protocol::UnixMillis;

/// A table of left-aligned columns separated by two spaces.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, without trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(width(cell));
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (cell, w) in row.iter().zip(&widths) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell) + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<w$}  {v}\n", format!("{k}:"), w = key_width + 1))
        .collect()
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Bytes in binary units with one decimal: `512B`, `3.1G`, `15.6G`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// How long ago `then` was, seen from `now`: `2s ago`, `5m ago`, `3h ago`, `2d ago`.
///
/// `0` means it never happened; a time in the future (clock skew) reads as `0s ago`.
pub fn age(now: UnixMillis, then: UnixMillis) -> String {
    if then == 0 {
        return "never".to_string();
    }
    format!("{} ago", duration(now.saturating_sub(then)))
}

/// A duration in its largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub fn duration(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A ratio such as CPU use (0.0 to 1.0) as a whole percentage.
pub fn percent(ratio: f32) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// An optional number, `-` when absent.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A command line as a shell would read it back: `sh -c 'echo hi; exit 3'`.
pub fn shell_join(args: &[String]) -> String {
    let quote = |arg: &String| {
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-+=.,:/@%".contains(c));
        if plain {
            arg.clone()
        } else {
            format!("'{}'", arg.replace('\'', "'\\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, the last one an ellipsis when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A line on stderr from the CLI itself, set apart from a job's own output.
pub fn note(text: &str) {
    eprintln!("shoal: {text}");
}

pub use shoal_protocol::now_ms;

/// Writes `text` to stdout as whole lines (a newline is added where it has none); a closed
/// pipe (`shoal machines ls | head`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.is_empty() && !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

/// Prints a value as pretty JSON.
/// `--json` of a list: the API's envelope, `{"<name>": [...]}`, the shape every list
/// prints (one thing prints as itself).
pub fn print_json_list<T: Serialize>(name: &str, items: &[T]) {
    print_json(&serde_json::json!({ name: items }));
}

pub fn print_json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("protocol types serialize");
    print(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1024), "1.0K");
        assert_eq!(human_bytes(3_328_599_654), "3.1G");
        assert_eq!(human_bytes(16_750_372_454), "15.6G");
        assert_eq!(human_bytes(2 * 1024u64.pow(4)), "2.0T");
        assert_eq!(human_bytes(u64::MAX), "16.0E");
    }

    #[test]
    fn ages_pick_the_largest_unit() {
        let now = 1_000_000_000;
        assert_eq!(age(now, now - 2_400), "2s ago");
        assert_eq!(age(now, now - 59_999), "59s ago");
        assert_eq!(age(now, now - 60_000), "1m ago");
        assert_eq!(age(now, now - 3 * 3_600_000 - 5), "3h ago");
        assert_eq!(age(now, now - 2 * 86_400_000), "2d ago");
        assert_eq!(age(now, now + 5_000), "0s ago");
        assert_eq!(age(now, 0), "never");
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "NAME", "STATUS"]);
        table.row(vec!["a1".into(), "attic-server".into(), "ONLINE".into()]);
        table.row(vec!["b2".into(), "pi".into(), "".into()]);
        assert_eq!(
            table.render(),
            "ID  NAME          STATUS\n\
             a1  attic-server  ONLINE\n\
             b2  pi\n"
        );
    }

    #[test]
    fn key_values_align_values() {
        let text = key_values(&[("id", "ab".into()), ("last seen", "2s ago".into())]);
        assert_eq!(text, "id:         ab\nlast seen:  2s ago\n");
    }

    #[test]
    fn commands_read_back_as_shell_words() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shell_join(&args(&["echo", "hi"])), "echo hi");
        assert_eq!(
            shell_join(&args(&["sh", "-c", "echo hi; exit 3"])),
            "sh -c 'echo hi; exit 3'"
        );
        assert_eq!(
            shell_join(&args(&["echo", "it's", ""])),
            r"echo 'it'\''s' ''"
        );
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
    }

    #[test]
    fn small_helpers() {
        assert_eq!(percent(0.123), "12%");
        assert_eq!(or_dash(Some(7)), "7");
        assert_eq!(or_dash(None::<u64>), "-");
    }
}
