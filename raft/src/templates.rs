//! Session templates in the state machine: each put is a new version, a rollback points
//! sessions at an earlier one. A template belongs to an org (see
//! [`shoal_protocol::levels::TEMPLATE_ORGS_LEVEL`]); one put without an org is fleet-wide,
//! as an older build made them, until the fleet's level moves it to its maker's org.

use imbl::OrdMap;
use shoal_protocol::job::DEFAULT_ORG;
use shoal_protocol::templates::{MAX_VERSIONS, Template, TemplateSpec, TemplateVersion};
use shoal_protocol::{ErrorCode, FleetState, Response, UnixMillis};

/// The templates `org` owns (`None`: the fleet-wide ones), made empty if there are none.
fn owned_by<'a>(state: &'a mut FleetState, org: Option<&str>) -> &'a mut OrdMap<String, Template> {
    match org {
        Some(org) => state.templates.entry(org.to_string()).or_default(),
        None => &mut state.unowned_templates,
    }
}

pub(crate) fn put(
    state: &mut FleetState,
    org: Option<String>,
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
    let template = owned_by(state, org.as_deref())
        .entry(name.clone())
        .or_insert(Template {
            org: org.unwrap_or_default(),
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

pub(crate) fn rollback(
    state: &mut FleetState,
    org: Option<&str>,
    name: &str,
    version: u32,
) -> Response {
    let template = match org {
        Some(org) => state.templates.get_mut(org).and_then(|t| t.get_mut(name)),
        None => state.unowned_templates.get_mut(name),
    };
    let Some(template) = template else {
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

/// Moves every fleet-wide template to the org of the key that made its oldest version kept
/// (the default org when that key is gone). One whose name its org already uses stays
/// fleet-wide (only a put with an org, which waits for this level, could have taken it).
pub(crate) fn adopt_unowned(state: &mut FleetState) {
    let unowned = std::mem::take(&mut state.unowned_templates);
    for (name, mut template) in unowned {
        let maker = template.versions.first().map(|v| v.created_by.as_str());
        let org = maker
            .and_then(|key| state.api_keys.get(key))
            .map_or(DEFAULT_ORG.to_string(), |key| key.org.clone());
        let owned = state.templates.entry(org.clone()).or_default();
        if owned.contains_key(&name) {
            state.unowned_templates.insert(name, template);
        } else {
            template.org = org;
            owned.insert(name, template);
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::keys::{ApiKeyRecord, Scope};

    use super::*;

    fn spec(image: &str) -> TemplateSpec {
        TemplateSpec {
            image: image.into(),
            ..TemplateSpec::default()
        }
    }

    fn org() -> Option<String> {
        Some("lab".into())
    }

    fn current(state: &FleetState) -> String {
        let template = state.template("lab", "default").unwrap();
        template.current().unwrap().spec.image.clone()
    }

    #[test]
    fn puts_make_versions_and_a_rollback_picks_an_earlier_one() {
        let mut state = FleetState::default();
        for image in ["busybox:1", "busybox:2"] {
            put(
                &mut state,
                org(),
                "default".into(),
                spec(image),
                "k".into(),
                5,
            );
        }
        assert_eq!(current(&state), "busybox:2");
        assert!(matches!(
            rollback(&mut state, Some("lab"), "default", 1),
            Response::Template(_)
        ));
        assert_eq!(current(&state), "busybox:1");
        assert_eq!(state.templates["lab"]["default"].versions.len(), 2);
        // A put after a rollback is the next version, not a rewrite of history.
        put(
            &mut state,
            org(),
            "default".into(),
            spec("busybox:3"),
            "k".into(),
            6,
        );
        assert_eq!(state.templates["lab"]["default"].current, 3);
        let missing = rollback(&mut state, Some("lab"), "default", 9);
        assert!(matches!(
            missing,
            Response::Rejected {
                code: ErrorCode::NotFound,
                ..
            }
        ));
        let bad = put(&mut state, org(), "default".into(), spec(""), "k".into(), 7);
        assert!(matches!(
            bad,
            Response::Rejected {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        assert_eq!(state.templates["lab"]["default"].current, 3);
    }

    #[test]
    fn an_org_neither_sees_nor_changes_another_orgs_template() {
        let mut state = FleetState::default();
        put(
            &mut state,
            org(),
            "ci".into(),
            spec("busybox:1"),
            "k".into(),
            5,
        );
        assert!(state.template("other", "ci").is_none());
        assert_eq!(state.templates_of("other").count(), 0);
        let refused = rollback(&mut state, Some("other"), "ci", 1);
        assert!(matches!(
            refused,
            Response::Rejected {
                code: ErrorCode::NotFound,
                ..
            }
        ));
        // Another org's put of the same name makes its own template.
        put(
            &mut state,
            Some("other".into()),
            "ci".into(),
            spec("busybox:9"),
            "k2".into(),
            6,
        );
        assert_eq!(current_of(&state, "lab", "ci"), "busybox:1");
        assert_eq!(current_of(&state, "other", "ci"), "busybox:9");
    }

    fn current_of(state: &FleetState, org: &str, name: &str) -> String {
        let template = state.template(org, name).unwrap();
        template.current().unwrap().spec.image.clone()
    }

    #[test]
    fn fleet_wide_templates_move_to_their_makers_org() {
        let mut state = FleetState::default();
        state.api_keys.insert(
            "k1".into(),
            ApiKeyRecord {
                id: "k1".into(),
                name: "ci".into(),
                org: "lab".into(),
                scope: Scope::Operate,
                secret_sha256: String::new(),
                created_at_ms: 1,
                created_by: "k0".into(),
                revoked_at_ms: None,
            },
        );
        put(
            &mut state,
            None,
            "ci".into(),
            spec("busybox:1"),
            "k1".into(),
            5,
        );
        put(
            &mut state,
            None,
            "old".into(),
            spec("busybox:2"),
            "gone".into(),
            5,
        );
        // Before the move, every org sees them.
        assert_eq!(current_of(&state, "anyone", "ci"), "busybox:1");
        adopt_unowned(&mut state);
        assert!(state.unowned_templates.is_empty());
        assert_eq!(current_of(&state, "lab", "ci"), "busybox:1");
        assert_eq!(state.templates["lab"]["ci"].org, "lab");
        assert!(state.template("anyone", "ci").is_none());
        // A template whose maker is gone goes to the default org.
        assert_eq!(current_of(&state, DEFAULT_ORG, "old"), "busybox:2");
    }
}
