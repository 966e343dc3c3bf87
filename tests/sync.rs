//! `cwn sync` against real servers on loopback: a MISP feed served by Python's `http.server`
//! and a TAXII 2.1 collection served by the OASIS reference server `medallion` (`.ci/run`
//! installs it; `CWN_SKIP_TAXII=1` skips that test deliberately).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn cwn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn")
}

/// A child process killed when dropped.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Python's `http.server` serving `dir` on `port`, its request log in `log`.
fn http_server(dir: &Path, port: u16, log: &Path) -> Server {
    let mut child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("python3 -m http.server (python3 is needed by the sync tests)");
    wait_listening(port, &mut child, "http.server");
    Server(child)
}

/// One `cwn sync --once --json` cycle: its exit code and report.
fn sync_once(config: &Path, out: &Path) -> (i32, Value) {
    let o = cwn(&[
        "sync",
        "--config",
        &config.display().to_string(),
        "--once",
        "--json",
        "-o",
        &out.display().to_string(),
    ]);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "cwn sync failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (code, report)
}

fn inspect(path: &str) -> Value {
    let o = cwn(&["inspect", "--json", path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

pub(crate) fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// The only published file of a cycle: its kind and path.
fn published(report: &Value) -> Vec<(String, String)> {
    report["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_misp_feed_edit_arrives_as_a_delta_of_its_changes_and_a_server_outage_keeps_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed");
    std::fs::create_dir(&feed).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples/misp-feed");
    for f in [
        "manifest.json",
        "5e3d3c80-eba8-5531-84db-fe0b24a2bbed.json",
        "8682f757-5d7b-54e9-8c2c-af6bf330fd53.json",
    ] {
        std::fs::copy(examples.join(f), feed.join(f)).unwrap();
    }
    let port = crate::util::free_tcp_port();
    let log = dir.path().join("http.log");
    let server = http_server(&feed, port, &log);
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[[source]]\nname = \"feed\"\nkind = \"misp-feed\"\nurl = \"http://127.0.0.1:{port}/\"\ntimeout = \"5s\"\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("published");

    // Cycle 1: everything, as a full snapshot.
    let (code, r) = sync_once(&config, &out);
    assert_eq!(code, 0, "{r}");
    let first = published(&r);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "full");
    let indicators = r["indicators"].as_u64().unwrap();
    assert!(indicators > 10, "{r}");

    // Cycle 2, nothing changed: nothing published.
    let (code, r) = sync_once(&config, &out);
    assert_eq!(code, 0);
    assert!(published(&r).is_empty(), "{r}");

    // An analyst edits one event: one value replaced, one attribute no longer for IDS.
    // (`http.server` answers If-Modified-Since to the second: the edit comes a second later.)
    std::thread::sleep(Duration::from_millis(1100));
    let ev1 = feed.join("5e3d3c80-eba8-5531-84db-fe0b24a2bbed.json");
    let mut doc = read_json(&ev1);
    let attrs = doc["Event"]["Attribute"].as_array_mut().unwrap();
    assert_eq!(attrs[1]["value"], "bad-login.example.com");
    attrs[1]["value"] = json!("worse-login.example.com");
    attrs[0]["to_ids"] = json!(false);
    doc["Event"]["timestamp"] = json!("1741700000");
    write_json(&ev1, &doc);
    let mut manifest = read_json(&feed.join("manifest.json"));
    manifest["5e3d3c80-eba8-5531-84db-fe0b24a2bbed"]["timestamp"] = json!(1741700000);
    write_json(&feed.join("manifest.json"), &manifest);
    let requests_before = std::fs::read_to_string(&log).unwrap();
    let (code, r) = sync_once(&config, &out);
    assert_eq!(code, 0, "{r}");
    let p = published(&r);
    assert_eq!(p.len(), 1, "{r}");
    assert_eq!(p[0].0, "delta");
    let d = inspect(&p[0].1);
    assert_eq!(d["added"], 1, "only the new value: {d}");
    assert_eq!(
        d["removed"], 2,
        "the replaced value and the one no longer for IDS: {d}"
    );
    assert_eq!(
        d["base"]["set_version"],
        inspect(&first[0].1)["set_version"]
    );
    // Only the changed event was fetched again.
    let requests = std::fs::read_to_string(&log).unwrap();
    let new_requests = &requests[requests_before.len()..];
    assert!(
        new_requests.contains("GET /5e3d3c80-eba8-5531-84db-fe0b24a2bbed.json"),
        "{new_requests}"
    );
    assert!(
        !new_requests.contains("8682f757"),
        "an unchanged event was fetched: {new_requests}"
    );

    // The server goes down: the source fails, keeps its indicators, nothing is published.
    drop(server);
    let (code, r) = sync_once(&config, &out);
    assert_eq!(code, 1, "a failed source is exit status 1");
    assert_eq!(r["sources"][0]["ok"], false);
    assert!(
        r["sources"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{r}"
    );
    assert_eq!(r["indicators"].as_u64().unwrap(), indicators - 1, "{r}");
    assert!(
        published(&r).is_empty(),
        "a failed source never empties the set: {r}"
    );
    let status = read_json(&dir.path().join("state/status.json"));
    assert_eq!(status["sources"][0]["consecutive_failures"], 1);
    let metrics = std::fs::read_to_string(dir.path().join("state/metrics.prom")).unwrap();
    assert!(
        metrics.contains("cwn_sync_source_up{source=\"feed\"} 0"),
        "{metrics}"
    );

    // It comes back with a new attribute (a second after the last edit, as above): sync
    // recovers by itself.
    std::thread::sleep(Duration::from_millis(1100));
    let ev2 = feed.join("8682f757-5d7b-54e9-8c2c-af6bf330fd53.json");
    let mut doc = read_json(&ev2);
    let mut extra = doc["Event"]["Attribute"][0].clone();
    extra["uuid"] = json!("0d7c2b8e-6f3a-4b8e-9a61-3c5b2e8f1a44");
    extra["type"] = json!("domain");
    extra["value"] = json!("fresh-c2.example.net");
    extra["to_ids"] = json!(true);
    doc["Event"]["Attribute"]
        .as_array_mut()
        .unwrap()
        .push(extra);
    doc["Event"]["timestamp"] = json!("1741800000");
    write_json(&ev2, &doc);
    let mut manifest = read_json(&feed.join("manifest.json"));
    manifest["8682f757-5d7b-54e9-8c2c-af6bf330fd53"]["timestamp"] = json!(1741800000);
    write_json(&feed.join("manifest.json"), &manifest);
    let _server = http_server(&feed, port, &log);
    let (code, r) = sync_once(&config, &out);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sources"][0]["ok"], true);
    let p = published(&r);
    assert_eq!(p.len(), 1, "{r}");
    let d = inspect(&p[0].1);
    assert_eq!(
        (d["added"].as_u64(), d["removed"].as_u64()),
        (Some(1), Some(0)),
        "{d}"
    );

    // The chain answers as a full compile of the feed as it now is.
    let tel = dir.path().join("t.jsonl");
    std::fs::write(
        &tel,
        "{\"q\":\"worse-login.example.com\"}\n{\"q\":\"bad-login.example.com\"}\n{\"q\":\"fresh-c2.example.net\"}\n",
    )
    .unwrap();
    let full = dir.path().join("full.cwnsnap");
    let o = cwn(&[
        "compile",
        &feed.display().to_string(),
        "-o",
        &full.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hits = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["match"];
        a.extend_from_slice(args);
        a.extend(["--field", "q=domain", tel.to_str().unwrap()]);
        let o = cwn(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["indicator_id"].to_string())
            .collect();
        v.sort();
        v
    };
    let mut chain = vec!["--index".to_string(), first[0].1.clone()];
    let mut deltas: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwndelta"))
        .collect();
    deltas.sort();
    for d in &deltas {
        chain.extend(["--delta".to_string(), d.display().to_string()]);
    }
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    let got = hits(&chain);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got, hits(&["--index", full.to_str().unwrap()]));
}

/// `medallion` on the PATH, or `None` when it is missing and `CWN_SKIP_TAXII=1`.
pub(crate) fn medallion() -> Option<String> {
    let found = Command::new("medallion")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("medallion".into());
    }
    if std::env::var("CWN_SKIP_TAXII").as_deref() == Ok("1") {
        eprintln!("skipping: CWN_SKIP_TAXII=1 and no medallion on the PATH");
        return None;
    }
    panic!(
        "medallion (the OASIS TAXII 2.1 reference server) is not on the PATH: \
         `python3 -m pip install medallion` (.ci/run does), or set CWN_SKIP_TAXII=1 to skip \
         the TAXII test deliberately"
    );
}

pub(crate) const COLLECTION: &str = "365fed99-08fa-fdcd-a1b3-fb247eb41d01";

fn indicator(n: u32, domain: &str) -> Value {
    json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": format!("indicator--{:08x}-0000-4000-8000-000000000000", n),
        "created": "2026-12-01T10:00:00.000Z",
        "modified": "2026-12-01T10:00:00.000Z",
        "name": format!("C2 domain {n}"),
        "pattern": format!("[domain-name:value = '{domain}']"),
        "pattern_type": "stix",
        "valid_from": "2026-12-01T10:00:00Z",
        "indicator_types": ["malicious-activity"],
        "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
    })
}

