//! Image references: the registry one names, its name and tag, the form the engine lists
//! it in, and the short keys machines publish for the images they hold, so the scheduler
//! can prefer a machine that need not pull.

/// Most image keys one machine publishes (the newest images).
pub const MAX_IMAGE_KEYS: usize = 256;

/// `busybox` and `docker.io/library/busybox:latest` name the same image: the reference as
/// the engine lists it (`busybox:latest`), with `:latest` added when it names no tag or
/// digest and Docker Hub's own prefixes left out.
pub fn normalize(reference: &str) -> String {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let last_part = short.rfind('/').map_or(0, |slash| slash + 1);
    let tagged = short[last_part..].contains(':') || short.contains('@');
    match tagged {
        true => short.to_string(),
        false => format!("{short}:latest"),
    }
}

/// The registry an image reference names: what comes before the first `/` when it looks
/// like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => host,
        _ => "docker.io",
    }
}

/// The name and the tag (or digest) of a reference; `latest` when it gives neither, since
/// the engine pulls every tag of a name given alone.
pub fn split_reference(image: &str) -> (&str, &str) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    let last_part = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_part..].rfind(':') {
        Some(colon) => (&image[..last_part + colon], &image[last_part + colon + 1..]),
        None => (image, "latest"),
    }
}

/// A 64-bit key of the normalized reference (FNV-1a): equal references give equal keys
/// on every build and machine. Two references may share a key; a key only makes a machine
/// preferred, never chosen alone.
pub fn image_key(reference: &str) -> u64 {
    normalize(reference)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_host_part_or_docker_hub() {
        assert_eq!(registry_of("127.0.0.1:5000/team/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/team/app"), "ghcr.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("team/app:1"), "docker.io");
        assert_eq!(registry_of("busybox"), "docker.io");
    }

    #[test]
    fn a_reference_splits_into_name_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("127.0.0.1:5000/team/app"),
            ("127.0.0.1:5000/team/app", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/team/app:pull"),
            ("127.0.0.1:5000/team/app", "pull")
        );
        assert_eq!(split_reference("app@sha256:abcd"), ("app", "sha256:abcd"));
    }

    #[test]
    fn references_to_one_image_normalize_alike() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize("docker.io/team/app"), "team/app:latest");
        assert_eq!(normalize("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(normalize("127.0.0.1:5000/app:2"), "127.0.0.1:5000/app:2");
        assert_eq!(normalize("app@sha256:abcd"), "app@sha256:abcd");
        assert_eq!(image_key("busybox"), image_key("busybox:latest"));
        assert_ne!(image_key("busybox:1.36"), image_key("busybox:1.37"));
    }
}
