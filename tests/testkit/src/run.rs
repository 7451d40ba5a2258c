//! Running the real `dbferry` binary.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one `dbferry` invocation may take before it is killed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// What one `dbferry` invocation did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` if killed by a signal or timed out.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Every stdout line that parsed as a JSON object, in order.
    pub lines: Vec<Value>,
    /// The final result object of `run --json` (the last JSON line with a
    /// `Status` key), if any.
    pub result: Option<Value>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether it was killed after [`RUN_TIMEOUT`].
    pub timed_out: bool,
}

impl Outcome {
    fn from_output(
        command: String,
        code: Option<i32>,
        stdout: String,
        stderr: String,
        elapsed: Duration,
        timed_out: bool,
    ) -> Self {
        let lines: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(Value::is_object)
            .collect();
        let result = lines.iter().rev().find(|v| v.get("Status").is_some()).cloned();
        Self {
            command,
            code,
            stdout,
            stderr,
            lines,
            result,
            elapsed,
            timed_out,
        }
    }

    /// `result.Status`.
    pub fn status(&self) -> Option<&str> {
        self.result.as_ref()?.get("Status")?.as_str()
    }

    /// `result.Code`, else the `CODE` of an `error[CODE]` printed on stderr
    /// or stdout.
    pub fn error_code(&self) -> Option<String> {
        if let Some(code) = self.json_code() {
            return Some(code);
        }
        self.printed_code()
    }

    /// `result.Code` only.
    pub fn json_code(&self) -> Option<String> {
        self.result.as_ref()?.get("Code")?.as_str().map(str::to_string)
    }

    /// The `CODE` of the first `error[CODE]` printed on stderr or stdout.
    pub fn printed_code(&self) -> Option<String> {
        for text in [&self.stderr, &self.stdout] {
            if let Some(start) = text.find("error[") {
                let rest = &text[start + "error[".len()..];
                if let Some(end) = rest.find(']') {
                    return Some(rest[..end].to_string());
                }
            }
        }
        None
    }

    /// `result.Message`.
    pub fn message(&self) -> Option<&str> {
        self.result.as_ref()?.get("Message")?.as_str()
    }

    /// `result.Rows`.
    pub fn rows(&self) -> Option<u64> {
        self.result.as_ref()?.get("Rows")?.as_u64()
    }

    /// `result.Bytes`.
    pub fn bytes(&self) -> Option<u64> {
        self.result.as_ref()?.get("Bytes")?.as_u64()
    }

    /// Everything, for assertion messages.
    pub fn describe(&self) -> String {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "`{}` exited with {:?}{} after {:.1?}\n--- result ---\n{}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.command,
            self.code,
            if self.timed_out { " (TIMED OUT, killed)" } else { "" },
            self.elapsed,
            self.result.as_ref().map(Value::to_string).unwrap_or_else(|| "<no final JSON object>".into()),
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// Asserts exit code 0 and `"Status":"Success"` with no `Code`.
    ///
    /// # Panics
    /// If it did not succeed, with [`Outcome::describe`].
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success (exit 0)\n{}", self.describe());
        assert_eq!(
            self.status(),
            Some("Success"),
            "expected Status Success\n{}",
            self.describe()
        );
        let code = self.result.as_ref().and_then(|r| r.get("Code")).cloned();
        assert!(
            code.is_none() || code == Some(Value::Null),
            "a success carries no Code\n{}",
            self.describe()
        );
        self
    }

    /// Asserts a precheck/validation rejection: exit code 2 and exactly
    /// `code`, both in the JSON result (when there is one) and in any
    /// printed `error[CODE]`, and at least one of the two present.
    ///
    /// # Panics
    /// Otherwise, with [`Outcome::describe`].
    pub fn assert_rejected(&self, code: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(2),
            "expected a rejection (exit 2) with {code}\n{}",
            self.describe()
        );
        let json = self.json_code();
        let printed = self.printed_code();
        assert!(
            json.is_some() || printed.is_some(),
            "a rejection must carry a code (JSON \"Code\" or `error[CODE]`)\n{}",
            self.describe()
        );
        if let Some(json) = json {
            assert_eq!(json, code, "wrong JSON Code\n{}", self.describe());
        }
        if let Some(printed) = printed {
            assert_eq!(printed, code, "wrong printed error[CODE]\n{}", self.describe());
        }
        if self.result.is_some() {
            assert_eq!(
                self.status(),
                Some("Failed"),
                "a rejected import ends Failed\n{}",
                self.describe()
            );
        }
        self
    }
}

