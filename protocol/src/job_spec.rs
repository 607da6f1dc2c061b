//! The limits on a [`JobSpec`] and its validation: one message per problem, naming the field.
//!
//! The API calls [`JobSpec::validate`] before it writes, and `apply` calls
//! [`JobSpec::validate_logged`] again, so a spec that reaches the log from anywhere is held to
//! the rules every build applies. A rule added later (the timeout ranges) is checked at the API
//! only: were `apply` to refuse what an older replica took, the two would disagree on the log.
//! What the log may still hold past such a rule is made safe where it is used (a timeout too
//! long to add to a clock means none).

use crate::{JobSpec, Labels};

/// Most arguments in `command`, program included.
pub const MAX_COMMAND_ARGS: usize = 256;
/// Most bytes in `command`, all arguments together.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most variables in `env`.
pub const MAX_ENV_VARS: usize = 128;
/// Longest `env` variable name, in bytes.
pub const MAX_ENV_NAME_LEN: usize = 128;
/// Longest `env` or `secret_env` value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 16 * 1024;
/// How a sealed `secret_env` value starts; base64 of the nonce and the sealed bytes follows.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// Longest sealed value: the prefix, then base64 of a 24-byte nonce, the longest value
/// and a 16-byte tag.
pub const MAX_SEALED_VALUE_BYTES: usize =
    SEALED_PREFIX.len() + (24 + MAX_ENV_VALUE_BYTES + 16).div_ceil(3) * 4;
/// What the API shows for each `secret_env` value.
pub const SECRET_SHOWN: &str = "(secret)";
/// Longest `image`, `template_id`, `idempotency_key`, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest `org`, in bytes.
pub const MAX_ORG_LEN: usize = 63;
/// The range of `cpus`, in cores.
pub const CPUS_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1024.0;
/// The range of `memory_mb`: 6 MiB is the least Docker accepts.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 6..=(1 << 24);
/// The range of `timeout_seconds` and `queue_timeout_seconds`: a second to a year.
pub const TIMEOUT_SECONDS_RANGE: std::ops::RangeInclusive<u64> = 1..=366 * 24 * 3600;
/// The range of `max_attempts`.
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=10;

/// An org name: 1 to 63 of a-z, 0-9, '-' or '_', starting with a letter or digit.
pub fn check_org(org: &str) -> Result<(), String> {
    let ok = !org.is_empty()
        && org.len() <= MAX_ORG_LEN
        && org.as_bytes()[0].is_ascii_alphanumeric()
        && org
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "org {org:?} must be 1 to {MAX_ORG_LEN} characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// A container user: a name, a uid, or `uid:gid` (or `name:group`), as Docker takes it:
/// 1 to 64 of a-z, A-Z, 0-9, '_', '-', '.', with at most one ':'.
pub fn check_user(field: &str, user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user.matches(':').count() <= 1
        && user.split(':').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {user:?} must be a user name, a uid or uid:gid (1 to 64 of a-z, A-Z, 0-9, '_', '-', '.')"
        ))
    }
}

/// A duration the API takes (`field`, in seconds): a second to a year.
pub fn check_seconds(field: &str, seconds: u64) -> Result<(), String> {
    if TIMEOUT_SECONDS_RANGE.contains(&seconds) {
        return Ok(());
    }
    Err(format!(
        "{field} must be between {} and {} (a year), got {seconds}",
        TIMEOUT_SECONDS_RANGE.start(),
        TIMEOUT_SECONDS_RANGE.end()
    ))
}

