//! The web dashboard in a real browser (headless chromium over WebDriver): one three-node
//! fleet and one browser walk through what a user does, saving a screenshot of each page
//! (`SHOAL_SCREENSHOTS=dir` keeps them; otherwise they go to a temporary directory).

mod access;
mod browser;
mod fleet_view;
mod work_pages;

use std::path::PathBuf;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, TEST_KEY, init_logs};

use crate::http::{get, post, put_labels};
use browser::Browser;

/// Where the screenshots go, and the temporary directory to keep alive meanwhile.
fn screenshot_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SHOAL_SCREENSHOTS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let temp = tempfile::tempdir().unwrap();
            (temp.path().to_path_buf(), Some(temp))
        }
    }
}

/// The machines `/v1/machines?{query}` lists, by id, in its order.
async fn api_order(api: &str, query: &str) -> Vec<String> {
    let list: Value = get(format!("{api}/v1/machines?{query}")).await;
    list["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_walkthrough_in_a_real_browser() {
    init_logs();
    let started = std::time::Instant::now();
    let (shots, _keep) = screenshot_dir();
    let mut cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(0);
    for (i, tier) in [(0, "tier=web"), (1, "tier=web"), (2, "tier=db")] {
        let (status, body) = put_labels(&api, cluster.node(i).id, &[tier]).await;
        assert_eq!(status, 200, "{body}");
    }
    let browser = Browser::start(&shots).await;

    browser.log_in(&api, TEST_KEY).await;
    fleet_view::summary_and_green_cards(&browser).await;
    // A cold load (the assets fetched, not cached) of a three-machine fleet.
    let (bytes, paint_ms) = access::first_load_figures(&browser).await;
    eprintln!("dashboard: first load {bytes} bytes over the wire, first paint {paint_ms:.0} ms");
    assert!(bytes < 150 * 1024, "the first load moved {bytes} bytes");
    let delays = fleet_view::heartbeat_to_card_delays(&browser).await;
    assert!(
        delays.len() >= 4,
        "cards updated {} times in 2 s",
        delays.len()
    );
    let median = delays[delays.len() / 2];
    eprintln!(
        "dashboard: heartbeat to card: median {median} ms, max {} ms, {} updates in 2 s",
        delays[delays.len() - 1],
        delays.len()
    );
    assert!(
        median < 1000,
        "a heartbeat reached its card after {median} ms (median)"
    );
    let cookie = browser.session_cookie().await;
    access::headers_assets_and_any_node(&api, &cluster.api(1), &cookie).await;
    fleet_view::sort_and_filter_match_the_api(&browser, &api).await;
    fleet_view::resources_chart_has_points(&browser, &api, cluster.node(1).id).await;
    let ids = [cluster.node(1).id, cluster.node(2).id];
    fleet_view::drain_and_undrain_from_the_page(&browser, &api, ids).await;
    fleet_view::rows_layout(&browser, &api).await;
    fleet_view::dark_mode_and_keyboard(&browser, &api).await;
    fleet_view::lost_connection_resumes(&browser, &api, cluster.node(0).id).await;
    work_pages::jobs_list_updates_live(&browser, &api).await;
    work_pages::job_output_arrives_live(&browser, &api).await;
    work_pages::cancel_from_the_job_page(&browser, &api).await;
    work_pages::costs_page(&browser, &api).await;
    work_pages::connect_shows_the_join_command(&browser, &api).await;
    fleet_view::kill_switch_from_the_page(&browser, &api).await;

    // A read key: made with the admin key, used in the same browser.
    let (status, made) = post(
        format!("{api}/v1/keys"),
        json!({"scope": "read", "name": "dashboard-reader"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let read_key = made["key"].as_str().unwrap().to_string();
    access::read_key_sees_no_actions_and_forgery_is_refused(&browser, &api, &read_key).await;
    let read_key_id = made["record"]["id"].as_str().unwrap();
    access::revocation_ends_the_session(&browser, &api, read_key_id).await;
    browser.log_in(&api, TEST_KEY).await;

    // A node stops: its card greys and the counts change with no reload.
    let leader = cluster.leader().expect("a leader");
    let stopped = (1..3).find(|&i| i != leader).unwrap();
    let stopped_id = cluster.node(stopped).id;
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    browser.js("window.shoalNotReloaded = true;", vec![]).await;
    let stop_started = std::time::Instant::now();
    cluster.stop(stopped).await;
    fleet_view::card_greys_without_reload(&browser, &stopped_id.to_string()).await;
    let took = stop_started.elapsed();
    assert!(took.as_secs_f64() < 5.0, "the card greyed after {took:?}");
    eprintln!("dashboard: a stopped node's card greyed {took:?} after the stop");

    fleet_view::phone_has_no_horizontal_scroll(&browser, &api).await;
    browser.close().await;
    eprintln!(
        "dashboard walkthrough took {:?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );
    cluster.shutdown().await;
}
