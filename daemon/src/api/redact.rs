//! Jobs and templates leave the API here, as their views (`JobView`, `TemplateView`).
//! Environment values are for the keys that run work: a `read` key is shown each
//! variable's name, never its value (tokens and passwords travel in `env`). Secret ones
//! (`secret_env`, sealed in the log) are shown to no one: the views never carry them.

use std::collections::BTreeMap;

use shoal_protocol::keys::Scope;
use shoal_protocol::templates::{Template, TemplateView};
use shoal_protocol::{JobRecord, JobView};

use crate::keys::Caller;

/// What a `read` key sees in place of an environment value.
pub const HIDDEN: &str = "(hidden: needs an operate key)";

fn hide(caller: &Caller, env: &mut BTreeMap<String, String>) {
    if caller.scope < Scope::Operate {
        env.values_mut()
            .for_each(|value| *value = HIDDEN.to_string());
    }
}

/// `job` as `caller` may see it.
pub fn job(caller: &Caller, job: JobRecord) -> JobView {
    let mut view = JobView::from(job);
    hide(caller, &mut view.spec.env);
    view
}

/// `template` as `caller` may see it.
pub fn template(caller: &Caller, template: &Template) -> TemplateView {
    let mut view = TemplateView::from(template);
    for version in &mut view.versions {
        hide(caller, &mut version.spec.env);
    }
    view
}
