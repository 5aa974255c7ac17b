//! Worker and node routes. Workers come from the [`WorkerDirectory`] the
//! exchange plugs in; nodes are this node, followed by the cluster's peers
//! (with their state, heartbeat age and traffic) when it runs in a cluster.
//!
//! [`WorkerDirectory`]: super::WorkerDirectory

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, Segments};
use super::ApiState;

/// Said instead of workers when no exchange is plugged in.
pub const NO_EXCHANGE_NOTE: &str = "no backend exchange is running on this node";

pub(super) async fn list_workers(
    State(api): State<ApiState>,
    Segments(vhost): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    let path = extract::vhost(&vhost)?;
    let read = path.clone();
    api.read(move |state| state.vhost(&read).map(drop).map_err(ApiError::from))
        .await?;
    let body = match &api.node.workers {
        Some(directory) => {
            let workers = directory.workers(&path);
            json!({ "vhost": path, "workers": workers })
        }
        None => json!({ "vhost": path, "workers": [], "note": NO_EXCHANGE_NOTE }),
    };
    Ok(Json(body))
}

pub(super) async fn list_nodes(State(api): State<ApiState>) -> Json<Value> {
    let server = &api.node.config.server;
    let backend_addr = api
        .node
        .workers
        .as_ref()
        .and_then(|directory| directory.local_addr())
        .unwrap_or(server.backend_addr);
    let mine = api
        .node
        .cluster_nodes()
        .into_iter()
        .find(|n| n.state == "self" || n.state == "leaving");
    let node = json!({
        "name": server.node_name,
        "raft_role": mine.as_ref().map(|n| n.raft_role),
        "raft_lag": mine.as_ref().and_then(|n| n.raft_lag),
        "state": "up",
        "self": true,
        "uptime_seconds": api.started.elapsed().as_secs(),
        "websocket_addr": api.node.data_path.websocket_addr().to_string(),
        "backend_addr": backend_addr.to_string(),
        "admin_addr": api.admin_addr.to_string(),
        "cluster_addr": api.node.config.cluster.addr.map(|a| a.to_string()),
    });
    let mut nodes = vec![node];
    for peer in api.node.cluster_nodes() {
        if peer.state == "self" || peer.state == "leaving" {
            continue;
        }
        nodes.push(json!({
            "name": peer.name,
            "state": peer.state,
            "self": false,
            "cluster_addr": peer.addr,
            "last_heartbeat_ms": peer.last_heartbeat_ms,
            "messages_in": peer.messages_in,
            "messages_out": peer.messages_out,
            "bytes_in": peer.bytes_in,
            "bytes_out": peer.bytes_out,
            "raft_role": peer.raft_role,
            "raft_lag": peer.raft_lag,
        }));
    }
    Json(json!({ "nodes": nodes }))
}

/// `DELETE /nodes/{name}`: takes a node that is gone for good out of the
/// cluster's members, so it no longer counts towards the majority. Only a
/// node this node sees down or left may go; it joins again like a new node
/// should it come back.
pub(super) async fn remove_node(
    State(api): State<ApiState>,
    Segments(name): Segments<String>,
) -> Result<Json<Value>, ApiError> {
    use crate::cluster::raft::RemoveError;
    use axum::http::StatusCode;
    let cluster = api.node.cluster.as_ref();
    let Some(raft) = cluster.and_then(|c| c.raft()) else {
        return Err(ApiError::not_found("this node is not in a cluster"));
    };
    let conflict = |message: String| ApiError::new(StatusCode::CONFLICT, "CONFLICT", message);
    let nodes = api.node.cluster_nodes();
    match nodes.iter().find(|n| n.name == name) {
        Some(node) if node.state == "self" || node.state == "leaving" => {
            return Err(conflict(format!(
                "{name} is the node asked; remove it through another node once it is stopped"
            )))
        }
        Some(node) if node.state == "up" || node.state == "joining" => {
            return Err(conflict(format!("{name} is {}; stop it first", node.state)))
        }
        _ => {}
    }
    match raft.remove_member(&name).await {
        Ok(()) => Ok(Json(json!({ "removed": name }))),
        Err(RemoveError::NotMember(_)) => Err(ApiError::not_found(format!(
            "no node {name} in the cluster"
        ))),
        Err(error @ RemoveError::Up(_)) => Err(conflict(error.to_string())),
        Err(RemoveError::NotConfirmed(why)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "CLUSTER",
            format!("the cluster did not confirm the removal: {why}"),
        )),
    }
}
