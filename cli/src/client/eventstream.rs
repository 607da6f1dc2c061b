//! Reading events: `GET /v1/events` as NDJSON, one event per line. Followed, the answer
//! stays open with no deadline; a node that must end it first sends a [`StreamEnd`] line
//! saying where to resume.

use shoal_protocol::events::{Event, EventLine, StreamEnd};

use shoal_protocol::params::EventParams;

use super::{Client, ClientError, decode, error_chain, with_query};

impl Client {
    /// `GET /v1/events?{query}`: hands each event, with its line as sent, to `on_event`
    /// until the answer ends: `Ok(None)` when it ended by itself, `Ok(Some(end))` when the
    /// node ended a follow early. A broken connection is [`ClientError::Unreachable`].
    pub async fn event_stream(
        &self,
        params: &EventParams,
        mut on_event: impl FnMut(Event, &str),
    ) -> Result<Option<StreamEnd>, ClientError> {
        let url = format!("{}{}", self.addr, with_query("/v1/events", params));
        let unreachable = |detail: String| self.unreachable(detail);
        // The client's own deadline covers a whole answer, which a follow never finishes:
        // this one only bounds connecting and the wait for the headers.
        let mut http = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.trust.config).clone())
            .connect_timeout(self.timeout);
        if let Some(auth) = &self.auth {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, auth.clone());
            http = http.default_headers(headers);
        }
        let http = http.build().map_err(|e| unreachable(error_chain(&e)))?;
        let mut response = match tokio::time::timeout(self.timeout, http.get(&url).send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(unreachable(error_chain(&err))),
            Err(_) => return Err(unreachable("timed out waiting for an answer".to_string())),
        };
        let status = response.status();
        if !status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            return decode::<serde_json::Value>(&url, status, &body).map(|_| None);
        }
        let bad = |detail: String| ClientError::BadResponse {
            url: url.clone(),
            detail,
        };
        let mut buf: Vec<u8> = Vec::new();
        loop {
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_str::<EventLine>(text) {
                    Ok(EventLine::Event(event)) => on_event(event, text),
                    Ok(EventLine::End(end)) => return Ok(Some(end)),
                    Err(err) => return Err(bad(format!("a line is not an event: {err}"))),
                }
            }
            match response.chunk().await {
                Ok(Some(bytes)) => buf.extend_from_slice(&bytes),
                Ok(None) if buf.is_empty() => return Ok(None),
                Ok(None) => return Err(unreachable("the event stream broke mid-line".into())),
                Err(err) => return Err(unreachable(error_chain(&err))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, serve_once};
    use super::*;

    #[tokio::test]
    async fn lines_become_events_and_a_last_line_says_where_to_resume() {
        let body = concat!(
            r#"{"index":4,"seq":0,"at_ms":null,"topic":"fleet","kind":"membership","subject":null,"detail":{}}"#,
            "\n",
            r#"{"error":"too slow","resume_from":4}"#,
            "\n"
        );
        let (addr, server) = serve_once("200 OK", body).await;
        let mut seen = Vec::new();
        let end = client(&addr)
            .event_stream(
                &EventParams {
                    follow: true,
                    ..EventParams::default()
                },
                |event, line| seen.push((event.index, line.to_string())),
            )
            .await
            .unwrap();
        assert_eq!(end.unwrap().resume_from, 4);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].1.starts_with(r#"{"index":4,"#));
        let sent = server.await.unwrap();
        assert!(
            sent.starts_with("GET /v1/events?follow=true HTTP/1.1"),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn a_gap_is_the_nodes_conflict() {
        let body = r#"{"code":"conflict","message":"events after index 0 are no longer kept"}"#;
        let (addr, _server) = serve_once("409 Conflict", body).await;
        let err = client(&addr)
            .event_stream(
                &EventParams {
                    since: Some(0),
                    ..EventParams::default()
                },
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Api(e) if e.code == shoal_protocol::ErrorCode::Conflict),
            "{err:?}"
        );
    }
}
