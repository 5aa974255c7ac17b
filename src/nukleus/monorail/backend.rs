//! Backend commands for MonoRail resources (ZeroMQ, beside `BC` / `DS`):
//!
//! | command | arguments | does |
//! |---|---|---|
//! | `PI` | `<resource> <json>` | puts an item (a JSON object with the resource's id field) |
//! | `RI` | `<resource> <id>` | removes the item with that id |
//! | `RA` | `<request> <json>` | a worker's answer to a `backend` resource's request (below) |
//! | `RB` | `<resource> <json> <skip>` | sends the JSON object (it needs a `handler`) to every session of the resource (empty resource frame: of every resource of the vhost) but those whose session ids the `skip` JSON array lists (empty frame: none) |
//!
//! A `backend` resource's `query`, `all`, `get` and `watch` reach a ready
//! worker of the vhost as a trigger, `TR {":resource": {"data": {"request":
//! "<id>", "resource", "handler", "params"}, "sid", "user"}}`; the worker
//! answers `RA <id> <json>` with the message for the session (`list`,
//! `item`, `remove` or `error`), within `limits.backend_request_timeout`.
//! On a `backend` resource `PI` / `RI` keep nothing: they only notify
//! watchers (on every node: they are replicated changes all the same).
//!
//! Replies: `OK`, or `ER` 400 (bad arguments or item), 404 (no such
//! resource or item), 413 (item over `limits.max_item_size`, or the
//! resource holds `limits.max_items_per_resource` items), 597 (not
//! durable, or the cluster did not confirm it). `PI` and `RI` are durable
//! changes (on a cluster: raft entries) and answered once applied here.

use std::sync::Arc;

use serde_json::Value;

use super::Task;
use crate::exchange::frames::FrameError;
use crate::limits::Limits;
use crate::name::{ResourceName, SessionId, VhostPath};
use crate::server::{ChangeError, Handle};
use crate::storage::{item_id, Change, State, StateError, StorageError};

/// A decoded `PI`, `RI` or `RB`.
#[derive(Debug)]
pub enum ResourceRequest {
    /// `PI resource json`.
    PutItem {
        /// The resource.
        resource: ResourceName,
        /// The item.
        item: Value,
    },
    /// `RI resource id`.
    RemoveItem {
        /// The resource.
        resource: ResourceName,
        /// The item's id.
        id: String,
    },
    /// `RA request json`.
    Answer {
        /// The request id of the `TR`.
        request: u64,
        /// The message for the session.
        payload: Vec<u8>,
    },
    /// `RB resource json skip`.
    Broadcast {
        /// `None`: every resource of the vhost.
        resource: Option<ResourceName>,
        /// The message (a JSON object with a `handler` string).
        payload: Vec<u8>,
        /// Sessions that do not get it.
        skip: Vec<SessionId>,
    },
}

/// Decodes the arguments of `PI`, `RI` or `RB`; `None` for other commands.
pub fn decode<F: AsRef<[u8]>>(
    command: &[u8],
    args: &[F],
) -> Option<Result<ResourceRequest, FrameError>> {
    let (name, expected) = match command {
        b"PI" => ("PI", 2),
        b"RI" => ("RI", 2),
        b"RB" => ("RB", 3),
        b"RA" => ("RA", 2),
        _ => return None,
    };
    if args.len() != expected {
        return Some(Err(FrameError::Arity {
            command: name,
            expected,
            got: args.len(),
        }));
    }
    let text = |index: usize| {
        std::str::from_utf8(args[index].as_ref()).map_err(|_| FrameError::NotUtf8 {
            command: name,
            index,
        })
    };
    let resource =
        |index| ResourceName::parse(text(index)?).map_err(|_| FrameError::InvalidResource);
    let request = match command {
        b"PI" => serde_json::from_slice(args[1].as_ref())
            .map_err(|_| FrameError::InvalidJson)
            .and_then(|item| {
                Ok(ResourceRequest::PutItem {
                    resource: resource(0)?,
                    item,
                })
            }),
        b"RI" => text(1).and_then(|id| {
            Ok(ResourceRequest::RemoveItem {
                resource: resource(0)?,
                id: id.to_owned(),
            })
        }),
        b"RA" => text(0).and_then(|id| {
            let request = id.parse().map_err(|_| FrameError::InvalidJson)?;
            let payload = args[1].as_ref().to_vec();
            Ok(ResourceRequest::Answer { request, payload })
        }),
        _ => broadcast(args, text(0), resource),
    };
    Some(request)
}

