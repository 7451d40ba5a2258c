//! A silent network: the target's packets are dropped (no reset, no
//! refusal) by loopback iptables rules on that test's own server port, as a
//! broken switch or a firewall would. A short blackhole is waited out; one
//! longer than dbferry's detection bound plus `outage_timeout` ends the
//! import `Failed`, and `resume` then finishes it. Each ends with the
//! servers' own comparison, independent of dbferry.
//!
//! Needs root and a working `iptables` (`make deps` installs it; CI runs the
//! suite as root). Without them the tests fail and say so: they never skip.

use std::process::Command;
use std::time::{Duration, Instant};

use dbferry_testkit::{spawn_run, MariaDb};

use crate::common::{assert_same, bin, pair, unique, Setup};
use crate::faults::{import_id, resume, slow_job, slow_source, wait_for_committed_rows, ROWS};

/// Drops every loopback packet to and from one port while it lives; the
/// rules go away when it is dropped, also when the test panics.
struct Blackhole {
    port: u16,
}

impl Blackhole {
    fn rules(port: u16) -> [Vec<String>; 2] {
        let comment = format!("dbferry-test-blackhole-{port}");
        ["--dport", "--sport"].map(|dir| {
            [
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                dir,
                &port.to_string(),
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "DROP",
            ]
            .map(str::to_string)
            .to_vec()
        })
    }

    fn iptables(action: &str, rule: &[String]) -> Result<(), String> {
        let out = Command::new("iptables")
            .arg("-w")
            .arg(action)
            .args(rule)
            .output()
            .map_err(|e| format!("running iptables: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Starts dropping; panics loudly when iptables cannot be used.
    fn start(port: u16) -> Self {
        let guard = Blackhole { port };
        for rule in Self::rules(port) {
            if let Err(why) = Self::iptables("-I", &rule) {
                panic!(
                    "THIS TEST CANNOT RUN: loopback iptables rules need root and iptables (make deps installs it; \
                     CI runs the suite as root): {why}"
                );
            }
        }
        guard
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        for rule in Self::rules(self.port) {
            // Deletes every copy, should one have been inserted twice.
            while Self::iptables("-D", &rule).is_ok() {}
        }
    }
}

#[test]
#[ignore = "issue 17: the target keeps the silently dropped LOAD session (net_read_timeout = 3600) with its row locks, so redos of that chunk hit lock wait timeouts; the pool must KILL lost connection ids once the target answers"]
fn a_30_s_blackhole_of_the_target_is_waited_out_and_ends_in_an_exact_copy() {
    let source = pair().source;
    let target = MariaDb::start();
    let db = unique("fault_bh30");
    slow_source(source, &target, &db);
    let setup = Setup::new(source, &target);
    let job = slow_job(&setup.files, "bh30.toml", &db, &[]);
    let mut running = spawn_run(&bin(), &setup.config, &job);
    wait_for_committed_rows(&mut running);
    {
        let _silence = Blackhole::start(target.port());
        std::thread::sleep(Duration::from_secs(30));
    }
    let done = running.wait(Duration::from_secs(300));
    done.assert_success();
    assert_eq!(done.rows(), Some(ROWS), "{}", done.describe());
    assert_same(source, &target, &db);
}

#[test]
#[ignore = "issue 17: the target keeps the silently dropped LOAD session (net_read_timeout = 3600) with its row locks, so redos of that chunk hit lock wait timeouts; the pool must KILL lost connection ids once the target answers"]
fn a_blackhole_past_the_detection_bound_fails_within_it_then_resumes() {
    let source = pair().source;
    let target = MariaDb::start();
    let db = unique("fault_bhlong");
    slow_source(source, &target, &db);
    let setup = Setup::new(source, &target);
    let job = slow_job(&setup.files, "bhlong.toml", &db, &[("outage_timeout", "5")]);
    let mut running = spawn_run(&bin(), &setup.config, &job);
    wait_for_committed_rows(&mut running);
    let failed = {
        let _silence = Blackhole::start(target.port());
        let silenced = Instant::now();
        let failed = running.wait(Duration::from_secs(400));
        // Detection (under a minute), three chunk retries whose connects time out
        // (15 s each), outage_timeout and one probe's connect timeout: far
        // under the 15 minutes the kernel's retransmissions alone would take.
        assert!(
            silenced.elapsed() < Duration::from_secs(240),
            "a silent target is noticed within a bounded time: {:?}\n{}",
            silenced.elapsed(),
            failed.describe()
        );
        failed
    };
    assert_eq!(failed.status(), Some("Failed"), "{}", failed.describe());
    assert!(
        failed
            .message()
            .is_some_and(|m| m.contains("outage_timeout") && m.contains("unreachable")),
        "the message says the target stayed unreachable\n{}",
        failed.describe()
    );
    let resumed = resume(&setup.config, import_id(&failed));
    resumed.assert_success();
    assert_same(source, &target, &db);
}
