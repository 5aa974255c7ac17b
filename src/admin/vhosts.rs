//! Vhost routes: list, add, show (with the backend token), delete, clear,
//! regenerate the token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, Body, PermissionsField, Segments};
use super::users::UserView;
use super::ApiState;
use crate::name::{AccessToken, Permissions, VhostPath};
use crate::storage::{Change, State as Durable, VhostRecord};

/// One line of `list_vhosts`.
#[derive(Debug, Serialize)]
pub(super) struct VhostSummary {
    path: VhostPath,
    users: usize,
    channels: usize,
}

/// Everything about one vhost (`show_vhost`).
#[derive(Debug, Serialize)]
pub(super) struct VhostView {
    path: VhostPath,
    token: AccessToken,
    anonymous: Permissions,
    auto_create_channels: bool,
    users: Vec<UserView>,
    channels: Vec<String>,
}

impl VhostView {
    fn new(path: &VhostPath, record: &VhostRecord) -> Self {
        VhostView {
            path: path.clone(),
            token: record.token.clone(),
            anonymous: record.anonymous,
            auto_create_channels: record.auto_create_channels,
            users: record
                .users
                .iter()
                .map(|(name, user)| UserView::new(name, user))
                .collect(),
            channels: record.channels.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// `POST /vhosts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewVhost {
    path: String,
    /// Default: none (spec section 1).
    anonymous: Option<PermissionsField>,
    /// Default: true (spec section 1).
    auto_create_channels: Option<bool>,
}

/// The durable view of `path`, or 404.
pub(super) fn show_in(state: &Durable, path: &VhostPath) -> Result<VhostView, ApiError> {
    Ok(VhostView::new(path, state.vhost(path)?))
}

pub(super) async fn list(State(api): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let vhosts = api
        .read(|state| {
            Ok(state
                .vhosts
                .iter()
                .map(|(path, record)| VhostSummary {
                    path: path.clone(),
                    users: record.users.len(),
                    channels: record.channels.len(),
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({ "vhosts": vhosts })))
}

pub(super) async fn add(
    State(api): State<ApiState>,
    Body(new): Body<NewVhost>,
) -> Result<(StatusCode, Json<VhostView>), ApiError> {
    let path = VhostPath::parse(&new.path)?;
    let anonymous = match &new.anonymous {
        Some(field) => field.parse()?,
        None => Permissions::NONE,
    };
    api.change(Change::AddVhost {
        path: path.clone(),
        token: AccessToken::generate(),
        anonymous,
        auto_create_channels: new.auto_create_channels.unwrap_or(true),
    })
    .await?;
    let view = api.read(move |state| show_in(state, &path)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn clear(State(api): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let count = api.read(|state| Ok(state.vhosts.len())).await?;
    api.change(Change::ClearVhosts).await?;
    Ok(Json(json!({ "deleted": count })))
}

pub(super) async fn show(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<VhostView>, ApiError> {
    let path = extract::vhost(&vhost)?;
    Ok(Json(api.read(move |state| show_in(state, &path)).await?))
}

pub(super) async fn remove(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    api.change(Change::DeleteVhost { path: path.clone() })
        .await?;
    Ok(Json(json!({ "deleted": path })))
}

pub(super) async fn regenerate_token(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let token = AccessToken::generate();
    api.change(Change::SetVhostToken {
        path: path.clone(),
        token: token.clone(),
    })
    .await?;
    Ok(Json(json!({ "vhost": path, "token": token })))
}
