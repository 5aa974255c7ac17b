//! Request extractors that fail with the admin API's JSON errors instead of
//! axum's plain-text rejections, and the parsing of names out of URLs.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use crate::name::{Permissions, VhostPath};

/// A JSON request body; a bad one is a 400 `BAD_REQUEST`, one over
/// `limits.max_admin_body_size` a 413 `PAYLOAD_TOO_LARGE`.
pub(super) struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than limits.max_admin_body_size",
        );
    }
    ApiError::bad_request(format!("bad request body: {}", rejection.body_text()))
}

/// URL path parameters (percent-decoded); undecodable ones are a 400.
pub(super) struct Segments<T>(pub T);

impl<S, T> FromRequestParts<S> for Segments<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Segments(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad URL: {}", rejection.body_text()))
}

/// The vhost named by one URL segment. A vhost path has slashes, so the
/// segment is percent-encoded (`%2Fchat%2Froom` for `/chat/room`); the
/// leading `/` may be left out (`chat` for `/chat`) to keep simple URLs
/// simple.
pub(super) fn vhost(segment: &str) -> Result<VhostPath, ApiError> {
    let parsed = if segment.starts_with('/') {
        VhostPath::parse(segment)
    } else {
        VhostPath::parse(&format!("/{segment}"))
    };
    Ok(parsed?)
}

/// Permissions in a request body: the text form (`"READ|WRITE"`) or a list
/// of words (`["READ", "WRITE"]`, the form responses use).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PermissionsField {
    /// `"READ|WRITE"`.
    Text(String),
    /// `["READ", "WRITE"]`.
    Words(Vec<String>),
}

impl PermissionsField {
    /// The validated set.
    pub(super) fn parse(&self) -> Result<Permissions, ApiError> {
        let parsed = match self {
            PermissionsField::Text(text) => Permissions::parse(text),
            PermissionsField::Words(words) => Permissions::parse(&words.join("|")),
        };
        Ok(parsed?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_segment_takes_an_optional_leading_slash() {
        assert_eq!(vhost("/chat").unwrap().as_str(), "/chat");
        assert_eq!(vhost("chat").unwrap().as_str(), "/chat");
        assert_eq!(vhost("/a/b").unwrap().as_str(), "/a/b");
        let error = vhost("bad path").unwrap_err();
        assert_eq!(error.code, "INVALID_VHOST_PATH");
        assert_eq!(vhost("").unwrap_err().code, "INVALID_VHOST_PATH");
    }

    #[test]
    fn permissions_field_accepts_text_and_words() {
        let text: PermissionsField = serde_json::from_str(r#""READ|write""#).unwrap();
        assert_eq!(
            text.parse().unwrap(),
            Permissions::READ | Permissions::WRITE
        );
        let words: PermissionsField = serde_json::from_str(r#"["MANAGE","READ"]"#).unwrap();
        assert_eq!(
            words.parse().unwrap(),
            Permissions::READ | Permissions::MANAGE
        );
        let bad: PermissionsField = serde_json::from_str(r#""READ|FLY""#).unwrap();
        assert_eq!(bad.parse().unwrap_err().code, "INVALID_PERMISSIONS");
        assert!(serde_json::from_str::<PermissionsField>("7").is_err());
    }
}
