//! The one error shape every admin route answers with:
//! `{"error": "<message>", "code": "<CODE>"}` and a matching HTTP status.
//!
//! | code | status | when |
//! |---|---|---|
//! | `FORBIDDEN` | 403 | missing or wrong node cookie |
//! | `INVALID_VHOST_PATH`, `INVALID_CHANNEL_NAME`, `INVALID_USER_NAME`, `INVALID_PERMISSIONS`, `INVALID_NAME` | 400 | a name in the URL or body breaks the rules |
//! | `BAD_REQUEST` | 400 | the body is not the JSON the route expects |
//! | `NOT_FOUND` | 404 | the vhost, user, channel or route does not exist |
//! | `METHOD_NOT_ALLOWED` | 405 | the route exists, not with this method |
//! | `ALREADY_EXISTS` | 409 | the vhost, user or channel exists already |
//! | `STORAGE` | 500 | the change could not be made durable |
//! | `DATA_PATH` | 500 | durable, but the data path did not take it |
//! | `INTERNAL` | 500 | anything else |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::name::{NameError, NameKind};
use crate::node::{ChangeError, ConsensusError};
use crate::storage::{StateError, StorageError};

/// An admin request that failed, with the status and code it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (see the module table).
    pub code: &'static str,
    /// Human-readable message, shown by webrocket-ctl.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "missing or wrong node cookie (header X-WebRocket-Cookie)",
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 500 `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        let code = match error.kind() {
            NameKind::VhostPath => "INVALID_VHOST_PATH",
            NameKind::ChannelName => "INVALID_CHANNEL_NAME",
            NameKind::UserName => "INVALID_USER_NAME",
            NameKind::Permissions => "INVALID_PERMISSIONS",
            _ => "INVALID_NAME",
        };
        Self::new(StatusCode::BAD_REQUEST, code, error.to_string())
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        let (status, code) = match error {
            StateError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            StateError::AlreadyExists(_) => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            StateError::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID_ITEM"),
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Storage(StorageError::State(state)) => state.into(),
            ChangeError::Storage(storage) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "STORAGE",
                storage.to_string(),
            ),
            // The change is durable and in the state; only the data path
            // lags. Saying so lets an operator retry or restart.
            ChangeError::Control(control) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "DATA_PATH",
                format!("change saved, but the data path did not take it: {control}"),
            ),
            ChangeError::Limit(why) => {
                Self::new(StatusCode::CONFLICT, "LIMIT_REACHED", why.to_string())
            }
            // This node's replicated log cannot be written (a full disk):
            // like a single node's storage failure.
            ChangeError::Cluster(ConsensusError::Storage(why)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", why)
            }
            // No majority reachable: a temporary condition worth a retry.
            ChangeError::Cluster(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "CLUSTER",
                format!("the cluster did not confirm the change: {why}"),
            ),
            // The node cannot tell whether its state is current: no answer
            // from it (a stale 404 would be wrong), a retry may succeed.
            stale @ ChangeError::Stale(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "CLUSTER",
                stale.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message, "code": self.code }));
        (self.status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{ChannelName, VhostPath};
    use crate::storage::Entity;

    #[test]
    fn name_errors_are_400_with_a_code_per_kind() {
        let error: ApiError = VhostPath::parse("nope").unwrap_err().into();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "INVALID_VHOST_PATH");
        assert!(error.message.contains("must start with '/'"), "{error}");
        let error: ApiError = ChannelName::parse("").unwrap_err().into();
        assert_eq!(error.code, "INVALID_CHANNEL_NAME");
        let error: ApiError = crate::name::Permissions::parse("FLY").unwrap_err().into();
        assert_eq!(error.code, "INVALID_PERMISSIONS");
    }

    #[test]
    fn state_errors_map_to_404_and_409() {
        let vhost = VhostPath::parse("/chat").unwrap();
        let missing: ApiError = StateError::NotFound(Entity::Vhost(vhost.clone())).into();
        assert_eq!(
            (missing.status, missing.code),
            (StatusCode::NOT_FOUND, "NOT_FOUND")
        );
        assert_eq!(missing.message, "vhost \"/chat\" not found");
        let change = ChangeError::Storage(StorageError::State(StateError::AlreadyExists(
            Entity::Vhost(vhost),
        )));
        let exists: ApiError = change.into();
        assert_eq!(
            (exists.status, exists.code),
            (StatusCode::CONFLICT, "ALREADY_EXISTS")
        );
    }

    #[test]
    fn storage_failures_are_500() {
        let change = ChangeError::Storage(StorageError::TooLarge { len: 9 });
        let error: ApiError = change.into();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code, "STORAGE");
    }
}
