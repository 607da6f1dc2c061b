//! The fleet view in the browser: logging in, the summary and the cards, sorting and
//! filtering, a machine's page, acting on selected machines, the kill switch, a node that
//! stops, and a phone-sized screen.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_protocol::MachineId;

use super::api_order;
use super::browser::Browser;
use crate::http::get;

pub async fn summary_and_green_cards(browser: &Browser) {
    let online = browser
        .wait_js(
            "3 ONLINE in the summary",
            "const n = document.querySelector('[data-count=online]').textContent.trim();
             return n === '3' ? n : null;",
        )
        .await;
    assert_eq!(online, json!("3"));
    let colours = browser
        .js(
            "return [...document.querySelectorAll('.card')].map(c => [c.className,
                getComputedStyle(c.querySelector('.dot')).backgroundColor]);",
            vec![],
        )
        .await;
    let colours = colours.as_array().unwrap();
    assert_eq!(colours.len(), 3, "{colours:?}");
    for card in colours {
        assert!(card[0].as_str().unwrap().contains("s-online"), "{card}");
        // The ONLINE green of app.css (light scheme: #1a9f4b).
        assert_eq!(card[1], json!("rgb(26, 159, 75)"), "{card}");
    }
    browser.wait_live().await;
    // The heartbeat ticks on the card.
    browser
        .wait_js(
            "a heartbeat shown as seconds ago",
            "return /\\d+ s ago/.test(document.querySelector('.card time').textContent);",
        )
        .await;
    browser.screenshot("fleet").await;
}

/// Sort by CPU and filter by label with the page's form: the URL keeps the choice, and the
/// cards are the API's answer to the same query, in its order. CPU figures move between two
/// reads, so the order is compared on a few fresh reads until one pair agrees.
pub async fn sort_and_filter_match_the_api(browser: &Browser, api: &str) {
    browser.type_into("#label", "tier=web").await;
    browser
        .js(
            "const s = document.getElementById('sort'); s.value = 'cpu';",
            vec![],
        )
        .await;
    browser.click("#apply").await;
    browser
        .wait_js(
            "the query in the URL",
            "return location.search.includes('sort=cpu') && location.search.includes('label=tier%3Dweb');",
        )
        .await;
    let query = "sort=cpu&label=tier%3Dweb";
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let before = api_order(api, query).await;
        let shown: Vec<String> = serde_json::from_value(
            browser
                .js(
                    "return [...document.querySelectorAll('.card')].map(c => c.dataset.id);",
                    vec![],
                )
                .await,
        )
        .unwrap();
        let after = api_order(api, query).await;
        let mut set = shown.clone();
        set.sort();
        let mut expected = before.clone();
        expected.sort();
        assert_eq!(set, expected, "the filtered set");
        assert_eq!(shown.len(), 2, "two machines carry tier=web: {shown:?}");
        if shown == before || shown == after {
            browser.screenshot("sorted-filtered").await;
            return;
        }
        last = (shown, before);
        browser.client.refresh().await.unwrap();
    }
    panic!("the page's CPU order never matched the API's: {last:?}");
}

