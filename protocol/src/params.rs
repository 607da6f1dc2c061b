//! The query strings of the admin API's reads. The daemon parses them with these types
//! and the CLI builds them with the same ones; the OpenAPI document describes them from
//! here too.

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::{JobState, MachineId};

fn is_false(value: &bool) -> bool {
    !value
}

/// `?consistent=true` on a read: ask the leader for a linearizable read instead of
/// reading the local replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Read through the leader (linearizable) instead of this node's replica.
    #[serde(default, skip_serializing_if = "is_false")]
    pub consistent: bool,
}

/// Which end of the job list comes first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobOrder {
    #[default]
    Oldest,
    Newest,
}

/// `GET /v1/jobs`: filters and paging.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Only jobs in this state (any case).
    #[param(value_type = Option<JobState>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only jobs with an attempt on this machine.
    #[param(value_type = Option<MachineId>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The caller's own org (another org's jobs are not listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// `key=value` (or a bare `key`) the job requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `oldest` (the default) first, or `newest` first.
    #[serde(default, skip_serializing_if = "is_oldest")]
    #[param(inline)]
    pub order: JobOrder,
    /// Oldest first: only jobs with a larger id (the last id of the previous page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Newest first: only jobs with a smaller id (the last id of the previous page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Jobs per page, 1 to 1000 (100 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Read through the leader (linearizable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub consistent: bool,
}

fn is_oldest(order: &JobOrder) -> bool {
    *order == JobOrder::Oldest
}

/// `GET /v1/jobs/{id}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The attempt to read, from 1; the latest when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub attempt: Option<u32>,
    /// Only output from this byte on (the `total` of an earlier answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Upgrade to a WebSocket that sends each `LogChunk` as it comes, until the attempt ends.
    #[serde(default, skip_serializing_if = "is_false")]
    pub follow: bool,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events of entries after this log index. Without it, a plain read gives every
    /// event kept and a follow starts from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Keep the stream open (NDJSON, or a WebSocket when the request asks to upgrade) and
    /// send new events as they come.
    #[serde(default, skip_serializing_if = "is_false")]
    pub follow: bool,
    /// Only these topics, comma-separated: `job`, `machine`, `fleet`, `audit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// `GET /v1/machines/{id}/history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only samples taken after this time (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
}

/// `GET /v1/audit`: newest first, paged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries that concern this machine.
    #[param(value_type = Option<MachineId>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Only entries made with this API key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only entries older than this seq: pass the last seq of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Entries per page, 1 to 1000 (100 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /v1/costs`: spend over a range of UTC days, grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostParams {
    /// `day` (the default), `machine`, `job`, `session` or `org`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub by: Option<crate::costs::CostGroup>,
    /// From the UTC day of this time (Unix milliseconds); today when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// To the UTC day of this time (Unix milliseconds); now when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Only this org: a key sees its own org; an admin key sees every org unless it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionParams {
    /// Only sessions in this state.
    #[param(value_type = Option<crate::sessions::SessionState>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only sessions on this machine.
    #[param(value_type = Option<MachineId>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Sessions of this org: a key's own (the default); an admin key may name any org.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}