fn broadcast<F: AsRef<[u8]>>(
    args: &[F],
    first: Result<&str, FrameError>,
    resource: impl Fn(usize) -> Result<ResourceName, FrameError>,
) -> Result<ResourceRequest, FrameError> {
    let resource = if first?.is_empty() {
        None
    } else {
        Some(resource(0)?)
    };
    let payload = args[1].as_ref();
    let message: Value = serde_json::from_slice(payload).map_err(|_| FrameError::InvalidJson)?;
    if !message.get("handler").is_some_and(Value::is_string) {
        return Err(FrameError::InvalidJson);
    }
    let skip = args[2].as_ref();
    let skip = if skip.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice::<Vec<SessionId>>(skip).map_err(|_| FrameError::InvalidSession)?
    };
    Ok(ResourceRequest::Broadcast {
        resource,
        payload: payload.to_vec(),
        skip,
    })
}

/// Does a backend's request for `vhost`; `reply` gets the outcome (from
/// another thread). `PI` / `RI` block on durable storage or the cluster,
/// so they run on the runtime's blocking pool.
pub fn dispatch(
    handle: &Arc<Handle>,
    vhost: VhostPath,
    request: ResourceRequest,
    reply: super::Reply,
) {
    let change = match request {
        ResourceRequest::Answer { request, payload } => {
            handle.monorail_task(Task::Answer {
                vhost,
                request,
                payload,
                reply,
            });
            return;
        }
        ResourceRequest::Broadcast {
            resource,
            payload,
            skip,
        } => {
            handle.monorail_task(Task::Broadcast {
                vhost,
                resource,
                payload,
                skip,
                reply,
            });
            return;
        }
        ResourceRequest::PutItem { resource, item } => Change::PutItem {
            vhost,
            resource,
            item,
        },
        ResourceRequest::RemoveItem { resource, id } => Change::RemoveItem {
            vhost,
            resource,
            id,
        },
    };
    let handle = Arc::clone(handle);
    let run = move || reply(handle.change(change).map_err(|e| backend_code(&e)));
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(run)),
        Err(_) => run(),
    }
}

/// The `ER` code of a failed item change.
fn backend_code(error: &ChangeError) -> u16 {
    match error {
        ChangeError::Storage(StorageError::State(StateError::NotFound(_))) => 404,
        ChangeError::Storage(StorageError::State(_)) => 400,
        ChangeError::Limit(_) => 413,
        _ => 597,
    }
}

/// The item limits of a `PutItem` against `state` (checked by the node
/// asked, like the other count limits): its size, and the item count of
/// its resource when it adds an item.
pub fn item_within_limits(limits: &Limits, state: &State, change: &Change) -> Result<(), String> {
    let Change::PutItem {
        vhost,
        resource,
        item,
    } = change
    else {
        return Ok(());
    };
    let size = serde_json::to_string(item).map_or(usize::MAX, |text| text.len());
    if size > limits.max_item_size {
        return Err(format!(
            "the item is {size} bytes, over limits.max_item_size ({})",
            limits.max_item_size
        ));
    }
    let record = state
        .vhosts
        .get(vhost)
        .and_then(|v| v.resources.get(resource));
    let Some(record) = record else {
        return Ok(());
    };
    let new = item_id(item, &record.id_field).is_some_and(|id| !record.items.contains_key(&id));
    if new && record.items.len() >= limits.max_items_per_resource {
        return Err(format!(
            "resource {resource} reached its limit of {} items",
            limits.max_items_per_resource
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(command: &[u8], args: &[&[u8]]) -> Result<ResourceRequest, FrameError> {
        decode(command, args).expect("a resource command")
    }

    #[test]
    fn decodes_put_remove_and_broadcast() {
        assert!(matches!(
            decoded(b"PI", &[b"nodes", br#"{"id":1}"#]),
            Ok(ResourceRequest::PutItem { .. })
        ));
        assert!(matches!(
            decoded(b"RI", &[b"nodes", b"1"]),
            Ok(ResourceRequest::RemoveItem { .. })
        ));
        let sid = SessionId::generate();
        let skip = format!("[\"{sid}\"]");
        match decoded(b"RB", &[b"", br#"{"handler":"x"}"#, skip.as_bytes()]) {
            Ok(ResourceRequest::Broadcast { resource, skip, .. }) => {
                assert_eq!(resource, None);
                assert_eq!(skip, vec![sid]);
            }
            other => panic!("{other:?}"),
        }
        assert!(decode(b"BC", &[b"x"]).is_none());
    }

    #[test]
    fn bad_arguments_are_refused_with_their_codes() {
        let code = |command: &[u8], args: &[&[u8]]| decoded(command, args).unwrap_err().code();
        assert_eq!(code(b"PI", &[b"nodes"]), 400);
        assert_eq!(code(b"PI", &[b"no/des", b"{}"]), 400);
        assert_eq!(code(b"PI", &[b"nodes", b"{"]), 400);
        assert_eq!(code(b"RB", &[b"nodes", br#"{"no":1}"#, b""]), 400);
        assert_eq!(code(b"RB", &[b"nodes", br#"{"handler":"x"}"#, b"[1]"]), 404);
    }
}
