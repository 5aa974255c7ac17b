//! The commands (the original webrocket-ctl's names, plus users) and the
//! admin request each one makes.

use clap::Subcommand;
use serde_json::{json, Value};
use webrocket::name::{ChannelName, NodeName, Permissions, ResourceName, UserName, VhostPath};

use crate::client::{CtlError, Method};
use crate::secret::read_secret;

/// One command. (`rename_all` names the commands as the original tool
/// did; flags with two words are named explicitly to keep them kebab-case.)
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum Command {
    /// List the vhosts with their numbers of users and channels.
    ListVhosts,
    /// Create a vhost and print its backend access token.
    AddVhost {
        /// Vhost path, e.g. /chat.
        path: VhostPath,
        /// Permissions of sessions that have not authenticated (default NONE).
        #[arg(long, value_name = "PERMS")]
        anonymous: Option<Permissions>,
        /// Subscribing to a missing channel does not create it (only MANAGE
        /// users create channels then).
        #[arg(long = "no-auto-create")]
        no_auto_create: bool,
    },
    /// Delete a vhost with its users and channels; its sessions are closed.
    DeleteVhost {
        /// Vhost path.
        path: VhostPath,
    },
    /// Show a vhost: its access token, options, users and channels.
    ShowVhost {
        /// Vhost path.
        path: VhostPath,
    },
    /// Delete every vhost.
    ClearVhosts,
    /// Replace a vhost's access token; the old one stops working.
    RegenerateVhostToken {
        /// Vhost path.
        path: VhostPath,
    },
    /// List a vhost's channels.
    ListChannels {
        /// Vhost path.
        vhost: VhostPath,
    },
    /// Create a channel.
    AddChannel {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        name: ChannelName,
    },
    /// Delete a channel; its subscribers are unsubscribed.
    DeleteChannel {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        name: ChannelName,
    },
    /// Set a channel's history and presence options (all of them: an
    /// option left out is off).
    SetChannelOptions {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        name: ChannelName,
        /// Keep the last N messages for recovery (0: no count bound).
        #[arg(long = "history-size", value_name = "N", default_value_t = 0)]
        history_size: u32,
        /// Keep messages this long, e.g. "10m" ("0s": no age bound).
        #[arg(long = "history-ttl", value_name = "DURATION", default_value = "0s")]
        history_ttl: String,
        /// Track the channel's members.
        #[arg(long)]
        presence: bool,
        /// Keep the history in a file too, so that it outlives a restart.
        #[arg(long)]
        durable: bool,
    },
    /// Show a channel's history and presence options.
    ChannelOptions {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        name: ChannelName,
    },
    /// Delete every channel of a vhost.
    ClearChannels {
        /// Vhost path.
        vhost: VhostPath,
    },
    /// List a vhost's MonoRail resources (served at /<vhost>/<resource>).
    ListResources {
        /// Vhost path.
        vhost: VhostPath,
    },
    /// Create a MonoRail resource.
    AddResource {
        /// Vhost path.
        vhost: VhostPath,
        /// Resource name.
        name: ResourceName,
        /// Where its items come from: store, backend or amqp.
        #[arg(long, default_value = "store")]
        source: String,
        /// The item property that identifies an item.
        #[arg(long = "id-field", default_value = "id")]
        id_field: String,
    },
    /// Delete a resource with its items; its sessions are closed.
    DeleteResource {
        /// Vhost path.
        vhost: VhostPath,
        /// Resource name.
        name: ResourceName,
    },
    /// List the items of a resource.
    ListItems {
        /// Vhost path.
        vhost: VhostPath,
        /// Resource name.
        resource: ResourceName,
    },
    /// Create or replace an item (a JSON object holding the id field);
    /// watchers get it at once.
    PutItem {
        /// Vhost path.
        vhost: VhostPath,
        /// Resource name.
        resource: ResourceName,
        /// The item, as JSON.
        item: String,
    },
    /// Remove an item by its id; watchers get a `remove`.
    RemoveItem {
        /// Vhost path.
        vhost: VhostPath,
        /// Resource name.
        resource: ResourceName,
        /// The item's id.
        id: String,
    },
    /// List a vhost's users and their permissions.
    ListUsers {
        /// Vhost path.
        vhost: VhostPath,
    },
    /// Create a user. The secret is prompted for without echo, or read
    /// from the first line of stdin when stdin is not a terminal; empty
    /// means the user needs no secret.
    AddUser {
        /// Vhost path.
        vhost: VhostPath,
        /// User name.
        name: UserName,
        /// Permissions, e.g. READ|WRITE (any of READ, WRITE, MANAGE; NONE; ALL).
        perms: Permissions,
        /// The secret on the command line. Discouraged: it ends up in the
        /// shell history and in `ps`.
        #[arg(long, value_name = "S", conflicts_with = "no_secret")]
        secret: Option<String>,
        /// The user needs no secret (do not prompt or read stdin).
        #[arg(long = "no-secret")]
        no_secret: bool,
    },
    /// Delete a user.
    DeleteUser {
        /// Vhost path.
        vhost: VhostPath,
        /// User name.
        name: UserName,
    },
    /// Replace a user's permissions.
    SetPermissions {
        /// Vhost path.
        vhost: VhostPath,
        /// User name.
        name: UserName,
        /// Permissions, e.g. READ|WRITE.
        perms: Permissions,
    },
    /// Replace a user's secret: prompted for without echo, or the first
    /// line of stdin when stdin is not a terminal.
    SetSecret {
        /// Vhost path.
        vhost: VhostPath,
        /// User name.
        name: UserName,
        /// The secret on the command line. Discouraged (shell history, `ps`).
        #[arg(long, value_name = "S", conflicts_with = "remove")]
        secret: Option<String>,
        /// Remove the secret: the user then needs none.
        #[arg(long)]
        remove: bool,
    },
    /// List the backend workers connected to a vhost on this node.
    ListWorkers {
        /// Vhost path.
        vhost: VhostPath,
    },
    /// List the nodes: name, state, uptime and addresses.
    ListNodes,
    /// Take a cluster node that is gone for good out of the members (it
    /// must be down; it joins again like a new node if it comes back).
    RemoveNode {
        /// Node name.
        name: NodeName,
    },
}

