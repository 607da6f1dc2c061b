//! What a user does on the dashboard, one function per thing the issue asks to see, each
//! asserting what the page shows against what the API answers.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_protocol::MachineId;

use super::api_order;
use super::browser::Browser;
use crate::http::get;

/// Logs in through the login form (logging out first if a session is open).
pub async fn log_in(browser: &Browser, api: &str, key: &str) {
    browser.goto(&format!("{api}/")).await;
    if browser.count("form.who button").await > 0 {
        browser.click("form.who button").await;
    }
    browser
        .wait_js(
            "the login page",
            "return document.body.dataset.page === 'login';",
        )
        .await;
    browser.screenshot("login").await;
    browser.type_into("#key", key).await;
    browser.click("#login").await;
    browser
        .wait_js(
            "the fleet page",
            "return document.body.dataset.page === 'fleet';",
        )
        .await;
}

/// Waits until the page's live socket is open.
pub async fn wait_live(browser: &Browser) {
    browser
        .wait_js(
            "the live socket",
            "return document.body.dataset.live === 'open';",
        )
        .await;
}

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
    wait_live(browser).await;
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
    for line in ["memory", "load"] {
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
    wait_live(browser).await;
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

/// In-page `fetch` of `POST /v1/jobs` with the session cookie and `token` as the CSRF
/// header (none when `None`): the status and the body.
async fn post_job_from_page(browser: &Browser, token: Option<&str>) -> (u64, Value) {
    let answer = browser
        .client
        .execute_async(
            "const [token, done] = arguments;
             const headers = {'content-type': 'application/json'};
             if (token !== null) headers['x-shoal-csrf'] = token;
             fetch('/v1/jobs', {method: 'POST', credentials: 'same-origin', headers,
                    body: JSON.stringify({command: ['true']})})
               .then(async r => done([r.status, await r.json()]));",
            vec![json!(token)],
        )
        .await
        .unwrap();
    (answer[0].as_u64().unwrap(), answer[1].clone())
}

async fn page_token(browser: &Browser) -> String {
    browser
        .js(
            "return document.querySelector('meta[name=shoal-csrf]').content;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn read_key_sees_no_actions_and_forgery_is_refused(
    browser: &Browser,
    api: &str,
    read_key: &str,
) {
    // First, with the admin session: the request with its token works, and without it is
    // refused, so a refusal below is the check's doing.
    browser.goto(&format!("{api}/")).await;
    let admin_token = page_token(browser).await;
    let (status, body) = post_job_from_page(browser, Some(&admin_token)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_job_from_page(browser, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("CSRF"), "{body}");

    super::flows::log_in(browser, api, read_key).await;
    for css in ["#actions", ".pick", "#drain", "#kill-form"] {
        assert_eq!(browser.count(css).await, 0, "a read key sees {css}");
    }
    browser.screenshot("read-key-fleet").await;
    browser.goto(&format!("{api}/jobs")).await;
    assert_eq!(
        browser.count("#run-form").await,
        0,
        "a read key sees the run form"
    );

    // Forged: no token, the old session's token, a made-up one.
    for token in [None, Some(admin_token.as_str()), Some("00ff")] {
        let (status, body) = post_job_from_page(browser, token).await;
        assert_eq!(status, 403, "{token:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("CSRF token in the x-shoal-csrf header"),
            "{token:?}: {body}"
        );
    }
    // With its own token the request passes the CSRF check, and the scope refuses it.
    let token = page_token(browser).await;
    let (status, body) = post_job_from_page(browser, Some(&token)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("scope operate"),
        "{body}"
    );

    // From another site, with the cookie and even the right token: refused by origin.
    let cookie = browser.session_cookie().await;
    let response = shoal_daemon::testsuite::http_client_builder()
        .build()
        .unwrap()
        .post(format!("{api}/v1/jobs"))
        .header("cookie", format!("shoal_session={cookie}"))
        .header("origin", "https://evil.example")
        .header("x-shoal-csrf", token)
        .json(&json!({"command": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("another origin"),
        "{body}"
    );
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
    wait_live(browser).await;
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

/// The kill switch from the summary bar: on with a reason, shown live, then off.
pub async fn kill_switch_from_the_page(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/")).await;
    wait_live(browser).await;
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

/// Revoking the key of an open page ends its session: the live socket closes and the page
/// goes to the login page by itself.
pub async fn revocation_ends_the_session(browser: &Browser, api: &str, key_id: &str) {
    wait_live(browser).await;
    let (status, body) = crate::http::send(
        reqwest::Method::DELETE,
        format!("{api}/v1/keys/{key_id}"),
        Value::Null,
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    browser
        .wait_js(
            "the login page after revocation",
            "return document.body.dataset.page === 'login';",
        )
        .await;
}

/// What the first load of the fleet page cost, as the browser measured it: bytes over the
/// wire (page and assets) and the first contentful paint.
pub async fn first_load_figures(browser: &Browser) -> (u64, f64) {
    let figures = browser
        .js(
            "const nav = performance.getEntriesByType('navigation')[0];
             const assets = performance.getEntriesByType('resource')
                 .filter(r => r.name.includes('/ui/assets/'));
             const bytes = nav.transferSize + assets.reduce((n, r) => n + r.transferSize, 0);
             const paint = performance.getEntriesByName('first-contentful-paint')[0];
             return [bytes, paint ? paint.startTime : -1];",
            vec![],
        )
        .await;
    (figures[0].as_u64().unwrap(), figures[1].as_f64().unwrap())
}

/// A form's body type (keys need no escaping in it).
const FORM: &str = "application/x-www-form-urlencoded";

/// What the browser does not show: the headers, the assets' cache, the login's refusals,
/// and the session cookie of one node opening another node's API.
pub async fn headers_assets_and_any_node(api: &str, other_api: &str, cookie: &str) {
    let client = shoal_daemon::testsuite::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(format!("{api}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 303, "no session: to the login page");
    assert_eq!(page.headers()["location"], "/login");

    let login = client.get(format!("{api}/login")).send().await.unwrap();
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = login.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "inline code: {html}"
    );
    let css = html
        .split('"')
        .find(|part| part.starts_with("/ui/assets/app.") && part.ends_with(".css"))
        .expect("the stylesheet's hashed name")
        .to_string();
    let asset = client.get(format!("{api}{css}")).send().await.unwrap();
    assert_eq!(asset.status().as_u16(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let stale = client
        .get(format!("{api}/ui/assets/app.000000000000.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 404);

    // A wrong key sets no cookie; a login posted from another site is refused.
    let wrong = client
        .post(format!("{api}/login"))
        .header("content-type", FORM)
        .body("key=shoal_0000000000000000_00")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let elsewhere = client
        .post(format!("{api}/login"))
        .header("origin", "https://evil.example")
        .header("content-type", FORM)
        .body(format!("key={}", shoal_daemon::testsuite::TEST_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 403);
    assert!(elsewhere.headers().get("set-cookie").is_none());
    let good = client
        .post(format!("{api}/login"))
        .header("content-type", FORM)
        .body(format!("key={}", shoal_daemon::testsuite::TEST_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status().as_u16(), 303);
    let set = good.headers()["set-cookie"].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(set.contains(part), "{set}");
    }

    // The browser's session, sealed by one node, opens another node's API and pages.
    let machines = client
        .get(format!("{other_api}/v1/machines"))
        .header("cookie", format!("shoal_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(machines.status().as_u16(), 200);
    let page = client
        .get(format!("{other_api}/"))
        .header("cookie", format!("shoal_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("data-page=\"fleet\""));
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

/// A job submitted elsewhere (the API) appears in an open jobs list without a reload.
pub async fn jobs_list_updates_live(browser: &Browser, api: &str) {
    browser.goto(&format!("{api}/jobs")).await;
    wait_live(browser).await;
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
