//! Work in the browser: the jobs list, a job's live output, the costs page, the sessions
//! list and connecting a machine.

use serde_json::{Value, json};

use super::browser::Browser;
use crate::http::get;

pub async fn job_output_arrives_live(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/jobs")).await;
    browser
        .type_into("#run-command", "echo first-line; sleep 2; echo second-line")
        .await;
    browser.screenshot("jobs").await;
    browser.click("#run").await;
    browser
        .wait_js(
            "the job page",
            "return document.body.dataset.page === 'job';",
        )
        .await;
    // The first line shows while the job still runs: the output is followed, not read at
    // the end.
    let partial = browser
        .wait_js(
            "the first line alone",
            "const t = document.getElementById('output').textContent;
             return t.includes('first-line') ? t : null;",
        )
        .await;
    assert!(
        !partial.as_str().unwrap().contains("second-line"),
        "the first line came only with the second: {partial}"
    );
    browser.screenshot("job-running").await;
    browser
        .wait_js(
            "the whole output and the end",
            "return document.getElementById('output').textContent.includes('second-line')
                && document.getElementById('output-state').textContent.includes('completed');",
        )
        .await;
    browser
        .wait_js(
            "the attempt shown finished with exit 0",
            "const cells = [...document.querySelectorAll('#attempts tbody td')].map(td => td.textContent);
             return cells[2] === 'finished' && cells[3] === '0';",
        )
        .await;
    browser.screenshot("job-done").await;
}

/// The connect page makes a registration token and shows the join command with it.
pub async fn connect_shows_the_join_command(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/connect")).await;
    browser.type_into("#token-labels", "room=attic").await;
    browser.click("#make-token").await;
    let command = browser
        .wait_js(
            "the join command",
            "const c = document.getElementById('join-command'); return c.hidden ? null : c.textContent;",
        )
        .await;
    let command = command.as_str().unwrap();
    let words: Vec<&str> = command.split(' ').collect();
    assert_eq!(words[..3], ["shoald", "join", "--token"], "{command}");
    assert!(words[3].starts_with("shoaljoin_"), "{command}");
    assert_eq!(words[4], "--peer", "{command}");
    assert!(words[5].contains("127.0.0.1"), "{command}");
    let tokens: Value = get(format!("{api}/v1/tokens/registration")).await;
    let listed = tokens.to_string();
    assert!(
        listed.contains("attic"),
        "the token carries its labels: {listed}"
    );
    browser.screenshot("connect").await;
}

/// A job submitted elsewhere (the API) appears in an open jobs list without a reload.
pub async fn jobs_list_updates_live(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/jobs")).await;
    browser.wait_live().await;
    let (status, body) = crate::http::post(
        format!("{api}/v1/jobs"),
        json!({"command": ["sh", "-c", "echo from-the-api"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["job"]["id"].as_u64().unwrap();
    browser
        .wait_js(
            &format!("job #{id} listed live"),
            &format!(
                "return [...document.querySelectorAll('#jobs tbody a')].some(a => a.textContent === '#{id}');"
            ),
        )
        .await;
}

/// The costs page: thirty days of bars, and the tables.
pub async fn costs_page(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/costs")).await;
    let bars = browser
        .wait_js(
            "the cost chart",
            "return document.querySelectorAll('#cost-chart rect').length;",
        )
        .await;
    assert_eq!(bars, json!(30));
    for section in ["#by-machine", "#by-session", "#budgets"] {
        assert_eq!(browser.count(section).await, 1, "{section}");
    }
    browser.screenshot("costs").await;
    browser.goto(&format!("{api}/sessions")).await;
    assert_eq!(
        browser.count("#no-sessions").await,
        1,
        "no sessions in this fleet"
    );
}

/// A running job cancelled from its page: it ends cancelled, and the page says so.
pub async fn cancel_from_the_job_page(browser: &Browser, api: &str) {
    let (status, body) = crate::http::post(
        format!("{api}/v1/jobs"),
        json!({"command": ["sleep", "30"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["job"]["id"].as_u64().unwrap();
    browser.goto(&format!("{api}/jobs/{id}")).await;
    browser
        .wait_js(
            "the job running",
            "return document.getElementById('job-state').textContent === 'running';",
        )
        .await;
    browser.click("#cancel-job").await;
    browser.client.accept_alert().await.unwrap();
    browser
        .wait_js(
            "the job cancelled on its page",
            "return document.getElementById('job-state').textContent === 'cancelled'
                && document.getElementById('output-state').textContent.includes('cancelled');",
        )
        .await;
    let job: Value = get(format!("{api}/v1/jobs/{id}")).await;
    assert_eq!(job["state"], json!("cancelled"), "{job}");
}
