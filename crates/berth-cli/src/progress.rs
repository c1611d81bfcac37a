//! Transfer progress for the terminal: a bar per blob (indicatif) when stderr is a
//! terminal, one plain line per finished blob otherwise, nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use berth_client::transfer::{BlobOutcome, Progress};
use berth_oci::digest::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How progress is shown.
pub enum Display {
    /// Bars on a terminal.
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<Digest, ProgressBar>>,
    },
    /// A line per blob on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl Display {
    /// Bars if stderr is a terminal, lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars {
                multi: MultiProgress::new(),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Display::Lines
        }
    }

    /// Print a line on stderr without breaking the bars.
    pub fn line(&self, msg: &str) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(msg);
            }
            Display::Lines => eprintln!("{msg}"),
            Display::Quiet => {}
        }
    }
}

fn short(d: &Digest) -> String {
    format!(
        "{}:{}",
        d.algorithm().as_str(),
        &d.hex()[..12.min(d.hex().len())]
    )
}

impl Progress for Display {
    fn start(&self, digest: &Digest, size: u64) {
        if let Display::Bars { multi, bars } = self {
            let bar = multi.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(short(digest));
            bars.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(digest.clone(), bar);
        }
    }

    fn advance(&self, digest: &Digest, n: u64) {
        if let Display::Bars { bars, .. } = self
            && let Some(b) = bars
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(digest)
        {
            b.inc(n);
        }
    }

    fn finish(&self, digest: &Digest, outcome: BlobOutcome) {
        let what = match outcome {
            BlobOutcome::Copied => "copied",
            BlobOutcome::Skipped => "already present",
            BlobOutcome::Mounted => "mounted",
        };
        match self {
            Display::Bars { bars, .. } => {
                if let Some(b) = bars
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(digest)
                {
                    b.finish_with_message(what);
                }
            }
            Display::Lines => eprintln!("{}: {what}", short(digest)),
            Display::Quiet => {}
        }
    }
}
