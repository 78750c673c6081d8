//! pika scripts that are not tutorials, each ported line by line
//! (`tests/pika_ports/NAME.py` beside `tests/pika_ports/NAME.rs`, the port
//! built as the example `pika_port_NAME`). Each test runs the pika original
//! (python3 with pika 1.4.4), then the port, with the same queue and
//! exchange names, against the broker on localhost:5672, and requires both
//! to succeed and print the same lines.
//!
//! python3 with pika 1.4.4 is required: a missing one fails the tests
//! loudly (scripts/ensure-build-deps installs pika). Every process runs
//! under `timeout`, and every wait inside the scripts is bounded
//! (inactivity timeouts, a bounded reconnect loop).
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{unique, Cleanup};

const PIKA_VERSION: &str = "1.4.4";
/// Bound on one script run, in seconds (`timeout`).
const RUN_LIMIT: &str = "60";

const PORTS: [&str; 6] = [
    "basic_get_poll",
    "headers_exchange",
    "dead_letter",
    "with_consumer",
    "properties_publisher",
    "reconnecting_consumer",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails loudly unless `python3` imports pika 1.4.4.
fn require_pika() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("python3").args(["-c", "import pika; print(pika.__version__)"]).output();
        let version = match out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Ok(out) => panic!(
                "python3 cannot import pika ({}). These tests compare ports with pika {PIKA_VERSION}: \
                 run scripts/ensure-build-deps (it installs pika=={PIKA_VERSION})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run python3 ({e}). These tests need python3 with pika {PIKA_VERSION}"),
        };
        assert_eq!(version, PIKA_VERSION, "python3 has pika {version}; these tests compare with pika {PIKA_VERSION}");
    });
}

/// The directory cargo puts this profile's examples in, next to this
/// test's own executable (`target/<profile>/deps/pika_ports-<hash>`).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join("examples")
}

/// Builds the ports once (`cargo test --all-targets` has already built
/// them; `cargo test --test pika_ports` has not), with this test's profile.
fn build_ports() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = examples_dir().parent().expect("profile dir").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.current_dir(manifest_dir()).arg("build").arg("--quiet").arg("--target-dir").arg(&target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        for port in PORTS {
            cmd.arg("--example").arg(format!("pika_port_{port}"));
        }
        let out = cmd.output().expect("run cargo build for the ports");
        assert!(out.status.success(), "building the ports failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
}

fn run(program: impl Into<PathBuf>, args: &[&str], what: &str) -> String {
    let mut cmd = Command::new("timeout");
    cmd.arg(RUN_LIMIT).arg(program.into()).args(args).current_dir(manifest_dir());
    let Output { status, stdout, stderr } = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "{what} failed ({status}; 124 is the {RUN_LIMIT} s timeout)\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Runs `NAME.py` and its port with `args`, one after the other, and
/// requires the same output; returns it.
fn compare(name: &str, args: &[&str]) -> String {
    require_pika();
    build_ports();
    let script = manifest_dir().join("tests/pika_ports").join(format!("{name}.py"));
    let mut python_args = vec![script.to_str().expect("utf-8 path")];
    python_args.extend_from_slice(args);
    let pika = run("python3", &python_args, &format!("pika's {name}.py"));
    let port = run(examples_dir().join(format!("pika_port_{name}")), args, &format!("the port {name}.rs"));
    assert!(!pika.trim().is_empty(), "{name}.py printed nothing");
    if pika != port {
        panic!("{name}: the port's output differs from pika's\n--- pika ---\n{pika}--- pikars ---\n{port}");
    }
    pika
}

#[test]
fn basic_get_poll_prints_what_pika_prints() {
    let mut cleanup = Cleanup::default();
    let queue = cleanup.queue(&unique("port-get"));
    let out = compare("basic_get_poll", &[&queue]);
    assert_eq!(out.lines().filter(|l| l.starts_with("<Basic.GetOk(")).count(), 3, "{out}");
    assert!(out.contains("\"headers={'retries': 3, 'source': 'poller'}\""), "{out}");
    assert!(out.contains("b'\\x00\\xffthird'"), "{out}");
    assert!(out.contains("No message returned"), "{out}");
}

#[test]
fn headers_exchange_routes_as_in_pika() {
    let mut cleanup = Cleanup::default();
    let exchange = cleanup.exchange(&unique("port-hx"));
    let (all, any) = (cleanup.queue(&unique("port-hall")), cleanup.queue(&unique("port-hany")));
    let out = compare("headers_exchange", &[&exchange, &all, &any]);
    assert_eq!(out.lines().filter(|l| l.starts_with(" [all] ")).count(), 1, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with(" [any] ")).count(), 3, "{out}");
}

#[test]
fn dead_letter_reads_x_death_as_in_pika() {
    let mut cleanup = Cleanup::default();
    let work = cleanup.queue(&unique("port-work"));
    let dlx = cleanup.exchange(&unique("port-dlx"));
    let dead = cleanup.queue(&unique("port-dead"));
    let out = compare("dead_letter", &[&work, &dlx, &dead]);
    assert!(out.contains("reason=rejected queue=True count=1"), "{out}");
    assert!(out.contains("routing-keys=True exchange=''"), "{out}");
}

#[test]
fn with_blocks_close_and_report_as_in_pika() {
    let mut cleanup = Cleanup::default();
    let queue = cleanup.queue(&unique("port-with"));
    let missing = unique("port-missing");
    let out = compare("with_consumer", &[&queue, &missing]);
    assert!(out.contains("after the block: is_closed=True"), "{out}");
    assert!(out.contains(" [!] not swallowed: 404"), "{out}");
    assert!(out.contains("after the connection block: is_closed=True"), "{out}");
}

#[test]
fn properties_passed_positionally_arrive_as_in_pika() {
    let mut cleanup = Cleanup::default();
    let queue = cleanup.queue(&unique("port-props"));
    let unroutable = unique("port-nowhere");
    let out = compare("properties_publisher", &[&queue, &unroutable]);
    assert!(out.contains(" [!] UnroutableError: 312 NO_ROUTE b'lost'"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with(" [x] ")).count(), 5, "{out}");
}

#[test]
fn reconnecting_consumer_recovers_as_in_pika() {
    let mut cleanup = Cleanup::default();
    let queue = cleanup.queue(&unique("port-reconnect"));
    // A port nothing listens on: bound, then released.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let out = compare("reconnecting_consumer", &[&queue, &dead_port]);
    assert!(out.contains(" [*] attempt 2: connected"), "{out}");
    assert!(out.contains("ConnectionClosedByBroker: (540, "), "{out}");
    assert!(out.trim_end().ends_with(" [*] done"), "{out}");
}
