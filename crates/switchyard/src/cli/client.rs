//! The gateway's API as the CLI uses it: one HTTP client with the bearer token, JSON in
//! and out, and the API's error body (`{"error":{"code","message"}}`) turned into
//! [`ClientError::Api`]. Every client command (and later ones such as a health check or
//! a stress run) goes through it.

use super::settings::{ClientSettings, Source};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use switchyard_contracts::RunId;
use switchyard_contracts::api::ErrorBody;

/// Bound on one ordinary API call (a stream has none: it lasts as long as its run).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A stream that stays silent this long is taken for dead (a half-open connection):
/// the gateway sends a keep-alive comment every `gateway.keep_alive_secs` (15 s).
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {url} (from {source_name}): {source}")]
    Unreachable {
        url: String,
        source_name: Source,
        #[source]
        source: reqwest::Error,
    },
    /// The API's own error: its code and message, as it sent them.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer without the API's error body (a proxy in between, another server).
    #[error("the gateway answered HTTP {status} to {path}{body}")]
    Http {
        status: u16,
        path: String,
        body: String,
    },
    #[error("the gateway's answer to {path} is not what the API describes: {message}")]
    Decode { path: String, message: String },
}

impl ClientError {
    /// Worth trying again later: the network, an overloaded or restarting service.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } | ClientError::Http { status, .. } => {
                *status >= 500 || *status == 429
            }
            ClientError::Decode { .. } => false,
        }
    }
}

/// The answer to opening a run's stream.
pub enum StreamOpen {
    /// 200: events follow.
    Events(reqwest::Response),
    /// 204: the cursor is the run's last event; nothing follows.
    Ended,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    source: Source,
    token: Option<SecretString>,
}

impl Client {
    pub fn new(settings: &ClientSettings) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_READ_TIMEOUT)
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: settings.url.clone(),
                source_name: settings.url_source.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base: settings.url.clone(),
            source: settings.url_source.clone(),
            token: settings.token.clone(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token.expose_secret()),
            None => builder,
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            source_name: self.source.clone(),
            source,
        }
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let response = builder.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_of(response, path).await)
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(builder.timeout(REQUEST_TIMEOUT), path).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// `GET path`, decoded as `T` (use `serde_json::Value` to keep the answer as it came).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(self.request(reqwest::Method::GET, path), path)
            .await
    }

    /// `GET path` with a longer bound than an ordinary call (a health check with probe
    /// runs lasts as long as they do).
    pub async fn get_with_timeout<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let response = self
            .send(
                self.request(reqwest::Method::GET, path).timeout(timeout),
                path,
            )
            .await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(self.request(reqwest::Method::POST, path).json(body), path)
            .await
    }

    /// `POST path` with a JSON body; the answer's HTTP status with its decoded body (a
    /// caller that measures the API, like `stress`, records the status).
    pub async fn post_with_status<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, T), ClientError> {
        let builder = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        let response = self.send(builder, path).await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok((status, value))
    }

    /// Opens `GET /api/runs/{id}/stream`, after `cursor` when given.
    pub async fn open_stream(
        &self,
        run_id: RunId,
        cursor: Option<&str>,
    ) -> Result<StreamOpen, ClientError> {
        let path = format!("/api/runs/{run_id}/stream");
        let url = match cursor {
            Some(cursor) => format!("{path}?{}", encode_query(&[("cursor", cursor.to_owned())])),
            None => path.clone(),
        };
        let builder = self
            .request(reqwest::Method::GET, &url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = self.send(builder, &path).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(StreamOpen::Ended);
        }
        Ok(StreamOpen::Events(response))
    }
}

/// The API's error body when there is one; else the status and the start of the body.
async fn error_of(response: reqwest::Response, path: &str) -> ClientError {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
        return ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        };
    }
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    ClientError::Http {
        status,
        path: path.to_owned(),
        body: if text.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", text.trim())
        },
    }
}

pub fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query(&[("appId", "a b&c".into()), ("limit", "5".into())]),
            "appId=a%20b%26c&limit=5"
        );
    }
}
