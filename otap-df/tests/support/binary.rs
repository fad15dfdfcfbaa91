//! `otap-df run` as a child process: its standard error read line by line, signals, the
//! progress and final lines.

use std::path::Path;
use std::process::Command;

/// The `out=` count of node `node` in a progress or final line.
pub fn records_out(line: &str, node: &str) -> Option<u64> {
    let part = line
        .split(" | ")
        .map(|part| {
            part.trim_start_matches("progress: ")
                .trim_start_matches("final: ")
        })
        .find(|part| part.starts_with(&format!("{node} ")))?;
    part.split(' ')
        .find_map(|field| field.strip_prefix("out="))
        .and_then(|n| n.parse().ok())
}

type Stderr = std::io::Lines<std::io::BufReader<std::process::ChildStderr>>;

/// A running `otap-df run` with its standard error read line by line.
pub struct RunningBinary {
    child: std::process::Child,
    /// Standard error, until it is drained in the background.
    stderr: Option<Stderr>,
    /// The lines read so far.
    pub seen: Vec<String>,
    /// Reads standard error while the test does something else for long (see
    /// [`drain_in_background`](Self::drain_in_background)).
    draining: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl RunningBinary {
    /// `otap-df run --progress-interval 0.1 <config>`.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// [`start`](Self::start) with more flags.
    pub fn start_with(config: &Path, flags: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_otap-df"));
        command.args(["run", "--progress", "--progress-interval", "0.1"]);
        command.args(flags).arg(config);
        Self::spawn(command)
    }

    /// [`start`](Self::start) with at most `descriptors` open files (a shell's `ulimit -n`).
    pub fn start_with_fd_limit(config: &Path, descriptors: u32) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_otap-df"))
            .args(["run", "--progress", "--progress-interval", "0.1"])
            .arg(config);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the otap-df binary starts");
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        Self {
            child,
            stderr: Some(stderr),
            seen: Vec::new(),
            draining: None,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// From now on standard error is read on a thread of its own (the lines come back with
    /// [`finish`](Self::finish)), so that a long run cannot fill the pipe and block the
    /// process; [`wait_for`](Self::wait_for) sees nothing more.
    pub fn drain_in_background(&mut self) {
        let stderr = self.stderr.take().expect("standard error is read here");
        self.draining = Some(std::thread::spawn(move || {
            stderr.map(|line| line.expect("stderr line")).collect()
        }));
    }

    /// Reads standard error until a line satisfies `done`; panics if the process ends first.
    pub fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        for line in self
            .stderr
            .as_mut()
            .expect("standard error is read here")
            .by_ref()
        {
            let line = line.expect("stderr line");
            self.seen.push(line.clone());
            if done(&line) {
                return;
            }
        }
        panic!("the process ended before {what}: {:?}", self.seen);
    }

    /// Waits until `node` has sent records.
    pub fn wait_flowing(&mut self, node: &str) {
        self.wait_for("records flowed", |line| {
            line.starts_with("progress:") && records_out(line, node).is_some_and(|n| n > 0)
        });
    }

    /// Sends `signal` (`-INT`, `-TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// The rest of standard error and the exit code.
    pub fn finish(mut self) -> (Vec<String>, Option<i32>) {
        let rest: Vec<String> = match self.draining.take() {
            Some(draining) => draining.join().expect("the stderr reader"),
            None => self
                .stderr
                .into_iter()
                .flatten()
                .map(|l| l.expect("stderr line"))
                .collect(),
        };
        let status = self.child.wait().expect("the process ends");
        self.seen.extend(rest);
        (self.seen, status.code())
    }
}

/// The `final:` line among `lines`.
pub fn final_line(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|line| line.starts_with("final: "))
        .unwrap_or_else(|| panic!("no final line: {lines:?}"))
}

/// The value of counter `name` (`failed`, `lost`, `accepted`, ...) of `node` in a progress or
/// final line.
pub fn counter(line: &str, node: &str, name: &str) -> Option<u64> {
    let part = line
        .trim_start_matches("progress: ")
        .trim_start_matches("final: ")
        .split(" | ")
        .find(|part| part.starts_with(&format!("{node} ")))?;
    part.split(' ')
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
}
