//! Environment values are for the keys that run work: a `read` key is shown each
//! variable's name, never its value (tokens and passwords travel in `env`). Secret ones
//! (`secret_env`, sealed in the log) are shown to no one.

use std::collections::BTreeMap;

use shoal_protocol::JobRecord;
use shoal_protocol::job_spec::SECRET_SHOWN;
use shoal_protocol::keys::Scope;
use shoal_protocol::templates::Template;

use crate::keys::Caller;

/// What a `read` key sees in place of an environment value.
pub const HIDDEN: &str = "(hidden: needs an operate key)";

fn hide(caller: &Caller, env: &mut BTreeMap<String, String>) {
    if caller.scope < Scope::Operate {
        env.values_mut()
            .for_each(|value| *value = HIDDEN.to_string());
    }
}

fn hide_secrets(secret_env: &mut BTreeMap<String, String>) {
    secret_env
        .values_mut()
        .for_each(|value| *value = SECRET_SHOWN.to_string());
}

/// `job` as `caller` may see it.
pub fn job(caller: &Caller, mut job: JobRecord) -> JobRecord {
    hide(caller, &mut job.spec.env);
    hide_secrets(&mut job.spec.secret_env);
    job
}

/// `template` as `caller` may see it.
pub fn template(caller: &Caller, mut template: Template) -> Template {
    for version in &mut template.versions {
        hide(caller, &mut version.spec.env);
        hide_secrets(&mut version.spec.secret_env);
    }
    template
}
