//! Session templates in the state machine: each put is a new version, a rollback points
//! sessions at an earlier one.

use shoal_protocol::templates::{MAX_VERSIONS, Template, TemplateSpec, TemplateVersion};
use shoal_protocol::{ErrorCode, FleetState, Response, UnixMillis};

pub(crate) fn put(
    state: &mut FleetState,
    name: String,
    spec: TemplateSpec,
    by: String,
    at_ms: UnixMillis,
) -> Response {
    if let Err(message) = spec.validate_logged() {
        return Response::Rejected {
            code: ErrorCode::BadRequest,
            message,
        };
    }
    let template = state.templates.entry(name.clone()).or_insert(Template {
        name,
        current: 0,
        versions: Vec::new(),
    });
    let version = template.versions.last().map_or(1, |v| v.version + 1);
    template.versions.push(TemplateVersion {
        version,
        spec,
        created_at_ms: at_ms,
        created_by: by,
    });
    if template.versions.len() > MAX_VERSIONS {
        template.versions.remove(0);
    }
    template.current = version;
    Response::Template(Box::new(template.clone()))
}

pub(crate) fn rollback(state: &mut FleetState, name: &str, version: u32) -> Response {
    let Some(template) = state.templates.get_mut(name) else {
        return Response::Rejected {
            code: ErrorCode::NotFound,
            message: format!("no template {name}"),
        };
    };
    if !template.versions.iter().any(|v| v.version == version) {
        let kept: Vec<String> = template
            .versions
            .iter()
            .map(|v| v.version.to_string())
            .collect();
        return Response::Rejected {
            code: ErrorCode::NotFound,
            message: format!(
                "template {name} has no version {version}: it keeps {}",
                kept.join(", ")
            ),
        };
    }
    template.current = version;
    Response::Template(Box::new(template.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str) -> TemplateSpec {
        TemplateSpec {
            image: image.into(),
            ..TemplateSpec::default()
        }
    }

    fn current(state: &FleetState) -> String {
        let template = &state.templates["default"];
        template.current().unwrap().spec.image.clone()
    }

    #[test]
    fn puts_make_versions_and_a_rollback_picks_an_earlier_one() {
        let mut state = FleetState::default();
        for image in ["busybox:1", "busybox:2"] {
            put(&mut state, "default".into(), spec(image), "k".into(), 5);
        }
        assert_eq!(current(&state), "busybox:2");
        assert!(matches!(
            rollback(&mut state, "default", 1),
            Response::Template(_)
        ));
        assert_eq!(current(&state), "busybox:1");
        assert_eq!(state.templates["default"].versions.len(), 2);
        // A put after a rollback is the next version, not a rewrite of history.
        put(
            &mut state,
            "default".into(),
            spec("busybox:3"),
            "k".into(),
            6,
        );
        assert_eq!(state.templates["default"].current, 3);
        let missing = rollback(&mut state, "default", 9);
        assert!(matches!(
            missing,
            Response::Rejected {
                code: ErrorCode::NotFound,
                ..
            }
        ));
        let bad = put(&mut state, "default".into(), spec(""), "k".into(), 7);
        assert!(matches!(
            bad,
            Response::Rejected {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        assert_eq!(state.templates["default"].current, 3);
    }
}
