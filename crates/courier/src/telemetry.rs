//! Logging set-up and request spans. Tokens never reach a log line: URIs are redacted.

use axum::http::Request;
use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber, writing text lines. Safe to call twice (the second call is
/// ignored).
pub fn init<W>(filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_as(filter, false, writer);
}

/// `init`, writing one JSON object per line when `json` (`--log-format json`, for log
/// shippers): the message, level, target, time and the fields of the event and its spans.
pub fn init_as<W>(filter: &str, json: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The span for one request, with the query's `token` value hidden.
pub fn request_span<B>(request: &Request<B>) -> Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %redact_uri(&request.uri().to_string()),
    )
}

/// Query parameters whose values are credentials: tokens, and an OAuth callback's `code` and
/// `state`.
const REDACTED_PARAMS: [&str; 3] = ["token", "code", "state"];

/// Replaces the value of every credential query parameter (`token=`, `code=`, `state=`) with
/// `REDACTED`.
pub fn redact_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if REDACTED_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p)) => {
                format!("{k}=REDACTED")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_queries_are_redacted() {
        assert_eq!(
            redact_uri("/api/messages?token=abc.def&x=1"),
            "/api/messages?token=REDACTED&x=1"
        );
        assert_eq!(
            redact_uri("/api/messages?a=1&TOKEN=zz"),
            "/api/messages?a=1&TOKEN=REDACTED"
        );
        assert_eq!(redact_uri("/api/x"), "/api/x");
        assert_eq!(
            redact_uri("/api/oauth/github/callback?code=c0de&state=st4te"),
            "/api/oauth/github/callback?code=REDACTED&state=REDACTED"
        );
    }
}
