//! Channel routes: list, add, delete, clear. The list is the durable one
//! (channels created by subscribing included); subscribers live on the
//! broker thread and are shown by `/stats` instead.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, Body, Segments};
use super::ApiState;
use crate::name::ChannelName;
use crate::storage::Change;

/// `POST /vhosts/{vhost}/channels` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewChannel {
    name: String,
}

pub(super) async fn list(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let read = path.clone();
    let channels = api
        .read(move |state| Ok(state.vhost(&read)?.channels.clone()))
        .await?;
    Ok(Json(json!({ "vhost": path, "channels": channels })))
}

pub(super) async fn add(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
    Body(new): Body<NewChannel>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let path = extract::vhost(&vhost)?;
    let channel = ChannelName::parse(&new.name)?;
    api.change(Change::AddChannel {
        vhost: path.clone(),
        channel: channel.clone(),
    })
    .await?;
    let body = json!({ "vhost": path, "channel": channel });
    Ok((StatusCode::CREATED, Json(body)))
}

pub(super) async fn remove(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let channel = ChannelName::parse(&name)?;
    api.change(Change::DeleteChannel {
        vhost: path.clone(),
        channel: channel.clone(),
    })
    .await?;
    Ok(Json(json!({ "vhost": path, "deleted": channel })))
}

pub(super) async fn clear(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let read = path.clone();
    let count = api
        .read(move |state| Ok(state.vhost(&read)?.channels.len()))
        .await?;
    api.change(Change::ClearChannels {
        vhost: path.clone(),
    })
    .await?;
    Ok(Json(json!({ "vhost": path, "deleted": count })))
}
