//! The admin HTTP API (axum): what webrocket-ctl and webrocket-monitor talk
//! to. JSON in and out; every route needs the node cookie ([`auth`]).
//!
//! A vhost in a URL is one percent-encoded segment: `/vhosts/%2Fchat` (the
//! leading `/` may be left out: `/vhosts/chat`; `/a/b` is `a%2Fb`).
//!
//! | method | route | ctl command | success |
//! |---|---|---|---|
//! | GET | `/vhosts` | `list_vhosts` | 200 `{"vhosts": [{"path", "users", "channels"}]}` |
//! | POST | `/vhosts` `{"path", "anonymous"?, "auto_create_channels"?}` | `add_vhost` | 201 vhost |
//! | DELETE | `/vhosts` | `clear_vhosts` | 200 `{"deleted": n}` |
//! | GET | `/vhosts/{vhost}` | `show_vhost` | 200 vhost (with token, users, channels) |
//! | DELETE | `/vhosts/{vhost}` | `delete_vhost` | 200 `{"deleted": path}` |
//! | POST | `/vhosts/{vhost}/token` | `regenerate_vhost_token` | 200 `{"vhost", "token"}` |
//! | GET | `/vhosts/{vhost}/channels` | `list_channels` | 200 `{"vhost", "channels": [..]}` |
//! | POST | `/vhosts/{vhost}/channels` `{"name"}` | `add_channel` | 201 `{"vhost", "channel"}` |
//! | DELETE | `/vhosts/{vhost}/channels` | `clear_channels` | 200 `{"vhost", "deleted": n}` |
//! | DELETE | `/vhosts/{vhost}/channels/{name}` | `delete_channel` | 200 `{"vhost", "deleted": name}` |
//! | GET | `/vhosts/{vhost}/channels/{name}/options` | `channel_options` | 200 `{"vhost", "channel", "options"}` |
//! | PUT | `/vhosts/{vhost}/channels/{name}/options` `{"history_size"?, "history_ttl"?, "presence"?, "history_durable"?}` | `set_channel_options` | 200 `{"vhost", "channel", "options"}` |
//! | GET | `/vhosts/{vhost}/users` | `list_users` | 200 `{"vhost", "users": [user]}` |
//! | POST | `/vhosts/{vhost}/users` `{"name", "permissions", "secret"?}` | `add_user` | 201 user |
//! | DELETE | `/vhosts/{vhost}/users/{name}` | `delete_user` | 200 `{"vhost", "deleted": name}` |
//! | PUT | `/vhosts/{vhost}/users/{name}/permissions` `{"permissions"}` | `set_permissions` | 200 user |
//! | PUT | `/vhosts/{vhost}/users/{name}/secret` `{"secret": str or null}` | `set_secret` | 200 user |
//! | GET | `/vhosts/{vhost}/workers` | `list_workers` | 200 `{"vhost", "workers": [..], "note"?}` |
//! | GET | `/nodes` | `list_nodes` | 200 `{"nodes": [node]}` |
//! | DELETE | `/nodes/{name}` | `remove_node` | 200 `{"removed": name}`; 409 if up or this node |
//! | GET | `/stats` | (monitor) | 200 counters snapshot, see [`stats`] |
//! | GET | `/metrics` | (Prometheus) | 200 text format 0.0.4 |
//!
//! A user is `{"name", "permissions": ["READ", ..], "has_secret"}`; secrets
//! and their hashes never leave the server. Errors: [`error`].
//!
//! Changes go through [`Changes::change`], which makes them durable before
//! it returns, so a 2xx means the change survives a restart. Everything
//! that locks the durable state or hashes a secret runs on tokio's blocking
//! pool, never on the async workers.
//!
//! I/O: HTTP via axum/tokio; reads the counters files of the run directory.

pub mod auth;
mod channels;
pub mod error;
mod extract;
mod nodes;
pub mod prometheus;
mod resources;
pub mod stats;
mod users;
mod vhosts;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::cluster::{Cluster, NodeStatus};
use crate::config::Config;
pub use crate::exchange::{WorkerDirectory, WorkerInfo};
use crate::node::{Changes, DataPath};
use crate::storage::{Change, State};
use axum::routing::{delete, get, post, put};
use axum::Router;
use error::ApiError;

