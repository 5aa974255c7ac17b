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

use super::frames::FrameError;
use crate::name::{ResourceName, SessionId, VhostPath};
use crate::node::{ChangeError, Changes, Inbox};
use crate::nukleus::monorail::Task;
use crate::protocol::backend::{code, BackendReply, ServerBroadcast};
use crate::storage::{Change, StateError, StorageError};

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
        /// The node that asked (`<n>@<node>` in the `TR`, on a cluster).
        node: Option<String>,
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
            let (number, node) = match id.split_once('@') {
                Some((number, node)) if !node.is_empty() => (number, Some(node.to_owned())),
                Some(_) => return Err(FrameError::InvalidJson),
                None => (id, None),
            };
            let request = number.parse().map_err(|_| FrameError::InvalidJson)?;
            let payload = args[1].as_ref().to_vec();
            Ok(ResourceRequest::Answer {
                request,
                node,
                payload,
            })
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
    changes: &Arc<Changes>,
    inbox: &Inbox,
    vhost: VhostPath,
    request: ResourceRequest,
    reply: BackendReply,
) {
    let change = match request {
        ResourceRequest::Answer {
            request,
            node,
            payload,
        } => {
            // Asked by another node: the answer goes there (the worker is
            // told OK once it is passed on, or 404 if that node is gone).
            if let (Some(node), Ok(text)) = (&node, std::str::from_utf8(&payload)) {
                let answer = ServerBroadcast::Answer {
                    vhost: vhost.clone(),
                    request,
                    payload: text.to_owned(),
                };
                match inbox.send_to(node, &answer) {
                    Some(true) => return reply(Ok(())),
                    Some(false) => return reply(Err(code::NOT_FOUND)),
                    None => {}
                }
            }
            inbox.to_monorail(Task::Answer {
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
            // The payload was checked to be a JSON object, so UTF-8.
            if let Ok(text) = std::str::from_utf8(&payload) {
                inbox.relay(&ServerBroadcast::Resource {
                    vhost: vhost.clone(),
                    resource: resource.clone(),
                    payload: text.to_owned(),
                    skip: skip.clone(),
                });
            }
            inbox.to_monorail(Task::Broadcast {
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
    let changes = Arc::clone(changes);
    let run = move || reply(changes.change(change).map_err(|e| backend_code(&e)));
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(run)),
        Err(_) => run(),
    }
}

/// The `ER` code of a failed item change.
fn backend_code(error: &ChangeError) -> u16 {
    match error {
        ChangeError::Storage(StorageError::State(StateError::NotFound(_))) => code::NOT_FOUND,
        ChangeError::Storage(StorageError::State(_)) => code::BAD_REQUEST,
        ChangeError::Limit(_) => code::TOO_LARGE,
        _ => code::INTERNAL_ERROR,
    }
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
