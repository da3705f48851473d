//! Bearer-token authentication of the HTTP API (`auth: { tokens_file: PATH }` in server.yaml).
//!
//! The tokens file holds one `TOKEN ROLE` per line (`#` comments and blank lines allowed); the
//! role is `admin` (everything) or `read` (`GET` routes, `/metrics`, and the `get`, `list` and
//! `position` requests of `POST /cdc`). Every route but `/healthz` needs
//! `Authorization: Bearer <token>`: a missing or unknown token gets `401` with no body detail,
//! a `read` token on an admin route `403`.
//!
//! Tokens are compared in constant time against every configured token (no early exit), and
//! never logged or echoed: errors about the file name its line, not its content.
//!
//! The file is re-read without a restart ([`TokenStore`]): on `SIGHUP`, and when its
//! modification time or size changed (checked every `reload_secs`). A file that no longer
//! parses keeps the previous tokens in force (logged as an error naming the line).

use std::path::{Path, PathBuf};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use serde::{Deserialize, Serialize};
use tracing::debug;

/// `auth:` in server.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// File of `TOKEN ROLE` lines (role `admin` or `read`). Keep it readable by the server's
    /// user only.
    pub tokens_file: PathBuf,
    /// Seconds between checks of the file's modification time and size; a change reloads the
    /// tokens. `0`: reload on `SIGHUP` only (a `SIGHUP` always reloads).
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
}

fn default_reload_secs() -> u64 {
    5
}

mod reload;
pub use reload::TokenStore;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read-only: `GET` routes, metrics, and `get`/`list`/`position` of `POST /cdc`.
    Read,
    /// Everything.
    Admin,
}

/// Shortest accepted token (characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// The `POST /cdc` request types a `read` token may send.
pub const READ_REQUEST_TYPES: &[&str] = &["get", "list", "position"];

/// The configured tokens.
pub struct Tokens {
    entries: Vec<(Vec<u8>, Role)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

impl Tokens {
    /// Read and parse the tokens file.
    ///
    /// # Errors
    /// The file cannot be read, or a line is not `TOKEN ROLE` (the message names the file and
    /// line, never the token).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("auth.tokens_file {}: cannot read it: {e}", path.display()))?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    message = "The tokens file is readable by every user; restrict it (chmod 600).",
                    file = %path.display()
                );
            }
        }
        Self::parse(&text).map_err(|e| format!("auth.tokens_file {}: {e}", path.display()))
    }

    /// Parse `TOKEN ROLE` lines.
    ///
    /// # Errors
    /// A malformed line, a short or duplicate token, an unknown role, or no token at all.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries: Vec<(Vec<u8>, Role)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut parts = line.split_whitespace();
            let (Some(token), Some(role), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!(
                    "line {n}: expected `TOKEN ROLE` (two fields separated by a space)"
                ));
            };
            let role = match role {
                "admin" => Role::Admin,
                "read" => Role::Read,
                other => {
                    return Err(format!(
                        "line {n}: role {other:?} is unknown; use admin or read"
                    ))
                }
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {n}: the token is shorter than {MIN_TOKEN_LEN} characters; use a \
                     random one (e.g. `openssl rand -hex 32`)"
                ));
            }
            if entries.iter().any(|(t, _)| t == token.as_bytes()) {
                return Err(format!("line {n}: the same token is listed twice"));
            }
            entries.push((token.as_bytes().to_vec(), role));
        }
        if entries.is_empty() {
            return Err("no token is configured (add `TOKEN admin` lines)".into());
        }
        Ok(Self { entries })
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no token is configured (never, for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of a presented token, comparing it with every configured token in constant
    /// time.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.entries {
            if ct_eq(token, presented) {
                found = Some(*role);
            }
        }
        found
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

/// The role a route needs, or `None` for open routes. `POST /cdc` needs only `read` here; its
/// handler refuses admin request types to `read` tokens.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/healthz" {
        return None;
    }
    if method == Method::GET || method == Method::HEAD || path == "/cdc" {
        Some(Role::Read)
    } else {
        Some(Role::Admin)
    }
}

/// The 401 answer: no detail beyond the challenge.
fn unauthorized() -> HttpResponse {
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .finish()
}

/// The 403 answer for a valid token without the role.
pub fn forbidden(what: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::FORBIDDEN)
        .content_type("application/json")
        .json(serde_json::json!({
            "code": 403,
            "message": format!("{what} needs an admin token; this token's role is read"),
        }))
}

fn bearer(req: &ServiceRequest) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = v[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The middleware (`App::wrap(actix_web::middleware::from_fn(auth::check))`): without tokens
/// configured in [`crate::http::AppState`] every request passes; otherwise see the module
/// documentation. The role is put into the request extensions for the handlers.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let tokens = req
        .app_data::<actix_web::web::Data<crate::http::AppState>>()
        .and_then(|s| s.auth.as_ref().map(|a| a.current()));
    let Some(tokens) = tokens else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(needed) = required_role(req.method(), req.path()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let role = bearer(&req).and_then(|t| tokens.role_of(t));
    match role {
        None => {
            debug!(message = "Refused a request without a valid token.", method = %req.method(),
                   path = %req.path(), peer = ?req.peer_addr());
            Ok(req.into_response(unauthorized()))
        }
        Some(Role::Read) if needed == Role::Admin => {
            debug!(message = "Refused a read token on an admin route.", method = %req.method(),
                   path = %req.path());
            let what = format!("{} {}", req.method(), req.path());
            Ok(req.into_response(forbidden(&what)))
        }
        Some(role) => {
            req.extensions_mut().insert(role);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_and_rejects_bad_lines_without_echoing_tokens() {
        let t = Tokens::parse(
            "# comment\n\nadmin-token-0123456789 admin\n  read-token-0123456789   read \n",
        )
        .unwrap();
        assert_eq!(t.role_of(b"admin-token-0123456789"), Some(Role::Admin));
        assert_eq!(t.role_of(b"read-token-0123456789"), Some(Role::Read));
        assert_eq!(t.role_of(b"read-token-012345678"), None);
        assert_eq!(t.role_of(b"read-token-01234567890"), None);
        assert_eq!(t.role_of(b""), None);
        for (text, expect) in [
            ("secret-token-abcdefgh\n", "line 1: expected"),
            ("secret-token-abcdefgh root\n", "role \"root\""),
            ("short admin\n", "shorter than 16"),
            (
                "secret-token-abcdefgh admin\nsecret-token-abcdefgh read\n",
                "line 2: the same token",
            ),
            ("# nothing\n", "no token"),
            ("secret-token-abcdefgh admin extra\n", "line 1"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.contains(expect), "{text:?}: {e}");
            assert!(!e.contains("secret-token"), "token echoed: {e}");
        }
        assert!(!format!("{t:?}").contains("token-"));
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(!ct_eq(b"abc\0", b"abc"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn roles_per_route() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(required_role(&Method::GET, "/tasks"), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/metrics"), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/cdc"), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/tasks"), Some(Role::Admin));
        assert_eq!(
            required_role(&Method::DELETE, "/tasks/x"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::POST, "/tasks/x/pause"),
            Some(Role::Admin)
        );
    }
}
