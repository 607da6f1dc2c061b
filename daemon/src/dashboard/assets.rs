//! The page's one stylesheet and one script, embedded in the binary and served under a
//! name that carries a hash of their content, so a browser may keep them for a year and
//! still never runs an old script against a new page.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Where the page finds its assets.
pub struct AssetUrls {
    pub js: String,
    pub css: String,
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// The assets' URLs, hashes included.
pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    js: format!("/ui/assets/app.{}.js", short_hash(SCRIPT)),
    css: format!("/ui/assets/app.{}.css", short_hash(STYLE)),
});

/// `GET /ui/assets/{file}`: the asset this build has under that name, or 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/ui/assets/{file}");
    let (body, kind) = if path == URLS.js {
        (SCRIPT, "text/javascript; charset=utf-8")
    } else if path == URLS.css {
        (STYLE, "text/css; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset in this build").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
