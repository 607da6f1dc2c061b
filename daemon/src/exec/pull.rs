//! Getting a container's image onto the machine before the container is made: by the
//! run's [`PullPolicy`], pulled from its registry through the engine (`docker pull`), the
//! progress written to the run's output.
//!
//! ```text
//!  never   ─▶ inspect ─absent─▶ fail at once ("pull is never")
//!  missing ─▶ inspect ─absent─▶ pull
//!  always  ──────────────────▶ pull
//!  pull: create_image stream ─▶ one line per layer and step ─▶ output (stderr)
//!        an error ─▶ names the registry, the image and why (unauthorized, not found, ...)
//! ```
//!
//! The engine keeps what it pulled, so a later run of the same image with `missing` starts
//! at once. A registry the fleet holds credentials for is logged in to with them
//! ([`PullAuth`]), for this pull only: the engine keeps no login.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::query_parameters::ListImagesOptions;
use futures::StreamExt;
use shoal_protocol::PullPolicy;
use shoal_protocol::image_ref::{MAX_IMAGE_KEYS, image_key, registry_of, split_reference};

use super::ExecError;
use super::output::{OutputWriter, Stream};

/// Longest one pull may take, all layers together.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Most progress lines one pull writes to the output; the rest are left out.
const MAX_PROGRESS_LINES: usize = 200;

/// A registry login for one pull. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Makes sure `image` is on the machine as `policy` says, pulling it when it must (after
/// `before_pull`, which is dropped unrun when there is nothing to pull).
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    policy: PullPolicy,
    auth: Option<&PullAuth>,
    output: &OutputWriter,
    before_pull: impl Future<Output = ()>,
) -> Result<(), ExecError> {
    let progress = |text: String| output.push(Stream::Stderr, format!("{text}\n").as_bytes());
    let pull_needed = match policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => !image_present(docker, image).await?,
        PullPolicy::Never => {
            if !image_present(docker, image).await? {
                return Err(ExecError::ImageAbsent {
                    image: image.to_string(),
                });
            }
            false
        }
    };
    if pull_needed {
        before_pull.await;
        pull(docker, image, auth, &progress).await?;
    }
    Ok(())
}

