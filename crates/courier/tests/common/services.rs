//! Whether the outside services a suite needs (PostgreSQL, NATS) answer. Plain `cargo test`
//! on a laptop without them skips those tests with a printed reason; CI and `scripts/test`
//! set `COURIER_TEST_REQUIRE_SERVICES=1`, and then a missing service fails the test instead
//! of letting it pass by skipping.

use std::net::ToSocketAddrs;
use std::time::Duration;

/// `host:port` of a `scheme://[user@]host:port/...` URL.
fn authority(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

/// True when `name` answers at `url`; otherwise skips (prints why) or, when services are
/// required, panics.
pub fn available(name: &str, url: &str, default_port: u16) -> bool {
    let addr = authority(url, default_port);
    let reachable = addr.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    });
    if reachable {
        return true;
    }
    if std::env::var_os("COURIER_TEST_REQUIRE_SERVICES").is_some() {
        panic!("{name} is not reachable at {addr}, and COURIER_TEST_REQUIRE_SERVICES is set");
    }
    eprintln!(
        "SKIPPED: {name} is not reachable at {addr} (set COURIER_TEST_REQUIRE_SERVICES=1 to fail instead)"
    );
    false
}

#[allow(dead_code)]
pub fn postgres(url: &str) -> bool {
    available("PostgreSQL", url, 5432)
}

#[allow(dead_code)]
pub fn nats(url: &str) -> bool {
    available("NATS", url, 4222)
}

/// Skips (printing `reason`) or, when services are required, fails.
fn missing(reason: &str) -> bool {
    if std::env::var_os("COURIER_TEST_REQUIRE_SERVICES").is_some() {
        panic!("{reason}, and COURIER_TEST_REQUIRE_SERVICES is set");
    }
    eprintln!("SKIPPED: {reason} (set COURIER_TEST_REQUIRE_SERVICES=1 to fail instead)");
    false
}

/// A private `nats-server` can be started (the tests that stop NATS need their own).
#[allow(dead_code)]
pub fn nats_server_installed() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("nats-server").is_file()));
    found || missing("nats-server is not installed")
}

/// A private PostgreSQL can be started: its binaries are installed and we are root (initdb
/// and postgres run as the `postgres` user, which takes root to switch to).
#[allow(dead_code)]
pub fn private_postgres_possible() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    if !root {
        return missing("a private PostgreSQL needs root");
    }
    std::path::Path::new("/usr/lib/postgresql").is_dir()
        || missing("PostgreSQL's binaries are not installed under /usr/lib/postgresql")
}

/// `program` is on PATH or in an sbin directory (else skip, or fail when services are required).
#[allow(dead_code)]
pub fn program_installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .any(|dir| dir.join(program).is_file());
    found || missing(&format!("{program} is not installed"))
}