fn post_objects(port: u16, objects: Vec<Value>) {
    // Python's urllib: no HTTP client in the test dependencies.
    let body = json!({ "objects": objects }).to_string();
    let script = format!(
        "import urllib.request,base64,sys\n\
         r=urllib.request.Request('http://127.0.0.1:{port}/api1/collections/{COLLECTION}/objects/',data=sys.stdin.buffer.read(),method='POST')\n\
         r.add_header('Content-Type','application/taxii+json;version=2.1')\n\
         r.add_header('Accept','application/taxii+json;version=2.1')\n\
         r.add_header('Authorization','Basic '+base64.b64encode(b'admin:Password0').decode())\n\
         print(urllib.request.urlopen(r).read().decode())\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "POST failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["success_count"], objects.len(), "{status}");
}

/// Starts `medallion` on `port` with one empty, writable collection ([`COLLECTION`]), user
/// `admin` / `Password0` and `page` objects a page; its log goes to `dir/medallion.log`.
pub(crate) fn start_medallion(medallion: &str, dir: &Path, port: u16, page: u32) -> Server {
    let data = json!({
        "/discovery": {
            "title": "cwn test TAXII server",
            "default": format!("http://127.0.0.1:{port}/api1/"),
            "api_roots": [format!("http://127.0.0.1:{port}/api1/")]
        },
        "api1": {
            "information": {
                "title": "API root 1",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 9765625
            },
            "status": [],
            "collections": [{
                "id": COLLECTION,
                "title": "NCSC indicators",
                "can_read": true,
                "can_write": true,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": [],
                "manifest": []
            }]
        }
    });
    write_json(&dir.join("data.json"), &data);
    let config = json!({
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": dir.join("data.json").display().to_string()
        },
        "users": { "admin": "Password0" },
        "taxii": { "max_page_size": page }
    });
    write_json(&dir.join("medallion.json"), &config);
    let mut child = Command::new(medallion)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(dir.join("medallion.json"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("medallion.log")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, "medallion");
    Server(child)
}