/// Whether the engine has `image`.
async fn image_present(docker: &Docker, image: &str) -> Result<bool, ExecError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// `docker pull image`, bounded by [`PULL_TIMEOUT`], each line of its progress given to
/// `line`.
async fn pull(
    docker: &Docker,
    image: &str,
    auth: Option<&PullAuth>,
    line: &(dyn Fn(String) + Sync),
) -> Result<(), ExecError> {
    let registry = registry_of(image);
    let failed = |reason: String| ExecError::Pull {
        registry: registry.to_string(),
        image: image.to_string(),
        kind: classify(&reason),
        reason,
    };
    match auth {
        Some(auth) => line(format!(
            "pulling {image} from {registry} as {}",
            auth.username
        )),
        None => line(format!("pulling {image} from {registry}")),
    }
    let credentials = auth.map(|auth| DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(registry.to_string()),
        ..DockerCredentials::default()
    });
    let (name, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    // The client's own timeout covers the whole stream: give it more than the pull's.
    let streaming = docker.clone().with_timeout(PULL_TIMEOUT * 2);
    let mut progress = Progress::default();
    let pulled = async {
        let mut stream = streaming.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| failed(engine_reason(error)))?;
            if let Some(text) = progress.line(&info) {
                line(text);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(PULL_TIMEOUT, pulled).await {
        Ok(Ok(())) => {
            line(format!("pulled {image}"));
            Ok(())
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(failed(format!(
            "the pull did not finish within {PULL_TIMEOUT:?} (unreachable)"
        ))),
    }
}

impl super::DockerExecutor {
    /// Keys of the newest images the engine holds (at most [`MAX_IMAGE_KEYS`]), sorted.
    pub async fn image_keys(&self) -> Result<Vec<u64>, ExecError> {
        let docker = self.client().await?;
        let mut images = docker.list_images(None::<ListImagesOptions>).await?;
        images.sort_by_key(|image| std::cmp::Reverse(image.created));
        let mut keys: Vec<u64> = images
            .iter()
            .flat_map(|image| image.repo_tags.iter())
            .filter(|tag| !tag.starts_with("<none>"))
            .map(|tag| image_key(tag))
            .take(MAX_IMAGE_KEYS)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// `docker pull image` with `auth`, whatever the engine has; the progress is left out.
    pub async fn pull_image(&self, image: &str, auth: Option<&PullAuth>) -> Result<(), ExecError> {
        let docker = self.client().await?;
        pull(&docker, image, auth, &|_| {}).await
    }
}

/// What the engine said went wrong.
fn engine_reason(error: DockerError) -> String {
    match error {
        DockerError::DockerStreamError { error } => error,
        DockerError::DockerResponseServerError { message, .. } => message,
        error => error.to_string(),
    }
}

/// Why a pull failed, where the engine's words say so.
fn classify(reason: &str) -> Option<&'static str> {
    let reason = reason.to_lowercase();
    let says = |words: &[&str]| words.iter().any(|word| reason.contains(word));
    if says(&[
        "unauthorized",
        "authentication required",
        "denied",
        "no basic auth",
    ]) {
        Some("unauthorized")
    } else if says(&[
        "not found",
        "manifest unknown",
        "name unknown",
        "does not exist",
    ]) {
        Some("not found")
    } else if says(&[
        "connection refused",
        "no such host",
        "timeout",
        "unreachable",
        "dial tcp",
        "tls handshake",
        "server gave http response",
    ]) {
        Some("unreachable")
    } else {
        None
    }
}

/// Turns the engine's progress messages into lines: one per layer and step (the byte
/// counts of a download are left out), at most [`MAX_PROGRESS_LINES`].
#[derive(Default)]
struct Progress {
    /// The last step written for each layer (or for the pull as a whole).
    last: HashMap<String, String>,
    written: usize,
}

impl Progress {
    fn line(&mut self, info: &CreateImageInfo) -> Option<String> {
        let status = info.status.as_deref()?.trim();
        let id = info.id.clone().unwrap_or_default();
        if status.is_empty() || self.last.get(&id).map(String::as_str) == Some(status) {
            return None;
        }
        self.last.insert(id.clone(), status.to_string());
        self.written += 1;
        match self.written {
            n if n < MAX_PROGRESS_LINES => Some(match id.as_str() {
                "" => status.to_string(),
                id => format!("{id}: {status}"),
            }),
            MAX_PROGRESS_LINES => Some("(further pull progress left out)".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, status: &str) -> CreateImageInfo {
        CreateImageInfo {
            id: (!id.is_empty()).then(|| id.to_string()),
            status: Some(status.to_string()),
            ..CreateImageInfo::default()
        }
    }

    #[test]
    fn failures_are_classified_by_the_engines_words() {
        let not_found = "manifest for 127.0.0.1:5000/x:1 not found: manifest unknown";
        assert_eq!(classify(not_found), Some("not found"));
        let refused =
            "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused";
        assert_eq!(classify(refused), Some("unreachable"));
        let auth =
            "Head \"https://r.example/v2/x/manifests/1\": unauthorized: authentication required";
        assert_eq!(classify(auth), Some("unauthorized"));
        assert_eq!(classify("something else"), None);
    }

    #[test]
    fn progress_writes_each_step_of_each_layer_once_and_stops_at_the_bound() {
        let mut progress = Progress::default();
        let lines: Vec<_> = [
            info("pull", "Pulling from team/app"),
            info("abc", "Pulling fs layer"),
            info("abc", "Downloading"),
            info("abc", "Downloading"),
            info("abc", "Pull complete"),
            info("", "Status: Downloaded newer image for app:1"),
        ]
        .iter()
        .filter_map(|info| progress.line(info))
        .collect();
        assert_eq!(
            lines,
            [
                "pull: Pulling from team/app",
                "abc: Pulling fs layer",
                "abc: Downloading",
                "abc: Pull complete",
                "Status: Downloaded newer image for app:1",
            ]
        );
        let mut progress = Progress::default();
        let many = (0..1000)
            .filter_map(|i| progress.line(&info(&format!("layer{i}"), "Pull complete")))
            .count();
        assert_eq!(many, MAX_PROGRESS_LINES);
    }
}
