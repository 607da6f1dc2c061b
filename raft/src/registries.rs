//! Registry credentials in the fleet state: set, replaced, removed; passwords stay sealed.

use shoal_protocol::registries::{MAX_REGISTRIES, RegistryCredential};
use shoal_protocol::{ErrorCode, FleetState, Response};

/// Sets `registry`'s credential (`Some`) or removes it. A malformed credential, one that
/// names another registry, or a new registry past [`MAX_REGISTRIES`] changes nothing.
pub fn set(
    state: &mut FleetState,
    registry: String,
    credential: Option<Box<RegistryCredential>>,
) -> Response {
    let rejected = |code, message| Response::Rejected { code, message };
    let Some(credential) = credential else {
        return match state.registry_credentials.remove(&registry) {
            Some(_) => Response::Done,
            None => rejected(
                ErrorCode::NotFound,
                format!("no credentials for registry {registry}"),
            ),
        };
    };
    if let Err(why) = credential.validate() {
        return rejected(ErrorCode::BadRequest, why);
    }
    if credential.registry != registry {
        return rejected(
            ErrorCode::BadRequest,
            format!("a credential for {} set as {registry}", credential.registry),
        );
    }
    let known = state.registry_credentials.contains_key(&registry);
    if !known && state.registry_credentials.len() >= MAX_REGISTRIES {
        return rejected(
            ErrorCode::Conflict,
            format!(
                "the fleet holds credentials for {MAX_REGISTRIES} registries already: log out of one first"
            ),
        );
    }
    state.registry_credentials.insert(registry, *credential);
    Response::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(registry: &str) -> Box<RegistryCredential> {
        Box::new(RegistryCredential {
            registry: registry.into(),
            username: "ci".into(),
            sealed_password: "sealed:v1:AAAA".into(),
            updated_at_ms: 1,
            updated_by: "k1".into(),
        })
    }

    #[test]
    fn credentials_are_set_replaced_and_removed() {
        let mut state = FleetState::default();
        assert_eq!(
            set(&mut state, "ghcr.io".into(), Some(credential("ghcr.io"))),
            Response::Done
        );
        assert_eq!(
            set(&mut state, "ghcr.io".into(), Some(credential("ghcr.io"))),
            Response::Done
        );
        assert_eq!(state.registry_credentials.len(), 1);
        assert_eq!(set(&mut state, "ghcr.io".into(), None), Response::Done);
        assert!(state.registry_credentials.is_empty());
        let again = set(&mut state, "ghcr.io".into(), None);
        assert!(matches!(
            again,
            Response::Rejected {
                code: ErrorCode::NotFound,
                ..
            }
        ));
    }

    #[test]
    fn bad_credentials_and_one_too_many_change_nothing() {
        let mut state = FleetState::default();
        let mut clear = credential("ghcr.io");
        clear.sealed_password = "hunter2".into();
        assert!(matches!(
            set(&mut state, "ghcr.io".into(), Some(clear)),
            Response::Rejected { .. }
        ));
        let elsewhere = set(&mut state, "ghcr.io".into(), Some(credential("quay.io")));
        assert!(matches!(elsewhere, Response::Rejected { .. }));
        assert!(state.registry_credentials.is_empty());

        for n in 0..MAX_REGISTRIES {
            let name = format!("r{n}.lan");
            assert_eq!(
                set(&mut state, name.clone(), Some(credential(&name))),
                Response::Done
            );
        }
        let full = set(
            &mut state,
            "one-more.lan".into(),
            Some(credential("one-more.lan")),
        );
        assert!(matches!(
            full,
            Response::Rejected {
                code: ErrorCode::Conflict,
                ..
            }
        ));
        // Replacing a known one still works.
        assert_eq!(
            set(&mut state, "r0.lan".into(), Some(credential("r0.lan"))),
            Response::Done
        );
        assert_eq!(state.registry_credentials.len(), MAX_REGISTRIES);
    }
}
