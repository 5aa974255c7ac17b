//! webrocket-monitor: live statistics of a webrocket node.
//!
//! # Layout
//!
//! - [`args`]: flags, and how they combine with the server's config file.
//! - [`source`]: samples from the control files' counters (primary) or the
//!   admin API's `/stats` (I/O).
//! - [`sample`], [`snapshot`]: values, and rates between two samples (pure).
//! - [`view`], [`format`]: what is shown, as text (pure).
//! - [`report`]: `--once` plain text and `--json` (pure).
//! - [`tui`]: the terminal UI.
#![deny(unsafe_code)]

mod args;
mod format;
mod report;
mod sample;
mod snapshot;
mod source;
mod tui;
mod view;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::args::Args;
use crate::sample::Sample;
use crate::snapshot::Snapshot;
use crate::source::Source;
use crate::view::{NodeInfo, View};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("webrocket-monitor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let target = args.target()?;
    let (source, first) = Source::open(&target)?;
    let node = NodeInfo {
        name: target.node_name.clone(),
        source: source.describe(),
    };
    if args.once {
        let snapshot = second_sample(&source, &first, args.interval)?;
        let text = if args.json {
            format!("{:#}\n", report::json(&snapshot, &node))
        } else {
            report::plain(&View::build(&snapshot, &node))
        };
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    if args.json {
        return json_lines(&source, first, &node, args.interval);
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("stdout is not a terminal: use --once or --json");
    }
    tui::run(&source, first, &node, args.interval).context("terminal UI")
}

/// Sleeps one interval and samples again: rates over exactly that interval.
fn second_sample(source: &Source, first: &Sample, interval: Duration) -> anyhow::Result<Snapshot> {
    std::thread::sleep(interval);
    let second = source.sample()?;
    Ok(Snapshot::between(first, &second))
}

/// One compact JSON document per interval, until stdout closes.
fn json_lines(
    source: &Source,
    first: Sample,
    node: &NodeInfo,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut previous = first;
    let mut stdout = std::io::stdout().lock();
    loop {
        std::thread::sleep(interval);
        let sample = source.sample()?;
        let snapshot = Snapshot::between(&previous, &sample);
        if writeln!(stdout, "{}", report::json(&snapshot, node))
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (e.g. `| head`): that is the end.
            return Ok(());
        }
        previous = sample;
    }
}
