//! Handing GPUs to a container, as `docker run --gpus '"device=0,1"'` does: a device
//! request for the NVIDIA driver with the chosen indices, and a container label naming
//! them, so a restarted `shoald` that adopts the container knows they are taken.

use bollard::models::DeviceRequest;
use shoal_protocol::gpus::MAX_GPUS;

/// The container label that names the GPU indices a run holds (`0,1`).
pub const LABEL_GPUS: &str = "shoal.gpus";

/// The engine's request for the GPUs `indices`.
pub fn device_request(indices: &[u32]) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".to_string()),
        device_ids: Some(indices.iter().map(u32::to_string).collect()),
        capabilities: Some(vec![vec!["gpu".to_string()]]),
        ..DeviceRequest::default()
    }
}

/// `indices` as the [`LABEL_GPUS`] value.
pub fn label_value(indices: &[u32]) -> String {
    indices
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The indices a [`LABEL_GPUS`] value names; what does not read is left out, and at
/// most [`MAX_GPUS`] are read.
pub fn parse_label(value: &str) -> Vec<u32> {
    value
        .split(',')
        .filter_map(|part| part.trim().parse().ok())
        .take(MAX_GPUS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_driver_the_devices_and_the_gpu_capability() {
        let request = device_request(&[0, 2]);
        assert_eq!(request.driver.as_deref(), Some("nvidia"));
        assert_eq!(request.device_ids, Some(vec!["0".into(), "2".into()]));
        assert_eq!(request.capabilities, Some(vec![vec!["gpu".into()]]));
        assert_eq!(request.count, None);
    }

    #[test]
    fn the_label_reads_back_and_junk_reads_as_nothing() {
        assert_eq!(parse_label(&label_value(&[1, 3])), [1, 3]);
        assert_eq!(parse_label(""), Vec::<u32>::new());
        assert_eq!(parse_label("x,2,-1"), [2]);
        assert_eq!(parse_label(&"1,".repeat(100)).len(), MAX_GPUS);
    }
}
