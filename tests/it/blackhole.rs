//! A silent network: the target's or the source's packets are dropped (no
//! reset, no refusal) by loopback iptables rules on that test's own server
//! port, as a broken switch or a firewall would. A short blackhole is waited out; one
//! longer than dbferry's detection bound plus `outage_timeout` ends the
//! import `Failed`, and `resume` then finishes it. Each ends with the
//! servers' own comparison, independent of dbferry. Both run on MariaDB
//! and on MySQL.
//!
//! The target keeps a silently dropped session (its client's packets never
//! arrive) with its open transaction and row locks; dbferry kills the
//! sessions it lost once the target answers again, in the same process or,
//! through its journal, in the one that resumes, before redoing their chunks.
//!
//! Needs root and a working `iptables` (`make deps` installs it; CI runs the
//! suite as root). Without them the tests fail and say so: they never skip.

use std::process::Command;
use std::time::{Duration, Instant};

use dbferry_testkit::{spawn_run, Flavour, Server};

use crate::common::{assert_same, bin, pair_of, unique, Setup};
use crate::faults::{import_id, resume, slow_job, slow_source_of, wait_for_committed_rows, ROWS};

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

/// InnoDB transactions open on `server`: those of the sessions that the
/// blackhole took from dbferry (the test's own query has none).
fn open_transactions(server: &Server) -> u64 {
    server
        .scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What a dbferry process logs when it killed sessions it had lost.
const KILLED: &str = "killed the sessions lost to a network fault";

/// Which server a blackhole silences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// A blackhole of `seconds` on `side`, well within `outage_timeout` (600 s),
/// is waited out and the copy is exact. The silenced server is the test's
/// own, so the suite's shared servers stay reachable for other tests.
fn blackhole_is_waited_out(flavour: Flavour, side: Side, seconds: u64) -> dbferry_testkit::Outcome {
    let own = flavour.start();
    let (source, target) = match side {
        Side::Source => (&own, pair_of(flavour).target),
        Side::Target => (pair_of(flavour).source, &own),
    };
    let db = unique("fault_bh");
    slow_source_of(flavour, source, target, &db);
    let setup = Setup::new(source, target);
    let job = slow_job(&setup.files, "bh.toml", &db, &[]);
    let mut running = spawn_run(&bin(), &setup.config, &job);
    wait_for_committed_rows(&mut running);
    {
        let _silence = Blackhole::start(own.port());
        std::thread::sleep(Duration::from_secs(seconds));
    }
    let done = running.wait(Duration::from_secs(400));
    done.assert_success();
    assert_eq!(done.rows(), Some(ROWS), "{}", done.describe());
    // The silenced server is the test's own: no other test's transactions
    // are open there.
    assert_eq!(
        open_transactions(&own),
        0,
        "no dropped session keeps a transaction on the {side:?}\n{}",
        done.describe()
    );
    assert_same(source, target, &db);
    done
}

fn a_long_blackhole_fails_then_resumes(flavour: Flavour) {
    let source = pair_of(flavour).source;
    let target = flavour.start();
    let db = unique("fault_bhlong");
    slow_source_of(flavour, source, &target, &db);
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
    // The sessions the blackhole took still hold their transactions (and
    // locks) on the target; the process that lost them has ended. Only a
    // session lost between two statements holds none.
    let held = open_transactions(&target);
    if held == 0 {
        eprintln!("no dropped session held a transaction: ending them on resume is not exercised");
    }
    let resumed = resume(&setup.config, import_id(&failed));
    resumed.assert_success();
    assert!(
        held == 0 || resumed.stderr.contains(KILLED),
        "resume killed the {held} dropped session(s) holding a transaction, and says so\n{}",
        resumed.describe()
    );
    assert_eq!(open_transactions(&target), 0, "{}", resumed.describe());
    assert_same(source, &target, &db);
}

dbferry_testkit::on_both_flavours! {
    fn a_30_s_blackhole_of_the_target_is_waited_out_and_ends_in_an_exact_copy(flavour: Flavour) {
        blackhole_is_waited_out(flavour, Side::Target, 30);
    }

    /// Past the detection bound (a load's data unacknowledged for 60 s),
    /// the writers' connections die: their sessions, still open on the
    /// target with their locks, are killed in this process once the target
    /// answers, before their chunks are redone. (Without the kill the redo
    /// fails on lock wait timeouts, and so does this test.)
    fn a_90_s_blackhole_loses_the_writers_whose_sessions_are_killed_before_their_chunks_are_redone(
        flavour: Flavour
    ) {
        let done = blackhole_is_waited_out(flavour, Side::Target, 90);
        if !done.stderr.contains(KILLED) {
            eprintln!(
                "no dropped session held anything to kill: the kill is not exercised\n{}",
                done.describe()
            );
        }
    }

    fn a_blackhole_past_the_detection_bound_fails_within_it_then_resumes(flavour: Flavour) {
        a_long_blackhole_fails_then_resumes(flavour);
    }
}

/// The source's snapshot readers wait in the middle of their result sets
/// while no packet passes, and go on reading once they do. (On MySQL the
/// longer blackhole below covers the source instead.)
#[test]
fn a_30_s_blackhole_of_the_source_is_waited_out_and_ends_in_an_exact_copy_on_mariadb() {
    blackhole_is_waited_out(Flavour::MariaDb, Side::Source, 30);
}

/// Past the detection bound (keepalive probes unanswered until
/// `TCP_USER_TIMEOUT`, 60 s, after 15 s of silence) the source's snapshot
/// readers die, and the server, which never hears of it, keeps their
/// sessions, snapshots and metadata locks. Those are killed once the source
/// answers; their chunks are read again by the readers left, or from a new
/// snapshot when none is.
/// On MySQL alone: the readers and the kill are the engine's own code on
/// both flavours, and 90 s of the suite's time are better spent once.
#[test]
fn a_90_s_blackhole_of_the_source_loses_the_readers_whose_sessions_are_killed_on_mysql() {
    let done = blackhole_is_waited_out(Flavour::MySql, Side::Source, 90);
    assert!(
        done.stderr.contains(KILLED),
        "the lost readers were killed\n{}",
        done.describe()
    );
}
