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
use crate::config::units;
use crate::name::ChannelName;
use crate::storage::{Change, ChannelOptions};

/// `PUT /vhosts/{vhost}/channels/{name}/options` body: the whole set of
/// options (a field left out is off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Options {
    #[serde(default)]
    history_size: u32,
    #[serde(default, with = "units::duration")]
    history_ttl: std::time::Duration,
    #[serde(default)]
    presence: bool,
    #[serde(default)]
    history_durable: bool,
}

fn options_json(options: &ChannelOptions) -> Value {
    let ttl = std::time::Duration::from_millis(options.history_ttl_ms);
    json!({
        "history_size": options.history_size,
        "history_ttl": units::format_duration(ttl),
        "presence": options.presence,
        "history_durable": options.history_durable,
    })
}

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

pub(super) async fn show_options(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let channel = ChannelName::parse(&name)?;
    let (read, which) = (path.clone(), channel.clone());
    let options = api
        .read(move |state| Ok(state.vhost(&read)?.options_of(&which)))
        .await?;
    Ok(Json(
        json!({ "vhost": path, "channel": channel, "options": options_json(&options) }),
    ))
}

pub(super) async fn set_options(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
    Body(body): Body<Options>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let channel = ChannelName::parse(&name)?;
    let options = ChannelOptions {
        history_size: body.history_size,
        history_ttl_ms: u64::try_from(body.history_ttl.as_millis()).unwrap_or(u64::MAX),
        presence: body.presence,
        history_durable: body.history_durable,
    };
    api.change(Change::SetChannelOptions {
        vhost: path.clone(),
        channel: Some(channel.clone()),
        options,
    })
    .await?;
    Ok(Json(
        json!({ "vhost": path, "channel": channel, "options": options_json(&options) }),
    ))
}
