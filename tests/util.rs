//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A path below the project's `data/`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The shared folder: `CWN_SHARED` when set, else `../shared` beside the checkout.
pub fn shared_dir() -> Option<PathBuf> {
    match std::env::var_os("CWN_SHARED") {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")),
    }
    .filter(|p| p.is_dir())
}

/// A path below the shared `data/real/`. When the file is not there the test fails saying
/// how to provide it, unless `CWN_SKIP_REAL=1` asks to skip the real-data parts (then
/// `None`, with a note on stderr): a test never passes silently without its data.
pub fn shared_real(name: &str) -> Option<PathBuf> {
    let p = shared_dir()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("data/real")
        .join(name);
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("CWN_SKIP_REAL").is_ok_and(|v| v == "1") {
        eprintln!("skipping (CWN_SKIP_REAL=1): {} is not present", p.display());
        return None;
    }
    panic!(
        "{} is not present: put the shared folder beside the checkout (../shared, with \
         data/real/ as its README lists) or point CWN_SHARED at it; CWN_SKIP_REAL=1 skips \
         the real-data tests deliberately",
        p.display()
    );
}

/// Extracts a `.tar.gz` into a fresh temporary directory.
pub fn extract(tarball: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = std::fs::File::open(tarball).expect("open tarball");
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(dir.path())
        .expect("unpack tarball");
    dir
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port on loopback that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