/// An admin request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path (names already validated, so only `/` in vhosts needs encoding).
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
}

fn request(method: Method, path: String, body: Option<Value>) -> Request {
    Request { method, path, body }
}

/// The URL form of a vhost: one segment, its slashes percent-encoded.
pub fn vhost_url(vhost: &VhostPath) -> String {
    format!("/vhosts/{}", vhost.as_str().replace('/', "%2F"))
}

/// `text` as one URL path segment: everything but `[A-Za-z0-9_.-]`
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Command {
    /// The request this command makes; reads a secret where one is needed.
    pub fn request(&self) -> Result<Request, CtlError> {
        use Command::*;
        use Method::*;
        Ok(match self {
            ListVhosts => request(Get, "/vhosts".into(), None),
            AddVhost {
                path,
                anonymous,
                no_auto_create,
            } => {
                let anonymous = anonymous.unwrap_or(Permissions::NONE).to_string();
                let body = json!({"path": path, "anonymous": anonymous, "auto_create_channels": !no_auto_create});
                request(Post, "/vhosts".into(), Some(body))
            }
            DeleteVhost { path } => request(Delete, vhost_url(path), None),
            ShowVhost { path } => request(Get, vhost_url(path), None),
            ClearVhosts => request(Delete, "/vhosts".into(), None),
            RegenerateVhostToken { path } => {
                request(Post, format!("{}/token", vhost_url(path)), None)
            }
            ListChannels { vhost } => request(Get, format!("{}/channels", vhost_url(vhost)), None),
            AddChannel { vhost, name } => {
                let body = json!({ "name": name });
                request(Post, format!("{}/channels", vhost_url(vhost)), Some(body))
            }
            DeleteChannel { vhost, name } => request(
                Delete,
                format!("{}/channels/{name}", vhost_url(vhost)),
                None,
            ),
            ClearChannels { vhost } => {
                request(Delete, format!("{}/channels", vhost_url(vhost)), None)
            }
            ListResources { vhost } => {
                request(Get, format!("{}/resources", vhost_url(vhost)), None)
            }
            AddResource {
                vhost,
                name,
                source,
                id_field,
            } => {
                let body = json!({ "name": name, "source": source, "id_field": id_field });
                request(Post, format!("{}/resources", vhost_url(vhost)), Some(body))
            }
            DeleteResource { vhost, name } => request(
                Delete,
                format!("{}/resources/{name}", vhost_url(vhost)),
                None,
            ),
            ListItems { vhost, resource } => request(
                Get,
                format!("{}/resources/{resource}/items", vhost_url(vhost)),
                None,
            ),
            PutItem {
                vhost,
                resource,
                item,
            } => {
                let item: Value = serde_json::from_str(item)
                    .map_err(|e| CtlError::Usage(format!("the item is not JSON: {e}")))?;
                let path = format!("{}/resources/{resource}/items", vhost_url(vhost));
                request(Put, path, Some(item))
            }
            RemoveItem {
                vhost,
                resource,
                id,
            } => request(
                Delete,
                format!(
                    "{}/resources/{resource}/items/{}",
                    vhost_url(vhost),
                    percent_encode(id)
                ),
                None,
            ),
            SetChannelOptions {
                vhost,
                name,
                history_size,
                history_ttl,
                presence,
                durable,
            } => {
                let body = json!({
                    "history_size": history_size,
                    "history_ttl": history_ttl,
                    "presence": presence,
                    "history_durable": durable,
                });
                let path = format!("{}/channels/{name}/options", vhost_url(vhost));
                request(Put, path, Some(body))
            }
            ChannelOptions { vhost, name } => request(
                Get,
                format!("{}/channels/{name}/options", vhost_url(vhost)),
                None,
            ),
            ListUsers { vhost } => request(Get, format!("{}/users", vhost_url(vhost)), None),
            AddUser {
                vhost,
                name,
                perms,
                secret,
                no_secret,
            } => {
                let secret = match (secret, no_secret) {
                    (_, true) => None,
                    (Some(secret), false) => Some(secret.clone()),
                    (None, false) => Some(read_secret()?),
                };
                let secret = secret.filter(|s| !s.is_empty());
                let body =
                    json!({"name": name, "permissions": perms.to_string(), "secret": secret});
                request(Post, format!("{}/users", vhost_url(vhost)), Some(body))
            }
            DeleteUser { vhost, name } => {
                request(Delete, format!("{}/users/{name}", vhost_url(vhost)), None)
            }
            SetPermissions { vhost, name, perms } => {
                let body = json!({ "permissions": perms.to_string() });
                let path = format!("{}/users/{name}/permissions", vhost_url(vhost));
                request(Put, path, Some(body))
            }
            SetSecret {
                vhost,
                name,
                secret,
                remove,
            } => {
                let secret = match (secret, remove) {
                    (_, true) => None,
                    (Some(secret), false) => Some(secret.clone()),
                    (None, false) => Some(read_secret()?),
                };
                if secret.as_deref() == Some("") {
                    return Err(CtlError::Usage(
                        "empty secret (use --remove to let the user in without one)".into(),
                    ));
                }
                let path = format!("{}/users/{name}/secret", vhost_url(vhost));
                request(Put, path, Some(json!({ "secret": secret })))
            }
            ListWorkers { vhost } => request(Get, format!("{}/workers", vhost_url(vhost)), None),
            ListNodes => request(Get, "/nodes".into(), None),
            RemoveNode { name } => request(Delete, format!("/nodes/{name}"), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(path: &str) -> VhostPath {
        VhostPath::parse(path).unwrap()
    }

    #[test]
    fn vhosts_are_one_url_segment() {
        assert_eq!(vhost_url(&vhost("/chat")), "/vhosts/%2Fchat");
        assert_eq!(vhost_url(&vhost("/a/b")), "/vhosts/%2Fa%2Fb");
    }

    #[test]
    fn commands_map_to_routes() {
        let req = Command::DeleteChannel {
            vhost: vhost("/chat"),
            name: ChannelName::parse("news").unwrap(),
        }
        .request()
        .unwrap();
        assert_eq!(
            req,
            request(Method::Delete, "/vhosts/%2Fchat/channels/news".into(), None)
        );
        let req = Command::AddVhost {
            path: vhost("/chat"),
            anonymous: Some(Permissions::READ),
            no_auto_create: true,
        }
        .request()
        .unwrap();
        assert_eq!(
            req.body,
            Some(json!({"path": "/chat", "anonymous": "READ", "auto_create_channels": false}))
        );
        let req = Command::RegenerateVhostToken { path: vhost("/x") }
            .request()
            .unwrap();
        assert_eq!(
            (req.method, req.path.as_str()),
            (Method::Post, "/vhosts/%2Fx/token")
        );
    }

    #[test]
    fn secrets_from_flags_and_removal() {
        let user = UserName::parse("alice").unwrap();
        let req = Command::AddUser {
            vhost: vhost("/chat"),
            name: user.clone(),
            perms: Permissions::READ | Permissions::WRITE,
            secret: Some("s".into()),
            no_secret: false,
        }
        .request()
        .unwrap();
        assert_eq!(
            req.body,
            Some(json!({"name": "alice", "permissions": "READ|WRITE", "secret": "s"}))
        );
        let req = Command::SetSecret {
            vhost: vhost("/chat"),
            name: user.clone(),
            secret: None,
            remove: true,
        }
        .request()
        .unwrap();
        assert_eq!(req.body, Some(json!({ "secret": null })));
        let empty = Command::SetSecret {
            vhost: vhost("/chat"),
            name: user,
            secret: Some(String::new()),
            remove: false,
        };
        assert_eq!(empty.request().unwrap_err().exit_code(), 2);
    }
}
