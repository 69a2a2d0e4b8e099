//! `--acme-domain` against a real ACME server: Debian's pebble (Let's Encrypt's test server)
//! with its mock DNS, run on free ports by this test. Courier must obtain a certificate by
//! TLS-ALPN-01 on its own port and then serve HTTPS with it.

use courier::app::App;
use courier::config::ServeConfig;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "chat.courier.test";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, for pebble's own HTTPS.
fn pebble_certificates(dir: &Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=pebble test CA"],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", &p("ca.key"), "-out", &p("ca.pem")])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=127.0.0.1"]]
            .concat()
            .into_iter()
            .chain(["-keyout", &p("pebble.key"), "-out", &p("pebble.csr")])
            .collect::<Vec<_>>(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("pebble.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("san.ext"),
        "-out",
        &p("pebble.pem"),
    ]);
    (p("ca.pem"), p("pebble.pem"), p("pebble.key"))
}

fn pebble_installed() -> bool {
    Command::new("pebble")
        .arg("-h")
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_obtains_a_certificate_from_pebble_and_serves_https_with_it() {
    if !pebble_installed() {
        if std::env::var_os("COURIER_TEST_REQUIRE_SERVICES").is_some() {
            panic!("pebble is not installed (apt-get install pebble)");
        }
        eprintln!("skipped: pebble is not installed (apt-get install pebble); .ci/run installs it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pebble_certificates(dir.path());
    let [
        courier_port,
        dns_port,
        acme_port,
        management_port,
        chall_management,
    ] = [(); 5].map(|_| free_port());

    let _dns = Killed(
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{chall_management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts"),
    );
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": cert, "privateKey": key,
        "httpPort": 5002, "tlsPort": courier_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _pebble = Killed(
        Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble starts"),
    );
    let pebble_client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    wait_until("pebble answers", Duration::from_secs(20), async || {
        pebble_client.get(&directory).send().await.is_ok()
    })
    .await;

    let data = tempfile::tempdir().unwrap();
    let mut serve = ServeConfig::for_data_dir(data.path());
    serve.listen = format!("127.0.0.1:{courier_port}").parse().unwrap();
    serve.acme_domain = vec![DOMAIN.into()];
    serve.acme_directory = directory;
    serve.acme_ca_root = Some(ca.into());
    let app = App::build(serve).await.expect("courier builds");
    assert_eq!(app.scheme(), "https");
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run(std::future::pending()));

    // Pebble makes a new root each run; trust exactly it, and reach the domain on our port.
    let root = pebble_client
        .get(format!("https://127.0.0.1:{management_port}/roots/0"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .resolve(DOMAIN, SocketAddr::from(([127, 0, 0, 1], courier_port)))
        .build()
        .unwrap();
    let url = format!("https://{DOMAIN}:{courier_port}/healthz");
    let mut served = None;
    wait_until(
        "a certificate from pebble is served",
        Duration::from_secs(60),
        async || match client.get(&url).send().await {
            Ok(response) => {
                served = Some((response.status(), response.version()));
                true
            }
            Err(_) => false,
        },
    )
    .await;
    let (status, version) = served.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(
        data.path()
            .join("acme")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the account and certificate are cached in the data directory"
    );
    shutdown.cancel();
    let _ = server.await;
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
