//! Who may do what from the browser: a read key's page and its forged requests, a revoked
//! key's open page, the headers and assets, and a session used on another node.

use serde_json::{Value, json};

use super::browser::Browser;

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

    browser.log_in(api, read_key).await;
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

/// Revoking the key of an open page ends its session: the live socket closes and the page
/// goes to the login page by itself.
pub async fn revocation_ends_the_session(browser: &Browser, api: &str, key_id: &str) {
    browser.wait_live().await;
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
