//! The `courier` binary as an operator meets it: help, start-up errors, signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn courier() -> Command {
    Command::new(env!("CARGO_BIN_EXE_courier"))
}

/// Starts `courier serve` on a free port and returns it with its base URL.
fn serve(data_dir: &std::path::Path) -> (Child, String) {
    serve_with(data_dir, &[], Stdio::null())
}

/// `serve` with extra flags, its stderr going to `stderr`.
fn serve_with(data_dir: &std::path::Path, flags: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = courier()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("courier starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("courier listening on ")
        .expect("address line")
        .to_owned();
    (child, url)
}

#[test]
fn help_documents_every_serve_flag() {
    let out = courier().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--dev-login",
        "--token-secret",
        "--max-message-chars",
        "--max-body-bytes",
        "--heartbeat",
        "--stream-buffer",
        "COURIER_LISTEN",
        "COURIER_DATA_DIR",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    let top = String::from_utf8(courier().arg("--help").output().unwrap().stdout).unwrap();
    assert!(top.contains("serve"));
}

#[test]
fn an_unknown_database_scheme_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = courier()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://x/y",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown database URL scheme"), "{err}");
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_the_process_exits_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(dir.path());
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{url}/api/login"))
        .json(&serde_json::json!({ "username": "alice" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let stream = client
        .get(format!("{url}/api/messages"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // The open stream ended rather than being cut mid-event.
    let body = tokio::time::timeout(Duration::from_secs(2), stream.text())
        .await
        .expect("stream ended");
    assert!(body.is_ok_and(|b| b.contains("retry:")));
}

#[tokio::test]
async fn the_signing_secret_is_generated_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = serve(dir.path());
    let path = dir.path().join("token-secret");
    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(secret.len() >= 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut again, _) = serve(dir.path());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[tokio::test]
async fn no_secret_token_or_password_reaches_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-very-secret-signing-key-0123456789abcdef";
    let flags = [
        "--signup",
        "open",
        "--token-secret",
        secret,
        "--log",
        "trace",
    ];
    let (mut child, url) = serve_with(dir.path(), &flags, Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());

    let client = reqwest::Client::new();
    let password = "violet-harbor-tractor-91";
    let body = serde_json::json!({ "username": "alice", "password": password });
    let signed_up: serde_json::Value = client
        .post(format!("{url}/api/signup"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = signed_up["token"].as_str().unwrap().to_owned();
    let signed_in: serde_json::Value = client
        .post(format!("{url}/api/signin"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_in["token"].as_str().unwrap().to_owned();
    let stream = client
        .get(format!("{url}/api/messages?token={token}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    let refreshed: serde_json::Value = client
        .post(format!("{url}/api/refresh_token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = refreshed["token"].as_str().unwrap().to_owned();

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let logs = logs.join().unwrap();
    assert!(
        logs.contains("/api/messages"),
        "the request was logged at all:\n{logs}"
    );
    for (what, value) in [
        ("password", password),
        ("signing secret", secret),
        ("token", &first),
        ("token", &token),
        ("token", &fresh),
    ] {
        // A JWT's signature part is what makes it a credential.
        let needle = value.rsplit('.').next().unwrap();
        assert!(!logs.contains(needle), "a {what} reached the logs");
    }
}

#[test]
fn a_second_process_on_the_same_sqlite_file_stops_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = serve(dir.path());
    let second = courier()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another courier process"), "{err}");
}

/// Starts `courier ARGS…` with `env`, returns the port it listens on and its first stderr line.
fn listening_port(args: &[&str], env: &[(&str, &str)]) -> (u16, String) {
    let mut child = courier()
        .args(args)
        .env_remove("COURIER_LISTEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("courier starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut log)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address line: {line:?}"));
    (port, log)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_flag_beats_its_environment_variable_which_beats_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let (in_file, by_flag) = (free_port(), free_port());
    let file = dir.path().join("courier.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:{in_file}\"\nlog-format = \"json\"\npush = false\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let base = [
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];

    let (port, log) = listening_port(&base, &[]);
    assert_eq!(port, in_file, "the file's value, over the default");
    let first: serde_json::Value =
        serde_json::from_str(&log).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {log}"));
    assert!(
        first["level"].is_string() && first["message"].is_string(),
        "{first}"
    );

    let (port, _) = listening_port(&base, &[("COURIER_LISTEN", "127.0.0.1:0")]);
    assert_ne!(port, in_file, "the environment, over the file");

    let flag = format!("127.0.0.1:{by_flag}");
    let mut with_flag = base.to_vec();
    with_flag.extend(["--listen", &flag]);
    let (port, _) = listening_port(&with_flag, &[("COURIER_LISTEN", "127.0.0.1:0")]);
    assert_eq!(port, by_flag, "the flag, over the environment and the file");

    let env_file = [("COURIER_CONFIG", file.to_str().unwrap())];
    let (port, _) = listening_port(&["serve", "--data-dir", data.to_str().unwrap()], &env_file);
    assert_eq!(port, in_file, "COURIER_CONFIG names the file too");
}

/// How many of a running process's threads are tokio's runtime threads (its default name).
#[cfg(target_os = "linux")]
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn workers_sizes_the_runtime_from_the_flag_or_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("courier.toml");
    std::fs::write(&file, "workers = 1\n").unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let cases: [(&std::path::Path, Vec<&str>, usize); 2] = [
        (&data_a, vec!["--config", file.to_str().unwrap()], 1),
        (&data_b, vec!["--workers", "3"], 3),
    ];
    for (data, flags, expected) in cases {
        let (mut child, _) = serve_with(data, &flags, Stdio::null());
        // Every worker has started once the address line is out: the server is serving.
        let found = runtime_workers(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, expected, "{flags:?}");
    }
}