pub async fn resources_chart_has_points(browser: &Browser, api: &str, machine: MachineId) {
    // The history has samples from the last minutes (sampled every 500 ms in tests).
    let history: Value = get(format!("{api}/v1/machines/{machine}/history")).await;
    assert!(
        history["samples"].as_array().unwrap().len() >= 2,
        "{history}"
    );
    // A policy that selects the tier=web machines shows on their page.
    let (status, body) = crate::http::send(
        reqwest::Method::PUT,
        format!("{api}/v1/policies/web-limits"),
        json!({"selector": {"tier": "web"}, "max_cpus": 2.0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    browser.goto(&format!("{api}/?label=tier%3Dweb")).await;
    browser
        .click(&format!(".card[data-id='{machine}'] a.host"))
        .await;
    let count = browser
        .wait_js(
            "chart points",
            "const p = document.querySelector('#chart polyline.cpu');
             return p && p.points.numberOfItems >= 2 ? p.points.numberOfItems : null;",
        )
        .await;
    assert!(count.as_u64().unwrap() >= 2);
    for line in ["memory", "load", "disk"] {
        let n = browser
            .js(
                &format!(
                    "return document.querySelector('#chart polyline.{line}').points.numberOfItems;"
                ),
                vec![],
            )
            .await;
        assert!(n.as_u64().unwrap() >= 2, "{line}: {n}");
    }
    let policies = browser
        .js(
            "return document.getElementById('policies').textContent;",
            vec![],
        )
        .await;
    let policies = policies.as_str().unwrap();
    assert!(
        policies.contains("web-limits") && policies.contains("at most 2 CPUs"),
        "{policies}"
    );
    browser.screenshot("machine").await;
}

/// Picks the cards of `ids`, presses `button`, checks the confirmation names them, confirms.
async fn act_on(browser: &Browser, ids: &[String], button: &str) -> String {
    for id in ids {
        browser.click(&format!(".card[data-id='{id}'] .pick")).await;
    }
    browser.click(button).await;
    let text = browser
        .wait_js(
            "the confirmation",
            "const d = document.getElementById('confirm'); return d.open ? d.textContent : null;",
        )
        .await;
    browser
        .screenshot(&format!("confirm-{}", &button[1..]))
        .await;
    browser.click("#confirm-ok").await;
    text.as_str().unwrap().to_string()
}

async fn outcomes(browser: &Browser, ids: &[String], expected: &str) {
    for id in ids {
        browser
            .wait_js(
                &format!("outcome {expected} on {id}"),
                &format!(
                    "return document.querySelector(\".card[data-id='{id}'] .outcome\").textContent === '{expected}';"
                ),
            )
            .await;
    }
}

pub async fn drain_and_undrain_from_the_page(
    browser: &Browser,
    api: &str,
    machines: [MachineId; 2],
) {
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    let ids: Vec<String> = machines.iter().map(ToString::to_string).collect();
    let names: Vec<String> = serde_json::from_value(
        browser
            .js(
                "return arguments[0].map(id => document.querySelector(`.card[data-id='${id}']`).dataset.name);",
                vec![json!(ids)],
            )
            .await,
    )
    .unwrap();
    let asked = act_on(browser, &ids, "#drain").await;
    for name in &names {
        assert!(asked.contains(name.as_str()), "{asked} names {name}");
    }
    outcomes(browser, &ids, "drained").await;
    // The live figures turn both cards blue once the leader commits DRAINING.
    for id in &ids {
        browser
            .wait_js(
                &format!("{id} shown DRAINING"),
                &format!(
                    "const c = document.querySelector(\".card[data-id='{id}']\");
                     return c.classList.contains('s-draining')
                         && c.querySelector('.status').textContent === 'DRAINING';"
                ),
            )
            .await;
    }
    browser
        .wait_js(
            "2 DRAINING in the summary",
            "return document.querySelector('[data-count=draining]').textContent === '2';",
        )
        .await;
    browser.screenshot("drained").await;
    let listed: Value = get(format!("{api}/v1/machines")).await;
    for m in listed["machines"].as_array().unwrap() {
        let picked = ids.contains(&m["id"].as_str().unwrap().to_string());
        assert_eq!(m["draining"], json!(picked), "{m}");
    }
    let audit: Value = get(format!("{api}/v1/audit?limit=20")).await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"].as_str().unwrap_or_default().contains("drain"))
        .unwrap_or_else(|| panic!("no drain in the audit log: {audit}"));
    let mut named: Vec<String> = serde_json::from_value(entry["machines"].clone()).unwrap();
    named.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(named, expected, "{entry}");
    assert_eq!(
        entry["actor"],
        json!("7e57000000000001"),
        "the test key did it: {entry}"
    );

    // Undrain the same two: the page still has them picked.
    browser.click("#undrain").await;
    browser
        .wait_js(
            "the confirmation",
            "return document.getElementById('confirm').open;",
        )
        .await;
    browser.click("#confirm-ok").await;
    outcomes(browser, &ids, "undrained").await;

    // A batch action on the same two: each card shows what its machine did.
    browser.click("#update").await;
    browser
        .wait_js(
            "the confirmation",
            "return document.getElementById('confirm').open;",
        )
        .await;
    browser.click("#confirm-ok").await;
    for id in &ids {
        browser
            .wait_js(
                &format!("the update's outcome on {id}"),
                &format!(
                    "const t = document.querySelector(\".card[data-id='{id}'] .outcome\").textContent;
                     return /^(done|failed): ./.test(t) ? t : null;"
                ),
            )
            .await;
    }
    browser.screenshot("batch-update").await;
    let listed: Value = get(format!("{api}/v1/machines")).await;
    for m in listed["machines"].as_array().unwrap() {
        assert_eq!(m["draining"], json!(false), "{m}");
    }
}

pub async fn card_greys_without_reload(browser: &Browser, id: &str) {
    let deadline = Duration::from_secs(5);
    let started = std::time::Instant::now();
    loop {
        let seen = browser
            .js(
                &format!(
                    "const c = document.querySelector(\".card[data-id='{id}']\");
                     return [c.className, document.querySelector('[data-count=online]').textContent,
                             getComputedStyle(c.querySelector('.dot')).backgroundColor,
                             window.shoalNotReloaded === true];"
                ),
                vec![],
            )
            .await;
        let class = seen[0].as_str().unwrap();
        let down = ["s-offline", "s-stale", "s-dead"]
            .iter()
            .any(|s| class.contains(s));
        if down && seen[1] == json!("2") {
            assert_eq!(seen[3], json!(true), "the page reloaded");
            assert_ne!(seen[2], json!("rgb(26, 159, 75)"), "still green: {seen}");
            browser.screenshot("node-stopped").await;
            return;
        }
        if started.elapsed() > deadline {
            browser.screenshot("failed-node-stopped").await;
            panic!("after 5 s the card and counts show {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn phone_has_no_horizontal_scroll(browser: &Browser, api: &str) {
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    let sizes = browser
        .js(
            "return [window.innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth];",
            vec![],
        )
        .await;
    let inner = sizes[0].as_u64().unwrap();
    assert!(inner <= 400, "the viewport is phone-sized: {sizes}");
    assert!(
        sizes[1].as_u64().unwrap() <= inner && sizes[2].as_u64().unwrap() <= inner,
        "horizontal scrolling on a phone: {sizes}"
    );
    browser.screenshot("phone").await;
}

/// The rows layout is a choice in the URL, like the sort.
pub async fn rows_layout(browser: &Browser, api: &str) {
    browser
        .goto(&format!("{api}/?view=rows&sort=hostname"))
        .await;
    let rows = browser
        .js(
            "return document.getElementById('grid').classList.contains('rows')
                && document.getElementById('view').value === 'rows';",
            vec![],
        )
        .await;
    assert_eq!(rows, json!(true));
    assert_eq!(browser.count(".card").await, 3);
    browser.screenshot("fleet-rows").await;
}

/// The kill switch from the summary bar: on with a reason, shown live, then off.
pub async fn kill_switch_from_the_page(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    browser
        .type_into("#kill-reason", "maintenance window")
        .await;
    browser.click("#kill-on").await;
    browser
        .wait_js(
            "the kill switch shown on",
            "return document.querySelector('[data-sum=kill_switch]').textContent.includes('maintenance window');",
        )
        .await;
    let state: Value = get(format!("{api}/v1/killswitch")).await;
    assert_eq!(state["on"], json!(true), "{state}");
    assert_eq!(state["reason"], json!("maintenance window"), "{state}");
    browser.screenshot("kill-switch-on").await;
    browser.click("#kill-off").await;
    browser
        .wait_js(
            "the kill switch shown off",
            "return document.querySelector('[data-sum=kill_switch]').textContent === 'off';",
        )
        .await;
    let state: Value = get(format!("{api}/v1/killswitch")).await;
    assert_eq!(state["on"], json!(false), "{state}");
}

/// The delay from a machine's heartbeat to its card showing it, measured in the page: each
/// time a card's heartbeat time changes, how old that heartbeat was (one clock: every node
/// and the browser run on this host). Sorted, in milliseconds.
pub async fn heartbeat_to_card_delays(browser: &Browser) -> Vec<u64> {
    browser
        .js(
            "window.shoalDelays = [];
             const seen = new MutationObserver((changes) => {
               for (const c of changes) window.shoalDelays.push(Date.now() - Number(c.target.dataset.ms));
             });
             for (const t of document.querySelectorAll('time[data-f=heartbeat]')) {
               seen.observe(t, {attributes: true, attributeFilter: ['data-ms']});
             }",
            vec![],
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delays = browser.js("return window.shoalDelays;", vec![]).await;
    let mut delays: Vec<u64> = delays
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap().max(0) as u64)
        .collect();
    delays.sort_unstable();
    delays
}

/// Dark mode follows the system, and the page reads with the keyboard alone: a card's
/// checkbox toggles with the space bar, and its link opens with Enter.
pub async fn dark_mode_and_keyboard(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/")).await;
    browser.prefer_dark(true).await;
    let colours = browser
        .js(
            "const body = getComputedStyle(document.body);
             const card = getComputedStyle(document.querySelector('.card'));
             return [body.backgroundColor, body.color, card.backgroundColor];",
            vec![],
        )
        .await;
    assert_eq!(colours[0], json!("rgb(15, 19, 25)"), "{colours}");
    assert_eq!(colours[1], json!("rgb(227, 231, 238)"), "{colours}");
    browser.screenshot("fleet-dark").await;
    browser.prefer_dark(false).await;

    let pick = browser
        .client
        .find(fantoccini::Locator::Css(".card .pick"))
        .await
        .unwrap();
    pick.send_keys(" ").await.unwrap();
    browser
        .wait_js(
            "a card picked with the space bar",
            "return document.getElementById('selected-count').textContent === '1 selected';",
        )
        .await;
    let link = browser
        .client
        .find(fantoccini::Locator::Css(".card a.host"))
        .await
        .unwrap();
    let enter = char::from(fantoccini::key::Key::Enter).to_string();
    link.send_keys(&enter).await.unwrap();
    browser
        .wait_js(
            "a machine's page opened with Enter",
            "return document.body.dataset.page === 'machine';",
        )
        .await;
}

/// A lost connection shows a banner; back online, the page reconnects by itself and gets
/// the events it missed (it resumes after the last event index it saw).
pub async fn lost_connection_resumes(browser: &Browser, api: &str, machine: MachineId) {
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    // Some event seen first, so the page has an index to resume from.
    let (status, body) = crate::http::put_labels(api, machine, &["seen=before"]).await;
    assert_eq!(status, 200, "{body}");
    let before = browser
        .wait_js(
            "an event index",
            "return Number(document.body.dataset.lastEvent || 0);",
        )
        .await;
    browser
        .js(
            "window.shoalEvents = [];
             document.addEventListener('shoal-event',
                 (e) => window.shoalEvents.push(JSON.stringify(e.detail)));",
            vec![],
        )
        .await;
    // Offline, then the socket dropped (emulating the network going away does not end a
    // WebSocket that is already open): every reconnect fails until the network is back.
    browser.offline(true).await;
    browser.js("window.shoalLive.close();", vec![]).await;
    browser
        .wait_js(
            "the lost-connection banner",
            "const b = document.getElementById('banner');
             return !b.hidden && b.textContent.includes('lost') && document.body.dataset.live === 'closed';",
        )
        .await;
    browser.screenshot("connection-lost").await;
    let (status, body) = crate::http::put_labels(api, machine, &["seen=while-away"]).await;
    assert_eq!(status, 200, "{body}");
    browser.offline(false).await;
    browser.wait_live().await;
    // The label change made while the page was away comes in the resumed backlog.
    browser
        .wait_js(
            "the missed label event",
            "return window.shoalEvents.some((e) => e.includes('while-away'));",
        )
        .await;
    let after = browser
        .js("return Number(document.body.dataset.lastEvent);", vec![])
        .await;
    // The card's labels follow too.
    browser
        .wait_js(
            "the new label on the card",
            &format!(
                "return [...document.querySelectorAll(\".card[data-id='{machine}'] .labels li\")]
                     .some((li) => li.textContent === 'seen=while-away');"
            ),
        )
        .await;
    assert!(after.as_u64() > before.as_u64(), "{before} then {after}");
    assert!(
        browser
            .js("return document.getElementById('banner').hidden;", vec![])
            .await
            == json!(true),
        "the banner stays after the reconnect"
    );
}
