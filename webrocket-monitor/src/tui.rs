//! The terminal UI: draws a [`View`] and refreshes it in place every
//! interval until q, Esc or Ctrl-C.
//!
//! The terminal is put back (raw mode off, main screen) on every way out:
//! a normal quit, an error (the guard's `Drop`) and a panic (the hook
//! ratatui installs in `try_init`).

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

use crate::sample::Sample;
use crate::snapshot::Snapshot;
use crate::source::Source;
use crate::view::{NodeInfo, Row, View, VHOST_COLUMNS};

/// Short headings for [`VHOST_COLUMNS`], so narrow columns keep them whole.
const VHOST_HEADERS: [&str; 5] = ["sessions", "authed", "users", "channels", "subs"];
const _: () = assert!(VHOST_HEADERS.len() == VHOST_COLUMNS.len());

/// Puts the terminal back when dropped.
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Whether `key` asks to quit: q, Esc or Ctrl-C (raw mode turns Ctrl-C
/// into a key instead of a signal).
pub fn is_quit(key: &KeyEvent) -> bool {
    if key.kind != KeyEventKind::Press {
        return false;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// Runs the UI until the user quits. `first` is the sample [`Source::open`]
/// took; a failed sample is shown in the status line and retried.
pub fn run(
    source: &Source,
    first: Sample,
    node: &NodeInfo,
    interval: Duration,
) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _guard = RestoreGuard;
    let mut previous = first;
    let mut snapshot = Snapshot::single(&previous);
    let mut status = format!("first sample; refreshing every {}", seconds(interval));
    let mut next = Instant::now() + interval;
    loop {
        let view = View::build(&snapshot, node);
        terminal.draw(|frame| draw(frame, &view, &status))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                if is_quit(&key) {
                    return Ok(());
                }
            }
            // Any other event (a resize) just redraws.
            continue;
        }
        match source.sample() {
            Ok(sample) => {
                snapshot = Snapshot::between(&previous, &sample);
                previous = sample;
                status = format!("refreshing every {}", seconds(interval));
            }
            Err(error) => status = format!("sample failed: {error}"),
        }
        next = Instant::now() + interval;
    }
}

fn seconds(interval: Duration) -> String {
    webrocket::config::units::format_duration(interval)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, view: &View, status: &str) {
    let [title, top, middle, bottom, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rows_height(view.traffic.len().max(view.sessions.len()))),
        Constraint::Length(rows_height(view.vhosts.len().max(1))),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            " webrocket-monitor ".bold().reversed(),
            format!("  {}", view.title).into(),
        ])),
        title,
    );
    let [traffic, sessions, backend] = Layout::horizontal([
        Constraint::Percentage(40),
        Constraint::Percentage(35),
        Constraint::Percentage(25),
    ])
    .areas(top);
    metric_table(frame, traffic, "Traffic", &view.traffic);
    metric_table(frame, sessions, "Sessions", &view.sessions);
    metric_table(frame, backend, "Workers & triggers", &view.backend);
    let [vhosts, nodes] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(middle);
    vhost_table(frame, vhosts, view);
    node_table(frame, nodes, view);
    let columns = if view.other.is_empty() { 2 } else { 3 };
    let areas =
        Layout::horizontal(vec![Constraint::Ratio(1, columns); columns as usize]).split(bottom);
    metric_table(frame, areas[0], "Closes by reason", &view.closes);
    metric_table(frame, areas[1], "Errors by id", &view.errors);
    if let Some(&area) = areas.get(2) {
        metric_table(frame, area, "Other counters", &view.other);
    }
    frame.render_widget(
        Paragraph::new(format!(" {status}  |  q, Esc or Ctrl-C to quit")).dim(),
        footer,
    );
}

/// Borders and a header line around `rows` table rows.
fn rows_height(rows: usize) -> u16 {
    u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3)
}

/// A bold header row: the first cell names the rows, the rest head numeric
/// columns and are right-aligned like the numbers below them.
fn header<'a>(first: &'a str, numeric: impl IntoIterator<Item = &'a str>) -> TableRow<'a> {
    let numeric = numeric
        .into_iter()
        .map(|name| Cell::from(Line::from(name).right_aligned()));
    TableRow::new(std::iter::once(Cell::from(first)).chain(numeric))
        .style(Style::new().add_modifier(Modifier::BOLD))
}

