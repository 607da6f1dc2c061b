//! Resource sampling with sysinfo: CPU, memory, the data directory's disk and load.

use std::path::{Path, PathBuf};

use shoal_protocol::Resources;
use sysinfo::{Disks, System};

/// Samples this machine. Keep one per node: CPU use is measured between samples.
pub struct Sampler {
    system: System,
    disks: Disks,
    data_dir: PathBuf,
}

/// Facts about the machine that do not change while the daemon runs.
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
}

impl HostFacts {
    pub fn read() -> Self {
        HostFacts {
            hostname: System::host_name().unwrap_or_else(|_| "unknown".to_string()),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

impl Sampler {
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let mut system =
            System::new().map_err(|err| anyhow::anyhow!("cannot read system facts: {err}"))?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let disks = Disks::new_with_refreshed_list()
            .map_err(|err| anyhow::anyhow!("cannot list disks: {err}"))?;
        Ok(Sampler {
            system,
            disks,
            data_dir: data_dir
                .canonicalize()
                .unwrap_or_else(|_| data_dir.to_path_buf()),
        })
    }

    /// Takes a fresh sample.
    pub fn sample(&mut self) -> Resources {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(false);
        let cpu_cores = self.system.cpus().len().max(1) as u32;
        let load_one = System::load_average().map(|avg| avg.one).unwrap_or(0.0);
        let (disk_total_bytes, disk_free_bytes) = self
            .data_disk()
            .map(|disk| (disk.total_space(), disk.available_space()))
            .unwrap_or((0, 0));
        Resources {
            cpu_cores,
            cpu_usage: (self.system.global_cpu_usage() / 100.0).clamp(0.0, 1.0),
            load: (load_one / f64::from(cpu_cores)) as f32,
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            disk_total_bytes,
            disk_free_bytes,
        }
    }

    /// The disk whose mount point is the longest prefix of the data directory.
    fn data_disk(&self) -> Option<&sysinfo::Disk> {
        self.disks
            .iter()
            .filter(|disk| self.data_dir.starts_with(disk.mount_point()))
            .max_by_key(|disk| disk.mount_point().as_os_str().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = Sampler::new(dir.path()).unwrap();
        let sample = sampler.sample();
        assert!(sample.cpu_cores >= 1);
        assert!(sample.memory_total_bytes > 0);
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!((0.0..=1.0).contains(&sample.cpu_usage));
        assert!(sample.disk_total_bytes >= sample.disk_free_bytes);
    }
}
