//! Tables for people and for pipes: aligned, sized to the terminal and coloured where one
//! reads them; tab-separated rows, whole and plain, where a script does.

use std::cmp::Ordering;

use comfy_table::{Attribute, Cell, Color, ContentArrangement, Row, presets};

use crate::state::InstanceState;

/// How a cell should look: colour is a hint on top of the words, never the only signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// As is.
    Plain,
    /// Done well (green).
    Good,
    /// Under way, or worth a look (yellow).
    Busy,
    /// Failed (red).
    Bad,
    /// Not run, or nothing to show (dim).
    Quiet,
}

impl Tone {
    /// The tone of an instance state.
    pub fn of(state: InstanceState) -> Tone {
        match state {
            InstanceState::Succeeded => Tone::Good,
            InstanceState::Launching | InstanceState::Running | InstanceState::FollowingUp => {
                Tone::Busy
            }
            InstanceState::Failed | InstanceState::TimedOut | InstanceState::Cancelled => Tone::Bad,
            InstanceState::Pending | InstanceState::Blocked | InstanceState::Skipped => Tone::Quiet,
        }
    }
}

/// Where a table is shown: a terminal `width` columns wide, in colour or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    /// Columns.
    pub width: u16,
    /// Whether to colour.
    pub color: bool,
}

/// A table being built.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Tone)>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.toned(cells.into_iter().map(|c| (c.into(), Tone::Plain)))
    }

    /// Adds a row of cells with their tones.
    pub fn toned(&mut self, cells: impl IntoIterator<Item = (String, Tone)>) -> &mut Self {
        self.rows.push(cells.into_iter().collect());
        self
    }

    /// The table for a terminal, or tab-separated without one (`None`: piped).
    pub fn render(&self, terminal: Option<Terminal>) -> String {
        match terminal {
            None => self.tab_separated(),
            Some(terminal) => self.aligned(terminal),
        }
    }

    fn tab_separated(&self) -> String {
        let mut text = self.header.join("\t");
        text.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|(cell, _)| cell.replace(['\t', '\n'], " "))
                .collect();
            text.push_str(&cells.join("\t"));
            text.push('\n');
        }
        text
    }

    fn aligned(&self, terminal: Terminal) -> String {
        let mut table = comfy_table::Table::new();
        table
            .load_style(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(terminal.width)
            .set_truncation_indicator("…");
        if terminal.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        let header: Vec<Cell> = self
            .header
            .iter()
            .map(|name| {
                let cell = Cell::new(name);
                if terminal.color {
                    cell.add_attribute(Attribute::Bold)
                } else {
                    cell
                }
            })
            .collect();
        table.set_header(header);
        for cells in &self.rows {
            let mut row = Row::from(cells.iter().map(|(text, tone)| {
                let cell = Cell::new(text.lines().next().unwrap_or_default());
                match (terminal.color, tone) {
                    (false, _) | (true, Tone::Plain) => cell,
                    (true, Tone::Good) => cell.fg(Color::Green),
                    (true, Tone::Busy) => cell.fg(Color::Yellow),
                    (true, Tone::Bad) => cell.fg(Color::Red),
                    (true, Tone::Quiet) => cell.add_attribute(Attribute::Dim),
                }
            }));
            // One line a row: a long summary is cut to the terminal, not wrapped.
            row.max_height(1);
            table.add_row(row);
        }
        let lines: Vec<String> = table.lines().map(|l| l.trim_end().to_owned()).collect();
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// Agent ids shortened as git shortens hashes: `bc-3f2a91c0` for `bc-3f2a91c0-....`.
pub fn short_id(id: &str) -> String {
    let (prefix, rest) = match id.find(['-', '_']) {
        Some(at) if at <= 3 => id.split_at(at + 1),
        _ => ("", id),
    };
    let short: String = rest.chars().take(8).collect();
    format!("{prefix}{short}")
}

/// `svc-2` before `svc-10`: names compared with their numbers read as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let (na, nb) = (digits(a), digits(b));
                let (da, db) = (
                    a[..na].trim_start_matches('0'),
                    b[..nb].trim_start_matches('0'),
                );
                let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (&a[na..], &b[nb..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

/// The first line of `text`, at most `max` characters, cut between words with `…`.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    let at_word = cut
        .rfind(' ')
        .filter(|&at| at > max / 2)
        .unwrap_or(cut.len());
    format!("{}…", cut[..at_word].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&["INSTANCE", "STATE", "SUMMARY"]);
        table
            .toned([
                ("fix[acme/svc-1]".to_owned(), Tone::Plain),
                ("succeeded".to_owned(), Tone::Good),
                (
                    "Fixed the flaky test by waiting for the server to listen".to_owned(),
                    Tone::Plain,
                ),
            ])
            .row(["fix[acme/svc-10]", "failed", "-"]);
        table
    }

    #[test]
    fn piped_tables_are_whole_tab_separated_rows() {
        assert_eq!(
            sample().render(None),
            "INSTANCE\tSTATE\tSUMMARY\nfix[acme/svc-1]\tsucceeded\tFixed the flaky test by waiting for the server to listen\nfix[acme/svc-10]\tfailed\t-\n"
        );
    }

    #[test]
    fn terminal_tables_are_aligned_and_cut_to_the_width() {
        let text = sample().render(Some(Terminal {
            width: 60,
            color: false,
        }));
        insta::assert_snapshot!(text, @r"
        INSTANCE          STATE      SUMMARY
        fix[acme/svc-1]   succeeded  Fixed the flaky test by…
        fix[acme/svc-10]  failed     -
        ");
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        let colored = sample().render(Some(Terminal {
            width: 60,
            color: true,
        }));
        assert!(colored.contains("\u{1b}["), "{colored}");
    }

    #[test]
    fn ids_are_short_and_names_sort_by_their_numbers() {
        assert_eq!(
            short_id("bc-3f2a91c0-1111-2222-3333-444455556666"),
            "bc-3f2a91c0"
        );
        assert_eq!(short_id("bc_abcdef123456"), "bc_abcdef12");
        let mut names = vec!["svc-10", "svc-2", "svc-1", "api"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["api", "svc-1", "svc-2", "svc-10"]);
        assert_eq!(
            first_line("Fixed the flaky test by waiting\nmore", 20),
            "Fixed the flaky…"
        );
    }
}
