//! MonoRail resources in the durable state: a resource of a vhost holds
//! its items (for the `store` source), keyed by the value of its id field.
//! Pure, like the rest of the state: the same changes in the same order
//! give the same items on every node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::{absent, present, Change, Entity, State, StateError, VhostRecord};
use crate::name::MAX_NAME_LEN;

pub use crate::config::ResourceSource;

/// One resource of a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRecord {
    /// Where its items come from.
    pub source: ResourceSource,
    /// The item property whose value identifies an item.
    pub id_field: String,
    /// Items by id, in id order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, Value>,
}

/// The id of `item` under `id_field`: a non-empty string of at most 255
/// bytes, or an integer (kept as its decimal text). `None` when `item` is
/// not an object or its id is missing or of another type.
pub fn item_id(item: &Value, id_field: &str) -> Option<String> {
    match item.as_object()?.get(id_field)? {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_NAME_LEN => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

impl State {
    /// [`State::check`] for the resource changes.
    pub(super) fn check_resource_change(&self, change: &Change) -> Result<(), StateError> {
        let resource = |vhost, name: &crate::name::ResourceName| {
            let record: &VhostRecord = self.vhost(vhost)?;
            record
                .resources
                .get(name)
                .ok_or_else(|| StateError::NotFound(Entity::Resource(vhost.clone(), name.clone())))
        };
        match change {
            Change::AddResource {
                vhost,
                name,
                id_field,
                ..
            } => {
                if id_field.is_empty() || id_field.len() > MAX_NAME_LEN {
                    return Err(StateError::Invalid(
                        "id_field must be 1 to 255 bytes".into(),
                    ));
                }
                let exists = self.vhost(vhost)?.resources.contains_key(name);
                absent(exists, || Entity::Resource(vhost.clone(), name.clone()))
            }
            Change::DeleteResource { vhost, name } => resource(vhost, name).map(drop),
            Change::PutItem {
                vhost,
                resource: name,
                item,
            } => {
                let record = resource(vhost, name)?;
                item_id(item, &record.id_field).map(drop).ok_or_else(|| {
                    StateError::Invalid(format!(
                        "an item must be a JSON object whose {:?} is a string or an integer",
                        record.id_field
                    ))
                })
            }
            Change::RemoveItem {
                vhost,
                resource: name,
                id,
            } => {
                let record = resource(vhost, name)?;
                let exists =
                    record.source != ResourceSource::Store || record.items.contains_key(id);
                present(exists, || {
                    Entity::Item(vhost.clone(), name.clone(), id.clone())
                })
            }
            _ => Ok(()),
        }
    }
}

/// Applies a resource change [`State::check`] accepted to its vhost.
pub(super) fn apply(vhost: &mut VhostRecord, change: &Change) {
    match change {
        Change::AddResource {
            name,
            source,
            id_field,
            ..
        } => {
            let record = ResourceRecord {
                source: *source,
                id_field: id_field.clone(),
                items: BTreeMap::new(),
            };
            vhost.resources.insert(name.clone(), record);
        }
        Change::DeleteResource { name, .. } => {
            vhost.resources.remove(name);
        }
        Change::PutItem { resource, item, .. } => {
            let stored = vhost.resources.get_mut(resource);
            // Only a `store` keeps items: elsewhere PI only notifies.
            if let Some(record) = stored.filter(|r| r.source == ResourceSource::Store) {
                if let Some(id) = item_id(item, &record.id_field) {
                    record.items.insert(id, item.clone());
                }
            }
        }
        Change::RemoveItem { resource, id, .. } => {
            if let Some(record) = vhost.resources.get_mut(resource) {
                record.items.remove(id);
            }
        }
        _ => {}
    }
}

/// The changes that turn `before`'s resources into `after`'s (a snapshot
/// replacing the state): deleted resources, then new or redefined ones
/// with their items, then item by item.
pub(super) fn changes(
    path: &crate::name::VhostPath,
    before: &VhostRecord,
    after: &VhostRecord,
    out: &mut Vec<Change>,
) {
    for (name, old) in &before.resources {
        let redefined = after
            .resources
            .get(name)
            .is_none_or(|new| (new.source, &new.id_field) != (old.source, &old.id_field));
        if redefined {
            out.push(Change::DeleteResource {
                vhost: path.clone(),
                name: name.clone(),
            });
        }
    }
    let empty = BTreeMap::new();
    for (name, new) in &after.resources {
        let old_items = match before.resources.get(name) {
            Some(old) if (new.source, &new.id_field) == (old.source, &old.id_field) => &old.items,
            _ => {
                out.push(Change::AddResource {
                    vhost: path.clone(),
                    name: name.clone(),
                    source: new.source,
                    id_field: new.id_field.clone(),
                });
                &empty
            }
        };
        for id in old_items.keys().filter(|id| !new.items.contains_key(*id)) {
            out.push(Change::RemoveItem {
                vhost: path.clone(),
                resource: name.clone(),
                id: id.clone(),
            });
        }
        for (id, item) in &new.items {
            if old_items.get(id) != Some(item) {
                out.push(Change::PutItem {
                    vhost: path.clone(),
                    resource: name.clone(),
                    item: item.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{AccessToken, Permissions, ResourceName, VhostPath};
    use serde_json::json;

    fn state() -> (State, VhostPath, ResourceName) {
        let vhost = VhostPath::parse("/v").unwrap();
        let name = ResourceName::parse("nodes").unwrap();
        let mut state = State::default();
        let add = [
            Change::AddVhost {
                path: vhost.clone(),
                token: AccessToken::generate(),
                anonymous: Permissions::READ,
                auto_create_channels: true,
            },
            Change::AddResource {
                vhost: vhost.clone(),
                name: name.clone(),
                source: ResourceSource::Store,
                id_field: "id".into(),
            },
        ];
        for change in &add {
            state.apply(change).unwrap();
        }
        (state, vhost, name)
    }

    #[test]
    fn items_are_kept_by_id_and_removed() {
        let (mut state, vhost, resource) = state();
        let put = |item| Change::PutItem {
            vhost: vhost.clone(),
            resource: resource.clone(),
            item,
        };
        state.apply(&put(json!({"id": 1, "a": 1}))).unwrap();
        state.apply(&put(json!({"id": 1, "a": 2}))).unwrap();
        state.apply(&put(json!({"id": "x"}))).unwrap();
        let items = &state.vhosts[&vhost].resources[&resource].items;
        assert_eq!(items.len(), 2);
        assert_eq!(items["1"], json!({"id": 1, "a": 2}));
        let missing = put(json!({"a": 1}));
        assert!(matches!(state.apply(&missing), Err(StateError::Invalid(_))));
        let remove = |id: &str| Change::RemoveItem {
            vhost: vhost.clone(),
            resource: resource.clone(),
            id: id.into(),
        };
        state.apply(&remove("1")).unwrap();
        assert!(matches!(
            state.apply(&remove("1")),
            Err(StateError::NotFound(Entity::Item(..)))
        ));
    }

    #[test]
    fn changes_between_states_rebuild_the_items() {
        let (before, vhost, resource) = state();
        let mut after = before.clone();
        after
            .apply(&Change::PutItem {
                vhost: vhost.clone(),
                resource: resource.clone(),
                item: json!({"id": "a"}),
            })
            .unwrap();
        let mut replayed = before.clone();
        for change in before.changes_to(&after) {
            replayed.apply(&change).unwrap();
        }
        assert_eq!(replayed, after);
    }

    #[test]
    fn changes_serialize_with_their_op_tag() {
        let change = Change::RemoveItem {
            vhost: VhostPath::parse("/v").unwrap(),
            resource: ResourceName::parse("r").unwrap(),
            id: "7".into(),
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(
            text,
            r#"{"op":"remove_item","vhost":"/v","resource":"r","id":"7"}"#
        );
    }
}
