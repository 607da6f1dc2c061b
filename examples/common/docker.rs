//! The Docker side of the container benchmarks: the engine check, a `FROM scratch` busybox
//! image built here, and the `docker` commands Shoal is measured against.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";

/// Fails, saying why, unless the Docker CLI reaches an engine.
pub fn require_engine(bench: &str) -> anyhow::Result<()> {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match version {
        Ok(out) if out.status.success() => Ok(()),
        other => {
            anyhow::bail!("{bench} needs a running Docker engine (`docker version`: {other:?})")
        }
    }
}

/// Runs `docker args`, returning stdout.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Times `docker args` to its exit; it must succeed.
pub async fn timed(args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let start = Instant::now();
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    let took = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        out.status
    );
    Ok((
        took,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// An image built `FROM scratch` around the host's static busybox; dropping it removes
/// every container made from it, then the image.
pub struct Image(&'static str);

impl Image {
    pub fn build(tag: &'static str) -> anyhow::Result<Image> {
        anyhow::ensure!(
            Path::new(BUSYBOX).is_file(),
            "the benchmark needs a static {BUSYBOX}: `apt-get install -y busybox-static`"
        );
        let context = std::env::temp_dir().join(format!("shoal-bench-{}", std::process::id()));
        std::fs::create_dir_all(&context)?;
        std::fs::copy(BUSYBOX, context.join("busybox"))?;
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )?;
        let built = docker(&["build", "-q", "-t", tag, &context.to_string_lossy()]);
        let _ = std::fs::remove_dir_all(&context);
        built?;
        Ok(Image(tag))
    }

    pub fn tag(&self) -> &'static str {
        self.0
    }

    /// The wall time of `docker run --rm IMAGE true`.
    #[allow(dead_code)] // bench_jobs only
    pub async fn run_true(&self) -> anyhow::Result<Duration> {
        Ok(timed(&["run", "--rm", self.0, "true"]).await?.0)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let filter = format!("ancestor={}", self.0);
        if let Ok(ids) = docker(&["ps", "-a", "-q", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        let _ = docker(&["rmi", "-f", self.0]);
    }
}