type Captured = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn capture(stream: Option<Box<dyn Read + Send>>) -> (Captured, std::thread::JoinHandle<()>) {
    let buf: Captured = Default::default();
    let sink = buf.clone();
    let handle = std::thread::spawn(move || {
        if let Some(mut s) = stream {
            let mut chunk = [0u8; 8192];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]),
                }
            }
        }
    });
    (buf, handle)
}

fn text(buf: &Captured) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
}

fn start(mut command: Command, line: String) -> RunningJob {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start `{line}`: {e}"),
    };
    let (stdout, out_thread) = capture(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let (stderr, err_thread) = capture(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    RunningJob {
        child,
        command: line,
        stdout,
        stderr,
        readers: vec![out_thread, err_thread],
    }
}

fn command_line<S: AsRef<OsStr>>(bin: &Path, args: &[S]) -> String {
    let mut line = bin.display().to_string();
    for a in args {
        line.push(' ');
        line.push_str(&a.as_ref().to_string_lossy());
    }
    line
}

fn prepare<S: AsRef<OsStr>>(bin: &Path, args: &[S], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("DBFERRY_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs `bin` with `args` and waits (at most [`RUN_TIMEOUT`]).
///
/// # Panics
/// If the binary cannot be started.
pub fn dbferry<S: AsRef<OsStr>>(bin: &Path, args: &[S]) -> Outcome {
    dbferry_with_env(bin, args, &[])
}

/// Like [`dbferry`], with extra environment variables.
///
/// # Panics
/// If the binary cannot be started.
pub fn dbferry_with_env<S: AsRef<OsStr>>(bin: &Path, args: &[S], env: &[(&str, &str)]) -> Outcome {
    let line = command_line(bin, args);
    start(prepare(bin, args, env), line).wait(RUN_TIMEOUT)
}

/// `dbferry run --json --config CONFIG JOB`, waited for.
///
/// # Panics
/// If the binary cannot be started.
pub fn run_job(bin: &Path, config: &Path, job: &Path) -> Outcome {
    dbferry(
        bin,
        &[
            OsStr::new("run"),
            OsStr::new("--json"),
            OsStr::new("--config"),
            config.as_os_str(),
            job.as_os_str(),
        ],
    )
}

/// Starts `dbferry run --json --config CONFIG JOB` without waiting; finish
/// it with [`RunningJob::wait`] (for cancellation tests).
///
/// # Panics
/// If the binary cannot be started.
pub fn spawn_run(bin: &Path, config: &Path, job: &Path) -> RunningJob {
    let args = [
        OsStr::new("run"),
        OsStr::new("--json"),
        OsStr::new("--config"),
        config.as_os_str(),
        job.as_os_str(),
    ];
    let line = command_line(bin, &args);
    start(prepare(bin, &args, &[]), line)
}

/// A `dbferry` process in progress; its output is captured as it comes.
#[derive(Debug)]
pub struct RunningJob {
    child: Child,
    command: String,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl RunningJob {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Standard output so far.
    pub fn stdout_so_far(&self) -> String {
        text(&self.stdout)
    }

    /// Waits until a stdout line satisfies `found` (true), or the process
    /// exits or `timeout` passes (false).
    pub fn wait_for_line(&mut self, timeout: Duration, found: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stdout_so_far().lines().any(&found) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.stdout_so_far().lines().any(&found);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) -> std::io::Result<()> {
        self.signal(libc::SIGINT)
    }

    /// Ctrl-C, then checks that the stop tells the truth: acted on within
    /// `promptly`, exit 4, `Cancelled`, and no error code.
    pub fn interrupt_expecting_cancel(self, promptly: Duration) -> Outcome {
        self.interrupt().expect("SIGINT");
        let asked = Instant::now();
        let stopped = self.wait(promptly + Duration::from_secs(30));
        assert!(
            asked.elapsed() < promptly,
            "Ctrl-C acted on promptly: {:?}",
            asked.elapsed()
        );
        assert_eq!(stopped.code, Some(4), "{}", stopped.describe());
        assert_eq!(stopped.status(), Some("Cancelled"), "{}", stopped.describe());
        assert_eq!(
            stopped.json_code(),
            None,
            "a cancel carries no error code\n{}",
            stopped.describe()
        );
        stopped
    }

    /// Waits for the process (killing it after `timeout`) and collects
    /// what it printed. `Outcome::elapsed` counts from this call.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let begin = Instant::now();
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if begin.elapsed() > timeout => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        let elapsed = begin.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Outcome::from_output(
            self.command.clone(),
            status.and_then(|s| s.code()),
            text(&self.stdout),
            text(&self.stderr),
            elapsed,
            timed_out,
        )
    }
}
