//! The token a running attempt gets as `SHOAL_JOB_TOKEN`, for `POST /v1/costs`:
//! `shoaljob_<job>_<attempt>_<mac>`, the MAC an HMAC-SHA256 of the job and attempt under
//! the cluster secret. Any member can check it without asking the machine that runs the
//! attempt; the state machine then counts the report only while that attempt runs.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shoal_protocol::{ApiError, ErrorCode, JobId};

const PREFIX: &str = "shoaljob";

fn mac(secret: &str, job: JobId, attempt: u32) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes keys of any length");
    mac.update(format!("shoal job token {job} {attempt}").as_bytes());
    mac
}

/// The token of `attempt` of `job`.
pub fn issue(secret: &str, job: JobId, attempt: u32) -> String {
    let tag = hex::encode(mac(secret, job, attempt).finalize().into_bytes());
    format!("{PREFIX}_{job}_{attempt}_{tag}")
}

/// The job and attempt a token was issued for, or a 401 saying what is wrong with it.
pub fn check(secret: &str, token: &str) -> Result<(JobId, u32), ApiError> {
    let refused = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_string());
    let mut parts = token.split('_');
    let (Some(PREFIX), Some(job), Some(attempt), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(refused(
            "send the job's SHOAL_JOB_TOKEN (shoaljob_<job>_<attempt>_<mac>) as Authorization: Bearer",
        ));
    };
    let (Ok(job), Ok(attempt), Ok(tag)) = (job.parse(), attempt.parse(), hex::decode(tag)) else {
        return Err(refused("the job token is malformed"));
    };
    let job = JobId(job);
    mac(secret, job, attempt)
        .verify_slice(&tag)
        .map_err(|_| refused("the job token was not issued by this fleet"))?;
    Ok((job, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_attempt_and_only_this_fleet_accepts_it() {
        let token = issue("secret", JobId(42), 3);
        assert!(token.starts_with("shoaljob_42_3_"), "{token}");
        assert_eq!(check("secret", &token), Ok((JobId(42), 3)));
        let forged = token.replace("shoaljob_42_3_", "shoaljob_42_4_");
        for (secret, token) in [
            ("other", token.as_str()),
            ("secret", &forged),
            ("secret", "x"),
        ] {
            let err = check(secret, token).unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized, "{token}");
        }
    }
}
