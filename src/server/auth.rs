//! Optional bearer-token authentication for the /v1 routes.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::{ApiError, ErrorKind};

/// Refuses /v1 requests without `Authorization: Bearer <key>` when a key is configured.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = state.config.api_key.as_deref() {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => {}
            Some(_) => {
                return Err(ApiError::new(
                    ErrorKind::Unauthorized,
                    "the API key is wrong",
                ));
            }
            None => {
                return Err(ApiError::new(
                    ErrorKind::Unauthorized,
                    "an API key is required: send `Authorization: Bearer <key>`",
                ));
            }
        }
    }
    Ok(next.run(request).await)
}

/// Compares without returning early, so timing does not reveal the key's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