#[test]
fn objects_added_to_a_taxii_collection_between_cycles_arrive_as_a_delta_of_only_them() {
    let Some(medallion) = medallion() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = crate::util::free_tcp_port();
    // Two objects a page: the sync pages through `next`.
    let _server = start_medallion(&medallion, dir.path(), port, 2);
    post_objects(
        port,
        (1..=5)
            .map(|n| indicator(n, &format!("c2-{n}.taxii-test.example")))
            .collect(),
    );
    std::fs::write(dir.path().join("password"), "Password0\n").unwrap();
    let sync_toml = dir.path().join("sync.toml");
    std::fs::write(
        &sync_toml,
        format!(
            "state_dir = \"state\"\n[[source]]\nname = \"ncsc\"\nkind = \"taxii\"\nurl = \"http://127.0.0.1:{port}/taxii2/\"\ncollection = \"NCSC indicators\"\nusername = \"admin\"\npassword_file = \"password\"\ntimeout = \"10s\"\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("published");
    let (code, r) = sync_once(&sync_toml, &out);
    assert_eq!(
        code,
        0,
        "{r}\n{}",
        std::fs::read_to_string(dir.path().join("medallion.log")).unwrap_or_default()
    );
    assert_eq!(r["indicators"], 5, "all five, over three pages: {r}");
    assert_eq!(published(&r)[0].0, "full");

    post_objects(
        port,
        vec![
            indicator(6, "late-c2.taxii-test.example"),
            indicator(7, "later-c2.taxii-test.example"),
        ],
    );
    let (code, r) = sync_once(&sync_toml, &out);
    assert_eq!(code, 0, "{r}");
    let p = published(&r);
    assert_eq!(p.len(), 1, "{r}");
    assert_eq!(p[0].0, "delta");
    let d = inspect(&p[0].1);
    assert_eq!(
        (d["added"].as_u64(), d["removed"].as_u64()),
        (Some(2), Some(0)),
        "only the new objects: {d}"
    );
    assert_eq!(r["indicators"], 7);
    // Nothing new: nothing published, and the cursor asked only for what came after.
    let (_, r) = sync_once(&sync_toml, &out);
    assert!(published(&r).is_empty(), "{r}");
    let state = read_json(&dir.path().join("state/sources/ncsc/state.json"));
    assert!(state["cursor"].is_string(), "{state}");
}
