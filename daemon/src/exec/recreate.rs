//! A container made anew from its image reference, as the machine has it now: what
//! `batch update` does to a session after it pulled a newer image.
//!
//! ```text
//!  inspect the container ─▶ what Shoal set (command, env, user, shoal.* labels, host config):
//!                           the container's config less what its old image supplied
//!  (a <name>-next left by a crash is removed first)
//!  create <name>-next from the reference ─failed─▶ the old container runs on, unchanged
//!  stop the old (grace) ─▶ remove it ─▶ rename <name>-next to <name> ─▶ start
//!                                        └─failed─▶ both removed: the session ends, saying why
//! ```
//!
//! It works the same on a container this daemon started and on one it adopted after a
//! restart: everything it needs is on the engine.

use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ImageConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use super::docker::remove;

/// Makes container `name` anew from its image reference; returns the image id it now runs.
pub(super) async fn recreate(
    docker: &Docker,
    name: &str,
    grace: Duration,
) -> Result<String, String> {
    let engine = |what: &str, error: bollard::errors::Error| format!("{what}: {error}");
    let old = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| engine("inspecting the container", e))?;
    let old_image = match &old.image {
        Some(id) => docker.inspect_image(id).await.ok().and_then(|i| i.config),
        None => None,
    };
    let body = body_of(old.config.unwrap_or_default(), old.host_config, old_image)?;
    let reference = body.image.clone().unwrap_or_default();
    let next = format!("{name}-next");
    // A `-next` an earlier recreate left (a crash between its steps) would clash.
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = docker.remove_container(&next, Some(force.clone())).await;
    let options = CreateContainerOptionsBuilder::default().name(&next).build();
    if let Err(error) = docker.create_container(Some(options), body).await {
        return Err(engine(
            &format!("creating a container of {reference}"),
            error,
        ));
    }
    let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
    let stop = StopContainerOptionsBuilder::default().t(seconds).build();
    let stopping = docker
        .clone()
        .with_timeout(grace + Duration::from_secs(120));
    if let Err(error) = stopping.stop_container(name, Some(stop)).await {
        tracing::warn!(container = %name, %error, "docker stop before the recreate failed");
    }
    remove(docker, name).await;
    let rename = RenameContainerOptionsBuilder::default().name(name).build();
    let swapped = match docker.rename_container(&next, rename).await {
        Ok(()) => docker
            .start_container(name, None)
            .await
            .map_err(|e| engine("starting the new container", e)),
        Err(error) => Err(engine("renaming the new container", error)),
    };
    if let Err(error) = swapped {
        // Neither is left: the session ends, saying why.
        let _ = docker.remove_container(&next, Some(force.clone())).await;
        let _ = docker.remove_container(name, Some(force)).await;
        return Err(error);
    }
    let now = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| engine("inspecting the new container", e))?;
    Ok(now.image.unwrap_or_default())
}

/// What to create: the old container's settings less what its image supplied, so the new
/// image's defaults (command, environment, user) apply where Shoal set none.
fn body_of(
    config: bollard::models::ContainerConfig,
    host_config: Option<bollard::models::HostConfig>,
    image: Option<ImageConfig>,
) -> Result<ContainerCreateBody, String> {
    let image = image.unwrap_or_default();
    let reference = config
        .image
        .filter(|reference| !reference.is_empty())
        .ok_or("the container names no image")?;
    let image_env = image.env.unwrap_or_default();
    let env = config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| !image_env.contains(entry))
        .collect();
    let labels = config.labels.map(|labels| {
        labels
            .into_iter()
            .filter(|(key, _)| key.starts_with("shoal."))
            .collect()
    });
    Ok(ContainerCreateBody {
        image: Some(reference),
        cmd: config.cmd.filter(|cmd| Some(cmd) != image.cmd.as_ref()),
        user: config
            .user
            .filter(|user| !user.is_empty() && Some(user) != image.user.as_ref()),
        env: Some(env),
        labels,
        host_config,
        ..ContainerCreateBody::default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerConfig, HostConfig};

    use super::*;

    #[test]
    fn only_what_shoal_set_is_carried_over() {
        let config = ContainerConfig {
            image: Some("127.0.0.1:5000/app:1".into()),
            cmd: Some(vec!["sleep".into(), "60".into()]),
            env: Some(vec!["PATH=/bin".into(), "TOKEN=x".into()]),
            user: Some("65534".into()),
            labels: Some(HashMap::from([
                ("shoal.job".into(), "7".into()),
                ("org.opencontainers.image.version".into(), "1".into()),
            ])),
            ..ContainerConfig::default()
        };
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            ..ImageConfig::default()
        };
        let host = HostConfig {
            memory: Some(64 << 20),
            ..HostConfig::default()
        };
        let body = body_of(config.clone(), Some(host.clone()), Some(image.clone())).unwrap();
        assert_eq!(body.image.as_deref(), Some("127.0.0.1:5000/app:1"));
        assert_eq!(body.cmd, config.cmd);
        assert_eq!(body.env, Some(vec!["TOKEN=x".to_string()]));
        assert_eq!(body.user.as_deref(), Some("65534"));
        assert_eq!(
            body.labels.unwrap().keys().collect::<Vec<_>>(),
            ["shoal.job"]
        );
        assert_eq!(body.host_config, Some(host));

        // The image's own command and user stay the image's: the new one's apply.
        let defaults = ContainerConfig {
            cmd: image.cmd.clone(),
            user: Some(String::new()),
            ..config
        };
        let body = body_of(defaults, None, Some(image)).unwrap();
        assert_eq!(body.cmd, None);
        assert_eq!(body.user, None);
        assert!(body_of(ContainerConfig::default(), None, None).is_err());
    }
}
