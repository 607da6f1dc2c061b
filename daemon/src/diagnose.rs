//! `shoald diagnose`: what this machine needs to run work, checked: the Docker engine, free
//! disk where the data lives, free memory, a writable data directory. A node runs the same
//! checks at start and every few minutes and publishes them with its heartbeat, so
//! `shoal machines show` tells what is wrong with any machine.

use std::path::Path;
use std::time::Duration;

use shoal_protocol::{Check, Resources};

use crate::exec::{DockerConfig, DockerExecutor};
use crate::sampler::Sampler;

/// How often a running node checks itself again.
pub const DIAGNOSE_EVERY: Duration = Duration::from_secs(300);
/// Below this much free disk (or 5% of it) the disk check fails.
const MIN_FREE_DISK: u64 = 1 << 30;
/// Below this much available memory the memory check fails.
const MIN_FREE_MEMORY: u64 = 256 << 20;

/// The Docker check from what the engine answered.
pub fn docker_check(version: Option<&str>) -> Check {
    match version {
        Some(version) => Check {
            name: "docker".into(),
            ok: true,
            detail: format!("engine {version} answers; container jobs run here"),
        },
        None => Check {
            name: "docker".into(),
            ok: false,
            detail: "no Docker engine answers on the local socket: container jobs will not \
                     come here (install and start Docker, and give shoald access to \
                     /var/run/docker.sock)"
                .into(),
        },
    }
}

/// The disk check from the free and total bytes of the data directory's filesystem.
pub fn disk_check(free: u64, total: u64) -> Check {
    let ok = free >= MIN_FREE_DISK.min(total / 20);
    Check {
        name: "disk".into(),
        ok,
        detail: format!(
            "{} GiB free of {} GiB where the data lives{}",
            free >> 30,
            total >> 30,
            if ok { "" } else { ": free some space" }
        ),
    }
}

/// The memory check from the bytes available.
pub fn memory_check(available: u64) -> Check {
    let ok = available >= MIN_FREE_MEMORY;
    Check {
        name: "memory".into(),
        ok,
        detail: format!(
            "{} MiB available{}",
            available >> 20,
            if ok {
                ""
            } else {
                ": jobs may be killed for memory"
            }
        ),
    }
}

fn data_dir_check(dir: &Path) -> Check {
    let probe = dir.join(".diagnose");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    Check {
        name: "data_dir".into(),
        ok: written.is_ok(),
        detail: match written {
            Ok(()) => format!("{} is writable", dir.display()),
            Err(err) => format!("cannot write to {}: {err}", dir.display()),
        },
    }
}

/// The image of each template's current version, as `(template@vN, image, pinned id)`.
pub fn template_images(
    state: &shoal_protocol::FleetState,
) -> Vec<(String, String, Option<String>)> {
    state
        .all_templates()
        .filter_map(|t| {
            let v = t.current()?;
            let name = format!("{}@v{}", t.name, v.version);
            Some((name, v.spec.image.clone(), v.spec.digest.clone()))
        })
        .collect()
}

/// Whether this machine's engine has each template image (and the pinned id, if any).
/// Nothing is pulled: without a registry, a missing image is reported, not fetched.
pub async fn images_check(
    docker: &DockerExecutor,
    images: &[(String, String, Option<String>)],
) -> Check {
    let mut ok = true;
    let mut lines = Vec::new();
    for (template, image, pinned) in images {
        let line = match (docker.image_id(image).await, pinned) {
            (Err(err), _) => format!("{template}: {image} cannot be checked: {err}"),
            (Ok(None), _) => format!("{template}: {image} missing"),
            (Ok(Some(id)), Some(pin)) if id != *pin => {
                format!("{template}: {image} is {id}, not the pinned {pin}")
            }
            (Ok(Some(id)), _) => {
                lines.push(format!("{template}: {image} present ({id})"));
                continue;
            }
        };
        ok = false;
        lines.push(line);
    }
    Check {
        name: "images".into(),
        ok,
        detail: if lines.is_empty() {
            "no template images to check".into()
        } else {
            lines.join("; ")
        },
    }
}

/// Every check, from a resource sample of this machine and what the Docker engine answered
/// (`None`: it did not).
pub fn run(data_dir: &Path, resources: &Resources, docker_version: Option<&str>) -> Vec<Check> {
    let available = resources
        .memory_total_bytes
        .saturating_sub(resources.memory_used_bytes);
    vec![
        docker_check(docker_version),
        disk_check(resources.disk_free_bytes, resources.disk_total_bytes),
        memory_check(available),
        data_dir_check(data_dir),
    ]
}

/// `shoald diagnose`: runs the checks and prints them; false if any failed.
pub async fn print_diagnosis(data_dir: &Path) -> anyhow::Result<bool> {
    let docker = DockerExecutor::new(DockerConfig::default());
    let version = docker.docker_available().await;
    std::fs::create_dir_all(data_dir)?;
    let resources = Sampler::new(data_dir)?.sample();
    let checks = run(data_dir, &resources, version.as_deref());
    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        println!("{mark}  {:<9} {}", check.name, check.detail);
    }
    Ok(checks.iter().all(|check| check.ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_fail_below_their_floors_and_say_what_to_do() {
        assert!(docker_check(Some("27.0")).ok);
        let missing = docker_check(None);
        assert!(!missing.ok && missing.detail.contains("install and start Docker"));
        assert!(disk_check(50 << 30, 500 << 30).ok);
        assert!(!disk_check(100 << 20, 500 << 30).ok);
        assert!(
            disk_check(600 << 20, 8 << 30).ok,
            "5% of a small disk is enough"
        );
        assert!(memory_check(4 << 30).ok);
        assert!(!memory_check(100 << 20).ok);
    }

    #[test]
    fn a_real_run_checks_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let resources = Sampler::new(dir.path()).unwrap().sample();
        let checks = run(dir.path(), &resources, None);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["docker", "disk", "memory", "data_dir"]);
        assert!(checks[3].ok, "{:?}", checks[3]);
    }
}
