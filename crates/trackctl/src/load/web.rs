//! The load tool's HTTP/1.1 client: each caller keeps one keep-alive connection to the suite's HTTP
//! address (trackd's, or a service's) and sends requests whose URIs it built once. A general client
//! (reqwest) parsed the URL, checked a connection out of a pool and filled a header map for every
//! request: at 20,000 redirects/s that cost the tool more CPU than trackd spent answering, on the
//! two cores the tool shares with what it measures.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP address of the suite (`--http`, `--gateway-http`, `--attribution-http`):
/// `http://host[:port][/prefix]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, to connect to.
    authority: String,
    /// The `Host` header.
    host: HeaderValue,
    /// Prepended to every path (a proxy in front of trackd may serve it under one).
    prefix: String,
}

impl Target {
    /// Reads `base`, given as `flag` (named in the error).
    pub fn parse(flag: &str, base: &str) -> anyhow::Result<Target> {
        let invalid = || {
            anyhow::anyhow!(
                "{flag} {base}: expected http://host[:port][/prefix] (the load tool speaks plain \
                 HTTP/1.1 to the suite's HTTP address)"
            )
        };
        let rest = base
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &base[7..])
            .ok_or_else(invalid)?;
        let (authority, prefix) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        // A host and an optional port: no user info, no query or fragment, anywhere.
        let parsed: Authority = authority.parse().map_err(|_| invalid())?;
        if parsed.host().is_empty()
            || authority.contains('@')
            || prefix.contains(['?', '#'])
            || (authority.ends_with(':') || authority.contains("]:")) && parsed.port().is_none()
        {
            return Err(invalid());
        }
        Ok(Target {
            authority: match parsed.port_u16() {
                Some(_) => authority.to_owned(),
                None => format!("{authority}:80"),
            },
            host: HeaderValue::from_str(authority).map_err(|_| invalid())?,
            prefix: prefix.to_owned(),
        })
    }

    /// The URI of `path` (which starts with `/`), to build once and send many times.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        let path = PathAndQuery::try_from(format!("{}{path}", self.prefix))?;
        Ok(Uri::from(path))
    }

    /// A request for `uri` with its `Host` header.
    pub fn request(&self, method: Method, uri: Uri) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, self.host.clone())
    }
}

/// Why a request got no answer, as the summary counts it.
#[derive(Debug)]
pub enum HttpError {
    Timeout,
    Connect(std::io::Error),
    Io(hyper::Error),
}

impl HttpError {
    /// Whether the request may still have taken effect: it was sent (or being sent) and no
    /// answer came. A connection never made sent nothing.
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, HttpError::Connect(_))
    }

    pub fn class(&self) -> &'static str {
        match self {
            HttpError::Timeout => "HTTP timeout",
            HttpError::Connect(_) => "HTTP connect",
            HttpError::Io(_) => "HTTP io",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Timeout => write!(f, "no answer within {TIMEOUT:?}"),
            HttpError::Connect(err) => write!(f, "connecting: {err}"),
            HttpError::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// One caller's keep-alive connection; connects on first use and again after an error.
pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Target) -> Connection {
        Connection {
            target,
            sender: None,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let answer = match tokio::time::timeout(TIMEOUT, self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(HttpError::Timeout),
        };
        if answer.is_err() {
            // The connection may be half-way through an answer: start the next request afresh.
            self.sender = None;
        }
        answer
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => connect(&self.target.authority).await?,
        };
        let sender = self.sender.insert(sender);
        sender.ready().await.map_err(HttpError::Io)?;
        let response = sender.send_request(request).await.map_err(HttpError::Io)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(HttpError::Io)?
            .to_bytes();
        Ok((status, body))
    }
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, HttpError> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(HttpError::Connect)?;
    stream.set_nodelay(true).map_err(HttpError::Connect)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HttpError::Io)?;
    // Drives the connection until the sender is dropped or the server closes it; an error
    // there shows on the sender's next request.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_host_port_and_prefix() -> anyhow::Result<()> {
        let plain = Target::parse("--http", "http://127.0.0.1:20080/")?;
        assert_eq!(plain.authority, "127.0.0.1:20080");
        assert_eq!(plain.uri("/r/abc")?.to_string(), "/r/abc");
        let proxied = Target::parse("--http", "http://links.example/track")?;
        assert_eq!(proxied.authority, "links.example:80");
        assert_eq!(proxied.host, "links.example");
        assert_eq!(proxied.uri("/r/abc")?.to_string(), "/track/r/abc");
        assert_eq!(
            Target::parse("--http", "http://[::1]:8080")?.authority,
            "[::1]:8080"
        );
        assert_eq!(
            Target::parse("--http", "http://[::1]")?.authority,
            "[::1]:80"
        );
        for bad in [
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://",
            "http:///r",
        ] {
            let err = Target::parse("--http", bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("--http ") && err.contains("expected http://host[:port]"),
                "{bad}: {err}"
            );
        }
        Ok(())
    }
}
