//! MonoRail resource routes: list, add, delete a vhost's resources, and
//! list, put, remove the items of a `store` resource. Every write is a
//! durable (on a cluster: replicated) change, like channels.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, Body, Segments};
use super::ApiState;
use crate::name::ResourceName;
use crate::storage::{Change, Entity, ResourceSource, StateError};

/// `POST /vhosts/{vhost}/resources` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewResource {
    name: String,
    #[serde(default)]
    source: ResourceSource,
    #[serde(default = "default_id_field")]
    id_field: String,
}

fn default_id_field() -> String {
    "id".to_owned()
}

fn resource_name(name: &str) -> Result<ResourceName, ApiError> {
    ResourceName::parse(name).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_RESOURCE_NAME",
            e.to_string(),
        )
    })
}

pub(super) async fn list(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let read = path.clone();
    let resources = api
        .read(move |state| {
            let rows: Vec<Value> = state
                .vhost(&read)?
                .resources
                .iter()
                .map(|(name, r)| {
                    json!({"name": name, "source": r.source, "id_field": r.id_field,
                           "items": r.items.len()})
                })
                .collect();
            Ok(rows)
        })
        .await?;
    Ok(Json(json!({ "vhost": path, "resources": resources })))
}

pub(super) async fn add(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
    Body(new): Body<NewResource>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let path = extract::vhost(&vhost)?;
    let name = resource_name(&new.name)?;
    api.change(Change::AddResource {
        vhost: path.clone(),
        name: name.clone(),
        source: new.source,
        id_field: new.id_field.clone(),
    })
    .await?;
    let body = json!({ "vhost": path, "resource": name, "source": new.source,
                       "id_field": new.id_field });
    Ok((StatusCode::CREATED, Json(body)))
}

pub(super) async fn remove(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let name = resource_name(&name)?;
    api.change(Change::DeleteResource {
        vhost: path.clone(),
        name: name.clone(),
    })
    .await?;
    Ok(Json(json!({ "vhost": path, "deleted": name })))
}

pub(super) async fn items(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let name = resource_name(&name)?;
    let (read, wanted) = (path.clone(), name.clone());
    let items = api
        .read(move |state| {
            let record = state.vhost(&read)?.resources.get(&wanted).ok_or_else(|| {
                StateError::NotFound(Entity::Resource(read.clone(), wanted.clone()))
            })?;
            Ok(record.items.values().cloned().collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(
        json!({ "vhost": path, "resource": name, "items": items }),
    ))
}

pub(super) async fn put_item(
    State(api): State<ApiState>,
    Segments((vhost, name)): Segments<(String, String)>,
    Body(item): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let name = resource_name(&name)?;
    api.change(Change::PutItem {
        vhost: path.clone(),
        resource: name.clone(),
        item: item.clone(),
    })
    .await?;
    Ok(Json(
        json!({ "vhost": path, "resource": name, "item": item }),
    ))
}

pub(super) async fn remove_item(
    State(api): State<ApiState>,
    Segments((vhost, name, id)): Segments<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let name = resource_name(&name)?;
    api.change(Change::RemoveItem {
        vhost: path.clone(),
        resource: name.clone(),
        id: id.clone(),
    })
    .await?;
    Ok(Json(
        json!({ "vhost": path, "resource": name, "removed": id }),
    ))
}
