//! Broker control for fault tests, through `rabbitmqctl` (reliability.md
//! §5.0): close a named connection (now, or armed to fire within a few
//! milliseconds of a trigger), raise and clear disk and memory alarms, stop
//! and start the broker app. Every fault returns a guard whose `Drop`
//! restores the broker, also while a failing test unwinds.
//!
//! Alarms and `stop_app` are global to the broker: only
//! `tests/broker_global_faults.rs` uses them, serially, and CI runs that
//! binary alone. Closing a connection by name is local to the test.
//!
//! `PIKARS_TEST_NODE` selects the node (`rabbitmqctl -n`), for running the
//! global faults against a private broker.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `rabbitmqctl` (bounded by `timeout 60`) and returns stdout.
pub fn ctl(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg("rabbitmqctl");
    if let Ok(node) = std::env::var("PIKARS_TEST_NODE") {
        cmd.arg("-n").arg(node);
    }
    let out = cmd.args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("rabbitmqctl {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `ctl` that fails the test.
pub fn ctl_ok(args: &[&str]) -> String {
    ctl(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Erlang: `Find(Name)` lists the pids of the connections whose client
/// property `connection_name` is exactly `Name`.
const FIND: &str = "Props = fun(P) -> try proplists:get_value(client_properties, \
    rabbit_networking:connection_info(P, [client_properties]), []) catch _:_ -> [] end end, \
    Find = fun(Name) -> [P || P <- rabbit_networking:connections(), \
    lists:member({<<\"connection_name\">>, longstr, Name}, Props(P))] end, ";

fn check_name(name: &str) {
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-_".contains(&b)),
        "connection name {name:?} must be [A-Za-z0-9.:_-] to be quoted in Erlang"
    );
}

/// Closes (as `rabbitmqctl close_connection` does) every connection whose
/// `connection_name` is exactly `name`; returns how many.
pub fn close_connection(name: &str, reason: &str) -> usize {
    check_name(name);
    check_name(reason);
    let code = format!(
        "{FIND} Ps = Find(<<\"{name}\">>), [rabbit_networking:close_connection(P, \"{reason}\") || P <- Ps], length(Ps)."
    );
    let out = ctl_ok(&["eval", &code]);
    out.trim().parse().unwrap_or_else(|_| panic!("close_connection: unexpected output {out:?}"))
}

/// A connection kill armed inside the broker: `fire()` closes the target
/// connection within a few milliseconds (not the ~0.7 s a `rabbitmqctl`
/// start-up takes), so a test can kill at an exact point of its work.
///
/// Mechanics: an `eval` finds the target, the "armed" and the "trigger"
/// connections by name, closes "armed" (so the test knows it is ready),
/// then polls every millisecond until the trigger connection's process
/// ends and closes the target with `CONNECTION_FORCED` "test kill".
pub struct ArmedKill {
    child: Option<Child>,
    trigger: Option<pikars::BlockingConnection>,
}

impl ArmedKill {
    /// `connect(name)` must open a connection whose `connection_name` is
    /// `name`. The target connection must be open already.
    pub fn arm(target: &str, connect: impl Fn(&str) -> pikars::BlockingConnection) -> ArmedKill {
        check_name(target);
        let armed_name = format!("{target}.armed");
        let trigger_name = format!("{target}.trigger");
        let armed = connect(&armed_name);
        let trigger = connect(&trigger_name);
        let code = format!(
            "{FIND} [A] = Find(<<\"{armed_name}\">>), [T] = Find(<<\"{trigger_name}\">>), \
             Targets = Find(<<\"{target}\">>), rabbit_networking:close_connection(A, \"armed\"), \
             Wait = fun W(0) -> timeout; W(N) -> case is_process_alive(T) of false -> fired; \
             true -> timer:sleep(1), W(N - 1) end end, R = Wait(30000), \
             [rabbit_networking:close_connection(P, \"test kill\") || P <- Targets], {{R, length(Targets)}}."
        );
        let mut cmd = Command::new("timeout");
        cmd.arg("60").arg("rabbitmqctl");
        if let Ok(node) = std::env::var("PIKARS_TEST_NODE") {
            cmd.arg("-n").arg(node);
        }
        let child = cmd
            .args(["eval", &code])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rabbitmqctl eval");
        let mut kill = ArmedKill { child: Some(child), trigger: Some(trigger) };
        // Armed once the broker closed the "armed" connection.
        let deadline = Instant::now() + Duration::from_secs(20);
        while armed.is_open() {
            if Instant::now() > deadline {
                let out = kill.finish();
                panic!("the armed kill did not arm within 20 s: {out}");
            }
            let _ = armed.process_data_events(Some(0.05));
        }
        kill
    }

    /// Fires: the target connection is closed a few milliseconds later.
    pub fn fire(&mut self) {
        if let Some(t) = self.trigger.take() {
            let _ = t.close();
        }
    }

    /// Waits for the eval and returns its output, e.g. `{fired,1}`.
    pub fn finish(&mut self) -> String {
        self.fire();
        let Some(child) = self.child.take() else { return String::new() };
        match child.wait_with_output() {
            Ok(out) => {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            }
            Err(e) => format!("wait failed: {e}"),
        }
    }
}

impl Drop for ArmedKill {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.trigger.take();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The broker's current alarms, as Erlang text (`[]` when none).
pub fn alarms() -> String {
    ctl_ok(&["eval", "rabbit_alarm:get_alarms()."]).trim().to_string()
}

/// Waits (bounded) until no alarm is set; false if one remains.
fn wait_no_alarms(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ctl(&["eval", "rabbit_alarm:get_alarms()."]).is_ok_and(|a| a.trim() == "[]") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const CLEAR_DISK: &str = "rabbit_alarm:clear_alarm({resource_limit, disk, node()}).";

/// Clears a disk alarm left by an earlier run, if any (idempotent).
pub fn clear_disk_alarm() {
    ctl_ok(&["eval", CLEAR_DISK]);
}

/// A raised disk alarm; dropping the guard clears it.
pub struct DiskAlarm {
    active: bool,
}

/// Raises the disk alarm: publishing connections get `connection.blocked`.
pub fn set_disk_alarm() -> DiskAlarm {
    ctl_ok(&["eval", "rabbit_alarm:set_alarm({{resource_limit, disk, node()}, []})."]);
    DiskAlarm { active: true }
}

impl DiskAlarm {
    /// Clears the alarm; returns when the clearing `rabbitmqctl` returned,
    /// then waits until the broker lists no alarm.
    pub fn clear_now(mut self) -> Instant {
        self.active = false;
        ctl_ok(&["eval", CLEAR_DISK]);
        let cleared = Instant::now();
        assert!(wait_no_alarms(Duration::from_secs(10)), "alarms left after the clear: {}", alarms());
        cleared
    }
}

impl Drop for DiskAlarm {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let r = ctl(&["eval", CLEAR_DISK]);
        let cleared = wait_no_alarms(Duration::from_secs(10));
        if !std::thread::panicking() {
            assert!(r.is_ok() && cleared, "could not clear the disk alarm: {r:?}, alarms {}", alarms());
        }
    }
}

/// A memory alarm made by lowering the watermark; dropping the guard
/// restores the watermark read before.
pub struct MemoryAlarm {
    restore: Vec<String>,
}

/// Raises a memory alarm (`set_vm_memory_high_watermark 0.000001`).
pub fn set_memory_alarm() -> MemoryAlarm {
    let current = ctl_ok(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]).trim().to_string();
    // A fraction such as 0.4, or {absolute,N}.
    let restore = match current.strip_prefix("{absolute,").and_then(|s| s.strip_suffix('}')) {
        Some(n) => vec!["absolute".to_string(), n.to_string()],
        None => {
            assert!(current.parse::<f64>().is_ok(), "unexpected watermark {current:?}");
            vec![current]
        }
    };
    let guard = MemoryAlarm { restore };
    ctl_ok(&["set_vm_memory_high_watermark", "0.000001"]);
    guard
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let mut args = vec!["set_vm_memory_high_watermark"];
        args.extend(self.restore.iter().map(String::as_str));
        let r = ctl(&args);
        let cleared = wait_no_alarms(Duration::from_secs(10));
        if !std::thread::panicking() {
            assert!(r.is_ok() && cleared, "could not restore the memory watermark: {r:?}, alarms {}", alarms());
        }
    }
}

/// The broker app stopped; dropping the guard starts it again and waits
/// until AMQP connections work.
pub struct StoppedApp {
    port: u16,
}

/// `rabbitmqctl stop_app`: every connection gets 320 CONNECTION_FORCED.
pub fn stop_app(port: u16) -> StoppedApp {
    let guard = StoppedApp { port };
    ctl_ok(&["stop_app"]);
    guard
}

/// Starts the app (idempotent) and waits up to 60 s until an AMQP
/// handshake on `port` succeeds.
pub fn start_app(port: u16) -> Result<(), String> {
    ctl(&["start_app"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            let p = pikars::ConnectionParameters::new("127.0.0.1").port(port).stack_timeout(5.0);
            if let Ok(c) = pikars::BlockingConnection::new(p) {
                let _ = c.close();
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the broker does not accept AMQP on {addr} 60 s after start_app"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl StoppedApp {
    /// Starts the app now (and waits until it accepts connections).
    pub fn start(self) {
        drop(self);
    }
}

impl Drop for StoppedApp {
    fn drop(&mut self) {
        let r = start_app(self.port);
        if !std::thread::panicking() {
            r.unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
