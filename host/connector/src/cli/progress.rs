//! Progress bars for long runs when stderr is a terminal (nothing when it
//! is not), and a log writer that keeps log lines from tearing the bars.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::RunObserver;
use connector_state::{RunCounts, RunId};

/// One spinner per running connector: pages, messages, imported.
pub struct Progress {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    /// Progress on stderr, or `None` when stderr is not a terminal.
    pub fn for_stderr() -> Option<Progress> {
        std::io::stderr().is_terminal().then(|| Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    }

    /// A log writer that hides the bars while a line is written.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            multi: Some(self.multi.clone()),
        }
    }

    fn bar(&self, connector: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(connector.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(connector.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }

    /// Ends the connector's bar, leaving its last line.
    pub fn finish(&self, connector: &str) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connector)
        {
            bar.finish();
        }
    }
}

impl RunObserver for Progress {
    fn run_started(&self, connector: &str, run: RunId) {
        self.bar(connector)
            .set_message(format!("run {run} started"));
    }

    fn page_committed(&self, connector: &str, total: &RunCounts) {
        self.bar(connector)
            .set_message(crate::report::counts::summary(total));
    }
}

/// Writes log lines to stderr, around the progress bars when there are any.
#[derive(Clone, Default)]
pub struct LogWriter {
    multi: Option<MultiProgress>,
}

/// One log line being written.
pub struct LogLine {
    buf: Vec<u8>,
    multi: Option<MultiProgress>,
}

impl Write for LogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let write = || {
            let _ = std::io::stderr().write_all(&buf);
        };
        match &self.multi {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::new(),
            multi: self.multi.clone(),
        }
    }
}