impl JobSpec {
    /// Checks every field; the message names the first field that is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_logged()?;
        if self.pull.is_some() && self.image.is_none() {
            return Err("pull says when an image is pulled: set image too".into());
        }
        crate::gpus::check_gpus(self.gpus, self.image.is_some())?;
        if let Some(seconds) = self.timeout_seconds {
            check_seconds("timeout_seconds", seconds)?;
        }
        check_seconds("queue_timeout_seconds", self.queue_timeout_seconds)
    }

    /// The rules every build applies to a spec in the log (see the module's docs).
    pub fn validate_logged(&self) -> Result<(), String> {
        self.validate_command()?;
        if let Some(image) = &self.image {
            check_name("image", image)?;
        }
        if let Some(digest) = &self.image_digest {
            check_digest(digest)?;
            if self.image.is_none() {
                return Err("image_digest pins an image: give the image too".into());
            }
        }
        if let Some(template) = &self.template_id {
            check_name("template_id", template)?;
        }
        Labels::try_from(self.required_labels.clone())
            .map_err(|err| format!("required_labels: {err}"))?;
        self.target()?;
        self.validate_env()?;
        self.validate_limits()?;
        if self.timeout_seconds == Some(0) {
            return Err("timeout_seconds must be at least 1 (leave it out for no limit)".into());
        }
        if self.queue_timeout_seconds == 0 {
            return Err("queue_timeout_seconds must be at least 1".into());
        }
        if !MAX_ATTEMPTS_RANGE.contains(&self.max_attempts) {
            return Err(format!(
                "max_attempts must be between {} and {}, got {}",
                MAX_ATTEMPTS_RANGE.start(),
                MAX_ATTEMPTS_RANGE.end(),
                self.max_attempts
            ));
        }
        if let Some(key) = &self.idempotency_key {
            check_name("idempotency_key", key)?;
        }
        check_org(&self.org)
    }

    fn validate_command(&self) -> Result<(), String> {
        if self.kind == crate::JobKind::Session {
            if self.image.is_none() {
                return Err("a session runs in a container: give an image".into());
            }
            if self.command.is_empty() {
                return Ok(()); // the image's own command
            }
        }
        let Some(program) = self.command.first() else {
            return Err("command must not be empty: give the program and its arguments".into());
        };
        if program.trim().is_empty() {
            return Err("command[0], the program name, must not be empty".into());
        }
        if self.command.len() > MAX_COMMAND_ARGS {
            return Err(format!(
                "command has {} arguments, at most {MAX_COMMAND_ARGS} are allowed",
                self.command.len()
            ));
        }
        let bytes: usize = self.command.iter().map(String::len).sum();
        if bytes > MAX_COMMAND_BYTES {
            return Err(format!(
                "command is {bytes} bytes long, at most {MAX_COMMAND_BYTES} are allowed"
            ));
        }
        if let Some(i) = self.command.iter().position(|arg| arg.contains('\0')) {
            return Err(format!("command[{i}] contains a NUL byte"));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), String> {
        if let Some(cpus) = self.cpus
            && !CPUS_RANGE.contains(&cpus)
        {
            return Err(format!(
                "cpus must be between {} and {} cores, got {cpus}",
                CPUS_RANGE.start(),
                CPUS_RANGE.end()
            ));
        }
        if let Some(mb) = self.memory_mb
            && !MEMORY_MB_RANGE.contains(&mb)
        {
            return Err(format!(
                "memory_mb must be between {} and {}, got {mb}",
                MEMORY_MB_RANGE.start(),
                MEMORY_MB_RANGE.end()
            ));
        }
        if self.image.is_none() && (self.cpus.is_some() || self.memory_mb.is_some()) {
            return Err(
                "cpus and memory_mb limit containers: set image too (a process job runs without limits)"
                    .into(),
            );
        }
        if let Some(user) = &self.user {
            check_user("user", user)?;
            if self.image.is_none() {
                return Err("user is a container's: set image too (a process job runs as the machine's process_user)".into());
            }
        }
        Ok(())
    }

    /// `env` and `secret_env` (sealed, as the log holds it) together.
    fn validate_env(&self) -> Result<(), String> {
        let count = self.env.len() + self.secret_env.len();
        if count > MAX_ENV_VARS {
            return Err(format!(
                "env and secret_env have {count} variables, at most {MAX_ENV_VARS} are allowed"
            ));
        }
        for (name, value) in &self.env {
            check_env_value("env", name, value)?;
        }
        for (name, sealed) in &self.secret_env {
            check_env_name("secret_env", name)?;
            if self.env.contains_key(name) {
                return Err(format!("{name} is in both env and secret_env"));
            }
            let sealed_ok =
                sealed.starts_with(SEALED_PREFIX) && sealed.len() <= MAX_SEALED_VALUE_BYTES;
            if !sealed_ok {
                return Err(format!("secret_env value of {name} is not sealed"));
            }
        }
        Ok(())
    }
}