/// The node as the admin API sees it: what it reads and changes.
pub struct NodeView {
    /// The configuration the node started with.
    pub config: Config,
    /// The node cookie every request must carry.
    pub cookie: String,
    /// The durable state and the way it changes.
    pub changes: Arc<Changes>,
    /// The run directory (counters) and the WebSocket address.
    pub data_path: Arc<DataPath>,
    /// The cluster, if the node is in one (`list_nodes`, `remove_node`).
    pub cluster: Option<Cluster>,
    /// Where `list_workers` gets its answer; without one it answers an
    /// empty list with a note and `/stats` has no `exchange.*` counters.
    pub workers: Option<Arc<dyn WorkerDirectory>>,
}

impl NodeView {
    /// Every node of the cluster, this one first; empty when clustering
    /// is off.
    fn cluster_nodes(&self) -> Vec<NodeStatus> {
        self.cluster
            .as_ref()
            .map(Cluster::nodes)
            .unwrap_or_default()
    }
}

/// The admin API of one node, ready to [`serve`](Admin::serve).
pub struct Admin {
    node: Arc<NodeView>,
}

impl Admin {
    /// The API over `node`.
    pub fn new(node: NodeView) -> Self {
        Admin {
            node: Arc::new(node),
        }
    }

    /// The routes; `admin_addr` is what `list_nodes` reports.
    pub fn router(self, admin_addr: SocketAddr) -> Router {
        let body_limit = self.node.config.limits.max_admin_body_size;
        let state = ApiState {
            node: self.node,
            started: Instant::now(),
            admin_addr,
        };
        routes()
            .fallback(|| async { ApiError::not_found("no such admin route") })
            .method_not_allowed_fallback(|| async {
                ApiError::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "method not allowed on this admin route",
                )
            })
            .layer(axum::extract::DefaultBodyLimit::max(body_limit))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_cookie,
            ))
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests
    /// in flight finish. The caller binds (port 0 works).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router(listener.local_addr()?);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/vhosts",
            get(vhosts::list).post(vhosts::add).delete(vhosts::clear),
        )
        .route("/vhosts/{vhost}", get(vhosts::show).delete(vhosts::remove))
        .route("/vhosts/{vhost}/token", post(vhosts::regenerate_token))
        .route(
            "/vhosts/{vhost}/channels",
            get(channels::list)
                .post(channels::add)
                .delete(channels::clear),
        )
        .route("/vhosts/{vhost}/channels/{name}", delete(channels::remove))
        .route(
            "/vhosts/{vhost}/channels/{name}/options",
            get(channels::show_options).put(channels::set_options),
        )
        .route("/vhosts/{vhost}/users", get(users::list).post(users::add))
        .route("/vhosts/{vhost}/users/{name}", delete(users::remove))
        .route(
            "/vhosts/{vhost}/users/{name}/permissions",
            put(users::set_permissions),
        )
        .route(
            "/vhosts/{vhost}/users/{name}/secret",
            put(users::set_secret),
        )
        .route(
            "/vhosts/{vhost}/resources",
            get(resources::list).post(resources::add),
        )
        .route(
            "/vhosts/{vhost}/resources/{name}",
            delete(resources::remove),
        )
        .route(
            "/vhosts/{vhost}/resources/{name}/items",
            get(resources::items).put(resources::put_item),
        )
        .route(
            "/vhosts/{vhost}/resources/{name}/items/{id}",
            delete(resources::remove_item),
        )
        .route("/vhosts/{vhost}/workers", get(nodes::list_workers))
        .route("/nodes", get(nodes::list_nodes))
        .route("/nodes/{name}", delete(nodes::remove_node))
        .route("/stats", get(stats::stats))
        .route("/metrics", get(stats::metrics))
}

/// What every handler gets: the node.
#[derive(Clone)]
pub(crate) struct ApiState {
    node: Arc<NodeView>,
    started: Instant,
    admin_addr: SocketAddr,
}

impl ApiState {
    /// Runs `f` on the blocking pool: it may wait for the durable state's
    /// lock, which a change holds while it fsyncs.
    async fn blocking<R, F>(&self, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&NodeView) -> Result<R, ApiError> + Send + 'static,
    {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|error| ApiError::internal(format!("admin task failed: {error}")))?
    }

    /// Reads the durable state, on a cluster after a read barrier: the
    /// answer includes every change any node acknowledged before the
    /// request (503 `CLUSTER` when that cannot be known in time, rather
    /// than a stale 404).
    async fn read<R, F>(&self, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&State) -> Result<R, ApiError> + Send + 'static,
    {
        self.blocking(move |node| {
            node.changes.read_barrier()?;
            node.changes.with_state(f)
        })
        .await
    }

    /// Makes `change` durable and applies it everywhere.
    async fn change(&self, change: Change) -> Result<(), ApiError> {
        self.blocking(move |node| Ok(node.changes.change(change)?))
            .await
    }
}
