//! Small HTTP helpers that assert what a client of the admin API sees.

use serde::de::DeserializeOwned;
use shoal_protocol::api::{LabelRequest, MachineList, MachineView};
use shoal_protocol::{Labels, MachineId};

pub async fn get<T: DeserializeOwned>(url: String) -> T {
    let response = shoal_daemon::testsuite::http_client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

pub async fn machines(api: &str) -> Vec<MachineView> {
    get::<MachineList>(format!("{api}/v1/machines"))
        .await
        .machines
}

/// `PUT /v1/machines/{id}/labels`, returning the status and the body as JSON.
pub async fn put_labels(api: &str, id: MachineId, pairs: &[&str]) -> (u16, serde_json::Value) {
    let body = LabelRequest {
        set: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        remove: vec![],
    };
    let response = shoal_daemon::testsuite::http_client()
        .put(format!("{api}/v1/machines/{id}/labels"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}