/// A bordered panel holding only a dim note.
fn note(frame: &mut Frame, area: Rect, title: &str, text: &str) {
    let block = Block::bordered().title(format!(" {title} "));
    frame.render_widget(Paragraph::new(text).dim().block(block), area);
}

fn metric_table(frame: &mut Frame, area: Rect, title: &str, rows: &[Row]) {
    if rows.is_empty() {
        note(frame, area, title, "none");
        return;
    }
    let body = rows.iter().map(|row| {
        TableRow::new(vec![
            Cell::from(row.name.as_str()),
            Cell::from(Line::from(row.total.as_str()).right_aligned()),
            Cell::from(Line::from(row.rate.as_str()).right_aligned()),
        ])
    });
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let table = Table::new(body, widths)
        .header(header("", ["total", "per s"]))
        .block(Block::bordered().title(format!(" {title} ")));
    frame.render_widget(table, area);
}

fn vhost_table(frame: &mut Frame, area: Rect, view: &View) {
    if view.vhosts.is_empty() {
        note(
            frame,
            area,
            "Vhosts",
            "per-vhost numbers are not published by this source",
        );
        return;
    }
    let body = view.vhosts.iter().map(|vhost| {
        let values = vhost
            .values
            .iter()
            .map(|v| Cell::from(Line::from(v.as_str()).right_aligned()));
        TableRow::new(std::iter::once(Cell::from(vhost.path.as_str())).chain(values))
    });
    let widths = std::iter::once(Constraint::Fill(2))
        .chain(VHOST_COLUMNS.iter().map(|_| Constraint::Fill(1)));
    let table = Table::new(body, widths)
        .header(header("vhost", VHOST_HEADERS))
        .block(Block::bordered().title(" Vhosts "));
    frame.render_widget(table, area);
}

fn node_table(frame: &mut Frame, area: Rect, view: &View) {
    let body = view.nodes.iter().map(|node| {
        TableRow::new(vec![
            Cell::from(node.name.as_str()),
            Cell::from(Line::from(node.role.as_str()).right_aligned()),
            Cell::from(Line::from(node.detail.as_str()).right_aligned()),
        ])
    });
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ];
    let table = Table::new(body, widths)
        .header(header("node", ["state", "sessions / traffic"]))
        .block(Block::bordered().title(" Cluster nodes "));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Values;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn render(values: &[(&str, i64)], width: u16, height: u16) -> String {
        let t0 = Instant::now();
        let older: Values = values.iter().map(|(l, _)| ((*l).to_owned(), 0)).collect();
        let newer: Values = values.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect();
        let snapshot = Snapshot::between(
            &Sample::new(t0, older),
            &Sample::new(t0 + Duration::from_secs(1), newer),
        );
        let node = NodeInfo {
            name: "n1".to_owned(),
            source: "files /run/n1".to_owned(),
        };
        let view = View::build(&snapshot, &node);
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, &view, "ok")).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn screen_shows_every_panel_and_the_numbers() {
        let screen = render(
            &[
                ("broker.messages_in", 1234),
                ("broker.sessions", 3),
                ("broker.closes.slow_consumer", 2),
                ("broker.errors.ACCESS_DENIED", 7),
                ("broker.vhosts./chat.sessions", 3),
            ],
            140,
            40,
        );
        for text in [
            "webrocket-monitor",
            "node n1",
            "Traffic",
            "Sessions",
            "Workers & triggers",
            "Vhosts",
            "Cluster nodes",
            "Closes by reason",
            "Errors by id",
            "messages in",
            "1,234",
            "1234/s",
            "slow_consumer (1008)",
            "ACCESS_DENIED",
            "/chat",
            "this node",
            "q, Esc or Ctrl-C to quit",
        ] {
            assert!(screen.contains(text), "{text:?} missing from\n{screen}");
        }
        assert!(!screen.contains("Other counters"), "{screen}");
    }

    #[test]
    fn other_counters_get_a_panel_when_present() {
        let screen = render(&[("tcp.accepted", 4)], 140, 40);
        assert!(screen.contains("Other counters"), "{screen}");
        assert!(screen.contains("tcp.accepted"), "{screen}");
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let screen = render(&[("broker.messages_in", 1)], 10, 4);
        assert_eq!(screen.lines().count(), 4);
    }

    #[test]
    fn quit_keys() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(!is_quit(&release));
    }
}
