//! Optional bearer tokens: who may read or write which app.
//!
//! With no `auth.tokens` configured every request passes. Otherwise every API request needs
//! `Authorization: Bearer <token>`:
//!
//! - missing, malformed or unknown token: 401 `unauthorized` with `WWW-Authenticate: Bearer`;
//! - a token used on an app it does not list, or a `read` token on a write (`PUT`, `PATCH`,
//!   `POST`, `DELETE`; `POST /results/wait` only reads): 403 `forbidden`.
//!
//! The app of a request is the `{app}` segment of `/state/{app}/…`, else `?app=`, else the
//! configured default app. Tokens are stored as SHA-256 hashes; the hash of the presented token
//! is compared with every configured hash in constant time, so timing tells nothing about
//! which bytes matched. `/`, `/health/*`, `/metrics`, `/docs` and `/openapi.json` stay open unless
//! `auth.protect_operations`, in which case any valid token opens them.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::{AuthSettings, TokenScope};
use crate::error::{ApiError, ErrorCode};

/// One configured token, decoded.
#[derive(Clone)]
struct Token {
    hash: [u8; 32],
    apps: Vec<String>,
    scope: TokenScope,
}

impl Token {
    fn may_touch(&self, app: &str) -> bool {
        self.apps.iter().any(|a| a == "*" || a == app)
    }
}

/// The configured tokens, ready to check requests against.
#[derive(Clone, Default)]
pub struct Authenticator {
    tokens: Vec<Token>,
    protect_operations: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("protect_operations", &self.protect_operations)
            .finish()
    }
}

/// Compares two digests without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether a path is an operations endpoint (open unless `protect_operations`).
pub fn is_operations_path(path: &str) -> bool {
    path == "/"
        || path.starts_with("/health/")
        || path == "/metrics"
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
}

/// Whether a request changes data (`POST /results/wait` only reads).
fn is_write(method: &Method, path: &str) -> bool {
    let writes = [Method::PUT, Method::PATCH, Method::POST, Method::DELETE];
    writes.contains(method) && !(method == Method::POST && (path == "/results/wait" || path == "/celery/results/wait"))
}

/// The apps a request touches: the `{app}` of `/state/{app}/…` (percent-decoded, as the
/// router decodes it) and every `app=` of the query (a query with two is refused later, but
/// neither may slip past here); the default app when it names none.
fn request_apps(path: &str, query: Option<&str>, default_app: &str) -> Vec<String> {
    let decode = |raw: &str| -> Vec<(String, String)> { serde_urlencoded::from_str(raw).unwrap_or_default() };
    let mut apps: Vec<String> = decode(query.unwrap_or_default())
        .into_iter()
        .filter(|(k, _)| k == "app")
        .map(|(_, v)| v)
        .collect();
    if let Some(rest) = path.strip_prefix("/state/") {
        let segment = rest.split('/').next().unwrap_or_default();
        let decoded = decode(&format!("app={segment}")).pop().map(|(_, v)| v);
        apps.push(decoded.unwrap_or_else(|| segment.to_owned()));
    }
    if apps.is_empty() {
        apps.push(default_app.to_owned());
    }
    apps
}

fn unauthorized(detail: &str, invalid_token: bool) -> Box<Response> {
    let mut response = ApiError::new(ErrorCode::Unauthorized, detail).into_response();
    let challenge = if invalid_token {
        "Bearer realm=\"resultd\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"resultd\""
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    Box::new(response)
}

fn forbidden(detail: String) -> Box<Response> {
    Box::new(ApiError::new(ErrorCode::Forbidden, detail).into_response())
}

impl Authenticator {
    /// Decodes the configured tokens (hashes were validated when the settings loaded).
    pub fn new(settings: &AuthSettings) -> Self {
        let tokens = settings
            .tokens
            .iter()
            .filter_map(|t| {
                let bytes = hex::decode(&t.sha256).ok()?;
                Some(Token {
                    hash: <[u8; 32]>::try_from(bytes.as_slice()).ok()?,
                    apps: t.apps.clone(),
                    scope: t.scope,
                })
            })
            .collect();
        Self {
            tokens,
            protect_operations: settings.protect_operations,
        }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token whose hash matches `presented`, checking every token.
    fn find(&self, presented: &str) -> Option<&Token> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if same_digest(&token.hash, &digest) && found.is_none() {
                found = Some(token);
            }
        }
        found
    }

    /// Decides one request: `Ok` to go on, or the 401/403 answer.
    ///
    /// The app of another layout's route defaults to that layout's app: `layout_apps` pairs a
    /// path prefix (`/celery/`, `/omniq/`, …) with it.
    pub fn check(
        &self,
        request: &Request,
        default_app: &str,
        layout_apps: &[(&str, &str)],
    ) -> Result<(), Box<Response>> {
        if !self.enabled() {
            return Ok(());
        }
        let path = request.uri().path();
        let operations = is_operations_path(path);
        if operations && !self.protect_operations {
            return Ok(());
        }
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return Err(unauthorized("this server needs Authorization: Bearer <token>", false));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        let Some(presented) = presented else {
            return Err(unauthorized("the Authorization header is not a bearer token", true));
        };
        let Some(token) = self.find(presented) else {
            return Err(unauthorized("the bearer token is not known", true));
        };
        if operations {
            return Ok(());
        }
        if is_write(request.method(), path) && token.scope < TokenScope::Write {
            return Err(forbidden(format!(
                "this token is read-only; {} {path} writes",
                request.method()
            )));
        }
        let default_app = layout_apps
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map_or(default_app, |(_, app)| app);
        let apps = request_apps(path, request.uri().query(), default_app);
        if let Some(app) = apps.iter().find(|app| !token.may_touch(app)) {
            return Err(forbidden(format!("this token may not touch app {app:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_comes_from_the_state_path_or_the_query() {
        assert_eq!(request_apps("/state/billing/k", None, "d"), vec!["billing"]);
        assert_eq!(request_apps("/state/bill%69ng/k", None, "d"), vec!["billing"]);
        assert_eq!(request_apps("/results/x", Some("app=a&wait=1"), "d"), vec!["a"]);
        assert_eq!(request_apps("/results/x", Some("wait=1"), "d"), vec!["d"]);
        assert_eq!(request_apps("/results/x", None, "d"), vec!["d"]);
        assert_eq!(request_apps("/results/x", Some("app=a&app=b"), "d"), vec!["a", "b"]);
    }

    #[test]
    fn waiting_for_celery_results_is_a_read() {
        assert!(!is_write(&Method::POST, "/celery/results/wait"));
        assert!(is_write(&Method::PUT, "/celery/results/t"));
    }

    #[test]
    fn waiting_for_many_results_is_a_read() {
        assert!(!is_write(&Method::POST, "/results/wait"));
        assert!(is_write(&Method::POST, "/results/x/children"));
        assert!(!is_write(&Method::GET, "/results/x"));
    }

    #[test]
    fn digests_compare_equal_only_when_identical() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(same_digest(&a, &b));
        b[31] = 8;
        assert!(!same_digest(&a, &b));
    }

    #[test]
    fn debug_output_does_not_show_hashes() {
        let settings = AuthSettings {
            tokens: vec![crate::config::TokenSettings {
                sha256: "ab".repeat(32),
                apps: vec!["*".to_owned()],
                scope: TokenScope::Read,
            }],
            protect_operations: false,
        };
        let auth = Authenticator::new(&settings);
        assert!(auth.enabled());
        assert!(!format!("{auth:?}").contains("abab"));
    }
}
