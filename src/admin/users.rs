//! User routes: list, add, delete, set permissions, set secret. Secrets are
//! hashed (argon2id, deliberately slow) on the blocking pool; neither they
//! nor their hashes are ever sent back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, Body, PermissionsField, Segments};
use super::ApiState;
use crate::name::{Permissions, UserName, VhostPath};
use crate::storage::{hash_secret, Change, State as Durable, UserRecord};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct UserView {
    name: UserName,
    permissions: Permissions,
    has_secret: bool,
}

impl UserView {
    pub(super) fn new(name: &UserName, user: &UserRecord) -> Self {
        UserView {
            name: name.clone(),
            permissions: user.permissions,
            has_secret: user.secret_hash.is_some(),
        }
    }
}

/// `POST /vhosts/{vhost}/users` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    permissions: PermissionsField,
    /// Absent or null: the user needs no secret.
    secret: Option<String>,
}

/// `PUT .../permissions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPermissions {
    permissions: PermissionsField,
}

/// `PUT .../secret` body; absent or null removes the secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSecret {
    secret: Option<String>,
}

fn view_in(state: &Durable, vhost: &VhostPath, name: &UserName) -> Result<UserView, ApiError> {
    let record = state.vhost(vhost)?;
    match record.users.get(name) {
        Some(user) => Ok(UserView::new(name, user)),
        None => Err(ApiError::not_found(format!(
            "user {:?} in vhost {:?} not found",
            name.as_str(),
            vhost.as_str()
        ))),
    }
}

/// The argon2 hash of `secret`, computed off the async workers.
async fn hash(api: &ApiState, secret: Option<String>) -> Result<Option<String>, ApiError> {
    match secret {
        None => Ok(None),
        Some(secret) if secret.is_empty() => Err(ApiError::bad_request(
            "empty secret: leave \"secret\" out (or null) for a user without one",
        )),
        Some(secret) => api.blocking(move |_| Ok(Some(hash_secret(&secret)))).await,
    }
}

fn names(vhost: &str, name: &str) -> Result<(VhostPath, UserName), ApiError> {
    Ok((extract::vhost(vhost)?, UserName::parse(name)?))
}

pub(super) async fn list(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let read = path.clone();
    let users = api
        .read(move |state| {
            let record = state.vhost(&read)?;
            Ok(record
                .users
                .iter()
                .map(|(name, user)| UserView::new(name, user))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({ "vhost": path, "users": users })))
}

pub(super) async fn add(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let (vhost, name) = names(&vhost, &new.name)?;
    let permissions = new.permissions.parse()?;
    let secret_hash = hash(&api, new.secret).await?;
    api.change(Change::AddUser {
        vhost: vhost.clone(),
        name: name.clone(),
        secret_hash,
        permissions,
    })
    .await?;
    let view = api.read(move |state| view_in(state, &vhost, &name)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn remove(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (vhost, name) = names(&vhost, &name)?;
    api.change(Change::DeleteUser {
        vhost: vhost.clone(),
        name: name.clone(),
    })
    .await?;
    Ok(Json(json!({ "vhost": vhost, "deleted": name })))
}

pub(super) async fn set_permissions(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
    Body(new): Body<NewPermissions>,
) -> Result<Json<UserView>, ApiError> {
    let (vhost, name) = names(&vhost, &name)?;
    let permissions = new.permissions.parse()?;
    api.change(Change::SetPermissions {
        vhost: vhost.clone(),
        name: name.clone(),
        permissions,
    })
    .await?;
    let view = api.read(move |state| view_in(state, &vhost, &name)).await?;
    Ok(Json(view))
}

pub(super) async fn set_secret(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
    Body(new): Body<NewSecret>,
) -> Result<Json<UserView>, ApiError> {
    let (vhost, name) = names(&vhost, &name)?;
    let hash = hash(&api, new.secret).await?;
    api.change(Change::SetSecret {
        vhost: vhost.clone(),
        name: name.clone(),
        hash,
    })
    .await?;
    let view = api.read(move |state| view_in(state, &vhost, &name)).await?;
    Ok(Json(view))
}
