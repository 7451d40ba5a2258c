//! Runs client processes and measures them: wall time, and each process's
//! CPU seconds and peak RSS from the `rusage` that `wait4` returns.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What one process used.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcUsage {
    /// A short name (`mydumper`, `dbferry`, ...).
    pub name: String,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
    /// Peak resident set size, KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// Exit code, or minus the signal number.
    pub exit: i32,
}

impl ProcUsage {
    /// User + system CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// The outcome of a measured run of one process or one pipeline.
#[derive(Debug, Default)]
pub struct Measured {
    /// Wall seconds from the first spawn to the last exit.
    pub wall_s: f64,
    /// Each process, in pipeline order.
    pub procs: Vec<ProcUsage>,
    /// Standard output of the last process.
    pub stdout: Vec<u8>,
    /// Standard error of each process.
    pub stderr: Vec<String>,
}

impl Measured {
    /// Whether every process exited 0.
    pub fn success(&self) -> bool {
        self.procs.iter().all(|p| p.exit == 0)
    }

    /// Fails with the stderr of the processes that did not exit 0.
    pub fn check(&self) -> Result<()> {
        if self.success() {
            return Ok(());
        }
        let mut message = String::new();
        for (proc, err) in self.procs.iter().zip(&self.stderr) {
            if proc.exit != 0 {
                message.push_str(&format!("{} exited {}: {}\n", proc.name, proc.exit, tail(err, 20)));
            }
        }
        bail!("{}", message.trim_end())
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for `pid` and returns its exit code and rusage.
fn wait4(pid: u32) -> Result<(i32, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, writable and live for the call.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(err).context("wait4");
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok((code, usage))
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

fn read_back(mut file: File) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Runs `cmds` as a pipeline (each one's stdout feeds the next one's stdin;
/// the first reads `stdin`, or nothing) and measures it. Outputs go to
/// anonymous temp files, so no pipe can fill up.
pub fn run_pipeline(cmds: Vec<(&str, Command)>, stdin: Option<File>) -> Result<Measured> {
    if cmds.is_empty() {
        bail!("empty pipeline");
    }
    let count = cmds.len();
    let stdout_file = tempfile::tempfile().context("creating a temp file")?;
    let mut stderr_files = Vec::with_capacity(count);
    let mut pids = Vec::with_capacity(count);
    let mut names = Vec::with_capacity(count);
    let start = Instant::now();
    let mut previous: Option<std::process::ChildStdout> = None;
    let mut first_stdin = stdin;
    for (index, (name, mut cmd)) in cmds.into_iter().enumerate() {
        let err = tempfile::tempfile().context("creating a temp file")?;
        cmd.stderr(Stdio::from(err.try_clone()?));
        match previous.take() {
            Some(out) => cmd.stdin(Stdio::from(out)),
            None => match first_stdin.take() {
                Some(file) => cmd.stdin(Stdio::from(file)),
                None => cmd.stdin(Stdio::null()),
            },
        };
        if index + 1 == count {
            cmd.stdout(Stdio::from(stdout_file.try_clone()?));
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        previous = child.stdout.take();
        pids.push(child.id());
        names.push(name.to_string());
        stderr_files.push(err);
        // `child` is reaped below with wait4; dropping a std Child neither waits nor kills.
    }
    let mut procs = Vec::with_capacity(count);
    for (pid, name) in pids.into_iter().zip(names) {
        let (exit, usage) = wait4(pid)?;
        procs.push(ProcUsage {
            name,
            user_s: seconds(usage.ru_utime),
            sys_s: seconds(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
            exit,
        });
    }
    let wall_s = start.elapsed().as_secs_f64();
    let stdout = read_back(stdout_file)?;
    let stderr = stderr_files
        .into_iter()
        .map(|f| read_back(f).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Measured {
        wall_s,
        procs,
        stdout,
        stderr,
    })
}

/// Runs independent commands concurrently, each with its own stdin file,
/// and measures them together (wall time until the last one exits).
pub fn run_parallel(cmds: Vec<(String, Command, Option<File>)>) -> Result<Measured> {
    let start = Instant::now();
    let mut running = Vec::with_capacity(cmds.len());
    for (name, mut cmd, stdin) in cmds {
        let err = tempfile::tempfile().context("creating a temp file")?;
        cmd.stderr(Stdio::from(err.try_clone()?));
        cmd.stdout(Stdio::null());
        cmd.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        running.push((name, child.id(), err));
    }
    let mut measured = Measured::default();
    for (name, pid, err) in running {
        let (exit, usage) = wait4(pid)?;
        measured.procs.push(ProcUsage {
            name,
            user_s: seconds(usage.ru_utime),
            sys_s: seconds(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
            exit,
        });
        measured
            .stderr
            .push(String::from_utf8_lossy(&read_back(err)?).into_owned());
    }
    measured.wall_s = start.elapsed().as_secs_f64();
    Ok(measured)
}

/// Median of a non-empty list (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn a_pipeline_is_measured_and_its_output_kept() -> Result<()> {
        let mut echo = Command::new("sh");
        echo.arg("-c").arg("printf 'a\\nb\\nc\\n'");
        let mut wc = Command::new("wc");
        wc.arg("-l");
        let m = run_pipeline(vec![("echo", echo), ("wc", wc)], None)?;
        m.check()?;
        assert_eq!(String::from_utf8_lossy(&m.stdout).trim(), "3");
        assert_eq!(m.procs.len(), 2);
        assert!(m.procs[1].max_rss_kib > 0);
        Ok(())
    }

    #[test]
    fn a_failing_process_is_reported() -> Result<()> {
        let mut fail = Command::new("sh");
        fail.arg("-c").arg("echo boom >&2; exit 3");
        let m = run_pipeline(vec![("fail", fail)], None)?;
        assert!(!m.success());
        let message = format!("{:#}", m.check().expect_err("must fail"));
        assert!(message.contains("exited 3") && message.contains("boom"), "{message}");
        Ok(())
    }
}
