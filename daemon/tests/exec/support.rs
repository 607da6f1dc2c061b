//! What the executor tests share: the Docker precondition, the busybox image they build
//! (`FROM scratch`, no registry), guards that remove what they create, and waits.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use shoal_daemon::exec::{Output, RunSpec};

/// The image the container tests run, built from the host's static busybox.
pub const IMAGE: &str = "shoal-test-busybox:local";

const BUSYBOX: &str = "/bin/busybox";

/// A container run of `sh -c script` in the test image, attempt 1.
pub fn container_sh(job: u64, script: &str) -> RunSpec {
    RunSpec {
        job,
        attempt: 1,
        command: vec!["sh".into(), "-c".into(), script.into()],
        image: Some(IMAGE.into()),
        ..RunSpec::default()
    }
}

/// Runs `docker args`, returning stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("running docker: is the Docker CLI installed?");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Held for the whole of a test that runs `shoald` containers on a Docker network of its
/// own (mDNS, chaos): one such fleet at a time, so multicast discovery is not starved by a
/// five-machine fault run beside it on two cores.
pub async fn one_container_fleet_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static FLEETS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    FLEETS.lock().await
}

/// Panics, saying why, unless a Docker engine answers.
pub fn require_docker() -> String {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        other => panic!(
            "the Docker tests need a running Docker engine \
             (`docker version` failed: {other:?})"
        ),
    }
}

/// Whether `path` is an ELF executable without an interpreter, i.e. statically linked.
fn is_static_elf(path: &Path) -> bool {
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF only, which is what Debian ships for this machine.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        // PT_INTERP (3) names the dynamic loader.
        elf.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// How many running tests use [`IMAGE`]; the last one out removes it.
static IMAGE_USERS: Mutex<usize> = Mutex::new(0);

/// Holds [`IMAGE`] built while alive.
pub struct ImageGuard;

/// Builds [`IMAGE`] unless another test already holds it.
pub fn test_image() -> ImageGuard {
    require_docker();
    let mut users = IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
    if *users == 0 {
        assert!(
            is_static_elf(Path::new(BUSYBOX)),
            "the container executor tests need a statically linked {BUSYBOX}: \
             install it with `apt-get install -y busybox-static`"
        );
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(BUSYBOX, context.path().join("busybox")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        docker(&["build", "-q", "-t", IMAGE, context.path().to_str().unwrap()]);
    }
    *users += 1;
    ImageGuard
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let mut users = IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = Command::new("docker").args(["rmi", "-f", IMAGE]).output();
        }
    }
}

/// Force-removes the named containers when dropped, even when the test failed.
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

/// A job id no other test (or concurrent test run) uses.
pub fn job_id(n: u64) -> u64 {
    u64::from(std::process::id()) * 100 + n
}

/// Whether a container of that exact name exists, running or not.
pub fn container_exists(name: &str) -> bool {
    !docker(&["ps", "-a", "-q", "--filter", &format!("name=^/{name}$")]).is_empty()
}

/// Waits until the output holds `needle`, panicking with what it holds after `within`.
pub async fn wait_for_text(output: &Output, needle: &str, within: Duration) {
    let mut follower = output.follow();
    let mut seen = String::new();
    let found = tokio::time::timeout(within, async {
        while let Some(chunk) = follower.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.data));
            if seen.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{needle:?} did not appear in the output within {within:?}: {:?}",
        output.snapshot().text()
    );
}

/// Waits up to `within` for `check`, polling.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback TCP port nothing listens on now.
pub fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral TCP port");
    listener.local_addr().unwrap().port()
}

/// A loopback UDP port nothing listens on now.
pub fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("an ephemeral UDP port");
    socket.local_addr().unwrap().port()
}

/// The API, gossip and peer RPC ports for one `shoald` on loopback.
pub fn free_ports() -> [u16; 3] {
    [free_tcp_port(), free_udp_port(), free_tcp_port()]
}

/// What job `id` printed, as `GET /v1/jobs/{id}/logs` through `api` answers it.
pub async fn job_output(api: &str, id: impl std::fmt::Display) -> String {
    let url = format!("{api}/v1/jobs/{id}/logs");
    let logs: shoal_protocol::api::JobLogs = shoal_daemon::testsuite::get_json(&url).await;
    logs.chunks.iter().map(|c| c.text.as_str()).collect()
}
