//! Committed changes: the copy of the state moves forward, watchers get
//! `item` / `remove`, sessions of deleted resources are closed.

use serde_json::{json, Value};

use super::{Before, Monorail};
use crate::broker::{Outlet, SessionKey};
use crate::name::{Permissions, ResourceName, VhostPath};
use crate::nukleus::monorail::message;
use crate::protocol::CloseReason;
use crate::storage::{item_id, Change, ResourceRecord, ResourceSource};

impl Monorail {
    /// A message of an `amqp` resource: an item to the watches it
    /// matches, or a removal to every watcher.
    pub fn feed(
        &mut self,
        vhost: &VhostPath,
        resource: &ResourceName,
        feed: crate::nukleus::monorail::amqp::Feed,
        out: &mut dyn Outlet,
    ) {
        use crate::nukleus::monorail::amqp::Feed;
        match feed {
            Feed::Item(item) => self.notify(vhost, resource, None, Some(&item), out),
            Feed::Remove(params) => {
                let before = Before {
                    item: None,
                    remove: params,
                };
                self.notify(vhost, resource, Some(&before), None, out)
            }
        }
    }

    /// A committed change: moves the copy of the state forward and tells
    /// the watchers and sessions it concerns.
    pub fn apply_change(&mut self, change: &Change, out: &mut dyn Outlet) {
        let before = match change {
            Change::PutItem {
                vhost,
                resource,
                item,
            } => self.before(vhost, resource, |r| item_id(item, &r.id_field)),
            Change::RemoveItem {
                vhost,
                resource,
                id,
            } => self.before(vhost, resource, |_| Some(id.clone())),
            _ => None,
        };
        if self.state.apply(change).is_err() {
            return;
        }
        match change {
            Change::PutItem {
                vhost,
                resource,
                item,
            } => self.notify(vhost, resource, before.as_ref(), Some(item), out),
            Change::RemoveItem {
                vhost, resource, ..
            } => self.notify(vhost, resource, before.as_ref(), None, out),
            Change::DeleteResource { vhost, name } => {
                self.close_where(|v, r| v == vhost && r == name, out)
            }
            Change::DeleteVhost { path } => self.close_where(|v, _| v == path, out),
            Change::ClearVhosts => self.close_where(|_, _| true, out),
            _ => {
                if let Some(vhost) = change.vhost() {
                    self.refresh_permissions(&vhost.clone());
                }
            }
        }
    }

    /// What a change to item `id` of a resource replaces or removes.
    pub(super) fn before(
        &self,
        vhost: &VhostPath,
        resource: &ResourceName,
        id: impl FnOnce(&ResourceRecord) -> Option<String>,
    ) -> Option<Before> {
        let record = self.state.vhosts.get(vhost)?.resources.get(resource)?;
        let id = id(record)?;
        let item = record.items.get(&id).cloned();
        // A `backend` resource keeps no items: its removals name the item
        // by its id (as text) and reach every watcher.
        let backend = record.source != ResourceSource::Store;
        if item.is_none() && !backend {
            return None;
        }
        let id = match &item {
            Some(item) => item.get(&record.id_field).cloned().unwrap_or(Value::Null),
            None => Value::String(id),
        };
        Some(Before {
            remove: json!({ &record.id_field: id }),
            item,
        })
    }

    /// One `item` to each watcher a new or changed item matches, or one
    /// `remove` to each watcher the old one matched and the new one does
    /// not (the params of `remove` name the item by its id field).
    pub(super) fn notify(
        &mut self,
        vhost: &VhostPath,
        resource: &ResourceName,
        before: Option<&Before>,
        after: Option<&Value>,
        out: &mut dyn Outlet,
    ) {
        let Some(keys) = self.by_resource.get(&(vhost.clone(), resource.clone())) else {
            return;
        };
        let item_message = after.map(message::item);
        let remove_message = before.map(|b| message::remove(&b.remove));
        let mut sends = Vec::new();
        for key in keys {
            let Some(session) = self.sessions.get(key) else {
                continue;
            };
            let watched = |item: &Value| session.watches.iter().any(|w| w.matches(item));
            let watching = !session.watches.is_empty();
            if after.is_some_and(watched) {
                sends.push((*key, item_message.as_deref()));
            } else if before.is_some_and(|b| b.item.as_ref().map_or(watching, watched)) {
                sends.push((*key, remove_message.as_deref()));
            }
        }
        for (key, bytes) in sends {
            if let Some(bytes) = bytes {
                if self.send(key, bytes, out) {
                    self.stats.notifications += 1;
                }
            }
        }
    }

    pub(super) fn close_where(
        &mut self,
        doomed: impl Fn(&VhostPath, &ResourceName) -> bool,
        out: &mut dyn Outlet,
    ) {
        let keys: Vec<SessionKey> = self
            .by_resource
            .iter()
            .filter(|((v, r), _)| doomed(v, r))
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        for key in keys {
            self.drop_session(key, CloseReason::VhostDeleted, out);
        }
    }

    /// After a user or vhost change: sessions take their user's (or the
    /// vhost's anonymous) permissions again; a deleted user's sessions
    /// become anonymous. Watches go when READ does.
    pub(super) fn refresh_permissions(&mut self, vhost: &VhostPath) {
        let Some(record) = self.state.vhosts.get(vhost) else {
            return;
        };
        for session in self.sessions.values_mut().filter(|s| &s.vhost == vhost) {
            let user = session.user.as_ref().and_then(|u| record.users.get(u));
            if user.is_none() {
                session.user = None;
            }
            session.permissions = user.map_or(record.anonymous, |u| u.permissions);
            if !session.permissions.contains(Permissions::READ) {
                session.watches.clear();
            }
        }
    }
}