fn check_env_name(field: &str, name: &str) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_ENV_NAME_LEN
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if name_ok {
        Ok(())
    } else {
        Err(format!(
            "{field} name {name:?} must be 1 to {MAX_ENV_NAME_LEN} characters of A-Z, a-z, 0-9 or '_', not starting with a digit"
        ))
    }
}

/// An environment variable as given in `field` (`env`, or `secret_env` before it is sealed).
pub fn check_env_value(field: &str, name: &str, value: &str) -> Result<(), String> {
    check_env_name(field, name)?;
    if value.len() > MAX_ENV_VALUE_BYTES {
        return Err(format!(
            "{field} value of {name} is {} bytes long, at most {MAX_ENV_VALUE_BYTES} are allowed",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!("{field} value of {name} contains a NUL byte"));
    }
    Ok(())
}

/// An identifier-like field: present means 1 to [`MAX_NAME_LEN`] printable, spaceless bytes.
/// An image id: `sha256:` and 64 hex digits.
pub fn check_digest(digest: &str) -> Result<(), String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "digest {digest:?} must be an image id: sha256: and 64 hex digits"
        ));
    }
    Ok(())
}

fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty()
        || value.len() > MAX_NAME_LEN
        || !value.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "{field} {value:?} must be 1 to {MAX_NAME_LEN} printable characters without spaces (leave it out for none)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::new(["echo", "hi"])
    }

    fn assert_invalid(spec: JobSpec, needle: &str) {
        match spec.validate() {
            Ok(()) => panic!("accepted a spec that should fail with {needle:?}: {spec:?}"),
            Err(message) => assert!(message.contains(needle), "{message:?} lacks {needle:?}"),
        }
    }

    #[test]
    fn limits_are_for_containers_and_in_range() {
        let mut limited = spec();
        limited.image = Some("busybox:local".into());
        limited.cpus = Some(1.5);
        limited.memory_mb = Some(512);
        assert_eq!(limited.validate(), Ok(()));
        let mut process = limited.clone();
        process.image = None;
        assert_invalid(process, "set image too");
        let mut zero = limited.clone();
        zero.cpus = Some(0.0);
        assert_invalid(zero, "cpus must be between");
        let mut nan = limited.clone();
        nan.cpus = Some(f64::NAN);
        assert_invalid(nan, "cpus must be between");
        let mut tiny = limited;
        tiny.memory_mb = Some(1);
        assert_invalid(tiny, "memory_mb must be between");
    }

    #[test]
    fn a_full_spec_is_valid() {
        let json = r#"{
            "command": ["python3", "train.py"], "image": "python:3.12", "template_id": "t-1",
            "required_labels": {"gpu": "true", "zone": "attic"}, "agent_id": "00000000000000ab",
            "priority": 5, "env": {"EPOCHS": "3"}, "timeout_seconds": 60,
            "queue_timeout_seconds": 10, "max_attempts": 10, "idempotency_key": "run-7",
            "org": "lab", "pull": "always"
        }"#;
        let spec: JobSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(spec.required_labels["zone"], "attic");
        assert_eq!(spec.pull, Some(crate::PullPolicy::Always));
    }

    #[test]
    fn gpus_are_for_containers_one_to_sixteen() {
        let mut process = spec();
        process.gpus = Some(1);
        assert_invalid(process, "gpus are handed to a container: set image too");
        let mut container = spec();
        container.image = Some("trainer:local".into());
        container.gpus = Some(2);
        assert_eq!(container.validate(), Ok(()));
        container.gpus = Some(0);
        assert_invalid(container.clone(), "gpus must be between 1 and 16, got 0");
        container.gpus = Some(17);
        assert_invalid(container, "gpus must be between 1 and 16, got 17");
        let template = crate::templates::TemplateSpec {
            image: "trainer:local".into(),
            gpus: Some(99),
            ..Default::default()
        };
        assert!(
            template
                .validate()
                .unwrap_err()
                .contains("gpus must be between")
        );
    }

    #[test]
    fn a_pull_policy_is_for_containers_and_spelled_in_lowercase() {
        let mut process = spec();
        process.pull = Some(crate::PullPolicy::Never);
        assert_invalid(process, "pull says when an image is pulled: set image too");
        let unknown = r#"{"command": ["true"], "image": "busybox", "pull": "sometimes"}"#;
        assert!(serde_json::from_str::<JobSpec>(unknown).is_err());
        for (text, policy) in ["missing", "always", "never"].iter().zip([
            crate::PullPolicy::Missing,
            crate::PullPolicy::Always,
            crate::PullPolicy::Never,
        ]) {
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(text.parse(), Ok(policy));
        }
        assert!("Always".parse::<crate::PullPolicy>().is_err());
    }

    #[test]
    fn timeouts_hold_to_a_year_at_the_api_but_not_in_the_log() {
        let year = *TIMEOUT_SECONDS_RANGE.end();
        for seconds in [0, year + 1, u64::MAX] {
            let mut s = spec();
            s.image = Some("busybox".into());
            s.timeout_seconds = Some(seconds);
            if seconds > 0 {
                assert_invalid(s.clone(), "timeout_seconds must be between 1 and 31622400");
                assert_eq!(s.validate_logged(), Ok(()), "an older build took it");
            }
            let mut q = spec();
            q.queue_timeout_seconds = seconds;
            assert_invalid(q, "queue_timeout_seconds must be");
        }
        let mut edge = spec();
        edge.timeout_seconds = Some(year);
        edge.queue_timeout_seconds = year;
        assert_eq!(edge.validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |f: fn(&mut JobSpec)| {
            let mut s = spec();
            f(&mut s);
            s
        };
        assert_invalid(
            JobSpec::new(Vec::<String>::new()),
            "command must not be empty",
        );
        assert_invalid(JobSpec::new(["", "x"]), "program name");
        assert_invalid(JobSpec::new(["a\0b"]), "command[0] contains a NUL");
        assert_invalid(JobSpec::new(vec!["x"; 300]), "300 arguments");
        assert_invalid(JobSpec::new(["x".repeat(70_000)]), "70000 bytes");
        assert_invalid(with(|s| s.image = Some(String::new())), "image");
        assert_invalid(with(|s| s.template_id = Some("a b".into())), "template_id");
        assert_invalid(
            with(|s| {
                s.required_labels.insert("GPU".into(), "1".into());
            }),
            "required_labels: label key \"GPU\"",
        );
        assert_invalid(
            with(|s| {
                s.required_labels.insert("gpu".into(), "a b".into());
            }),
            "required_labels: label value",
        );
        assert_invalid(
            with(|s| s.agent_id = Some("nope".into())),
            "agent_id \"nope\"",
        );
        assert_invalid(with(|s| s.timeout_seconds = Some(0)), "timeout_seconds");
        assert_invalid(
            with(|s| s.queue_timeout_seconds = 0),
            "queue_timeout_seconds",
        );
        assert_invalid(with(|s| s.max_attempts = 0), "between 1 and 10, got 0");
        assert_invalid(with(|s| s.max_attempts = 11), "got 11");
        assert_invalid(
            with(|s| s.idempotency_key = Some(String::new())),
            "idempotency_key",
        );
        assert_invalid(with(|s| s.org = "Big Org".into()), "org \"Big Org\"");
        assert_invalid(
            with(|s| {
                s.env.insert("1X".into(), "v".into());
            }),
            "env name \"1X\"",
        );
        assert_invalid(
            with(|s| {
                s.env
                    .insert("BIG".into(), "v".repeat(MAX_ENV_VALUE_BYTES + 1));
            }),
            "env value of BIG",
        );
        assert_invalid(
            with(|s| {
                s.env = (0..=MAX_ENV_VARS)
                    .map(|i| (format!("V{i}"), "x".into()))
                    .collect();
            }),
            "129 variables",
        );
    }

    #[test]
    fn limits_themselves_are_allowed() {
        let mut s = JobSpec::new(vec!["x"; MAX_COMMAND_ARGS]);
        s.env = (0..MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), "x".into()))
            .collect();
        s.max_attempts = 1;
        s.agent_id = Some(crate::job::ALL_ONLINE.into());
        assert_eq!(s.validate(), Ok(()));
    }
}
