//! The costs page: spend by day over the last 30 days (an SVG bar chart the server draws),
//! by machine and by session over the same days, and each org's budget, all from
//! `GET /v1/costs` and `GET /v1/budgets` as the key may see them.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use shoal_protocol::costs::{CostGroup, CostRow, CostSheet, day_name, day_of, day_start_ms};
use shoal_protocol::params::CostParams;

use super::gate::Session;
use super::pages::{Chrome, html};
use crate::api::{ApiQuery, costs};
use crate::node::{Node, now_ms};

/// Days the chart covers.
const DAYS: u32 = 30;
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;

/// One day's bar.
pub struct DayBar {
    pub day: String,
    pub usd: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// One row of a table.
pub struct CostLine {
    pub key: String,
    pub usd: String,
    pub minutes: String,
}

impl CostLine {
    fn of(row: &CostRow) -> CostLine {
        CostLine {
            key: row.key.clone(),
            usd: format!("${:.2}", row.usd),
            minutes: format!("{:.1}", row.runner_minutes),
        }
    }
}

/// One org's budget.
pub struct BudgetLine {
    pub org: String,
    pub limit: String,
    pub today: String,
    pub on_exceed: String,
}

/// The bars of `days` (oldest first) scaled to the largest day (at least one cent).
pub fn bars(days: &[(String, f64)]) -> Vec<DayBar> {
    let top = days.iter().map(|(_, usd)| *usd).fold(0.01, f64::max);
    let slot = WIDTH / days.len().max(1) as f64;
    days.iter()
        .enumerate()
        .map(|(i, (day, usd))| {
            let height = (usd / top).clamp(0.0, 1.0) * HEIGHT;
            DayBar {
                day: day.clone(),
                usd: format!("${usd:.2}"),
                x: i as f64 * slot + 1.0,
                y: HEIGHT - height,
                width: (slot - 2.0).max(1.0),
                height,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "costs.html")]
struct CostsPage {
    chrome: Chrome,
    bars: Vec<DayBar>,
    width: f64,
    height: f64,
    total: String,
    machines: Vec<CostLine>,
    sessions: Vec<CostLine>,
    budgets: Vec<BudgetLine>,
    error: Option<String>,
}

/// `GET /costs`.
pub async fn page(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
) -> Response {
    let now = now_ms();
    let today = day_of(now);
    let first = today.saturating_sub(DAYS - 1);
    let sheet = |by: CostGroup| {
        let params = CostParams {
            by: Some(by),
            since_ms: Some(day_start_ms(first)),
            ..Default::default()
        };
        costs::list(
            State(node.clone()),
            Extension(session.caller.clone()),
            ApiQuery(params),
        )
    };
    let mut error = None;
    let mut read = |answer: Result<Json<CostSheet>, crate::api::Failure>| match answer {
        Ok(Json(sheet)) => Some(sheet),
        Err(failure) => {
            error = Some(failure.0.message);
            None
        }
    };
    let by_day = read(sheet(CostGroup::Day).await);
    let by_machine = read(sheet(CostGroup::Machine).await);
    let by_session = read(sheet(CostGroup::Session).await);
    let days: Vec<(String, f64)> = (first..=today)
        .map(|day| {
            let name = day_name(day);
            let usd = by_day
                .as_ref()
                .and_then(|s| s.rows.iter().find(|r| r.key == name))
                .map_or(0.0, |r| r.usd);
            (name, usd)
        })
        .collect();
    let budgets = match costs::budgets(State(node.clone()), Extension(session.caller.clone())).await
    {
        Ok(Json(list)) => list
            .budgets
            .iter()
            .map(|b| BudgetLine {
                org: b.org.clone(),
                limit: match (b.daily_usd, b.daily_runner_minutes) {
                    (Some(usd), Some(min)) => {
                        format!("${usd:.2} and {min:.0} runner minutes a day")
                    }
                    (Some(usd), None) => format!("${usd:.2} a day"),
                    (None, Some(min)) => format!("{min:.0} runner minutes a day"),
                    (None, None) => "none".to_string(),
                },
                today: format!(
                    "${:.2}, {:.1} runner minutes",
                    b.today.usd, b.today.runner_minutes
                ),
                on_exceed: format!("{:?}", b.on_exceed).to_lowercase(),
            })
            .collect(),
        Err(failure) => {
            error = Some(failure.0.message);
            Vec::new()
        }
    };
    html(CostsPage {
        chrome: Chrome::of(&session),
        bars: bars(&days),
        width: WIDTH,
        height: HEIGHT,
        total: by_day
            .as_ref()
            .map_or("n/a".into(), |s| format!("${:.2}", s.total.usd)),
        machines: by_machine
            .iter()
            .flat_map(|s| &s.rows)
            .map(CostLine::of)
            .collect(),
        sessions: by_session
            .iter()
            .flat_map(|s| &s.rows)
            .map(CostLine::of)
            .collect(),
        budgets,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_share_the_width_and_scale_to_the_top_day() {
        let days = vec![
            ("a".to_string(), 0.0),
            ("b".to_string(), 2.0),
            ("c".to_string(), 1.0),
        ];
        let bars = bars(&days);
        assert_eq!(bars.len(), 3);
        assert_eq!(
            (bars[0].height, bars[1].height, bars[2].height),
            (0.0, HEIGHT, HEIGHT / 2.0)
        );
        assert_eq!(bars[1].y, 0.0);
        assert_eq!(bars[2].x, 401.0);
        assert!(bars.iter().all(|b| (b.width - 198.0).abs() < 1e-9));
    }
}
