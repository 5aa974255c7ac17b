//! Plain-text output for people. Scripts use `--json`, which prints the
//! server's answer as it is.

use std::fmt::Write;

use serde_json::Value;

use crate::commands::Command;

/// The text `command` prints for the server's `answer`, ending in a newline.
pub fn human(command: &Command, answer: &Value) -> String {
    use Command::*;
    let mut out = String::new();
    let s = |key: &str| text(&answer[key]);
    match command {
        ListVhosts => list(&mut out, &answer["vhosts"], "no vhosts", |v| {
            format!(
                "{}  users: {}  channels: {}",
                text(&v["path"]),
                v["users"],
                v["channels"]
            )
        }),
        AddVhost { .. } => {
            let _ = writeln!(out, "vhost {} added", s("path"));
            let _ = writeln!(out, "token: {}", s("token"));
        }
        ShowVhost { .. } => show_vhost(&mut out, answer),
        DeleteVhost { .. } => line(&mut out, format!("vhost {} deleted", s("deleted"))),
        ClearVhosts => line(&mut out, format!("{} vhost(s) deleted", answer["deleted"])),
        RegenerateVhostToken { .. } => line(&mut out, format!("token: {}", s("token"))),
        ListChannels { .. } => list(&mut out, &answer["channels"], "no channels", text),
        AddChannel { .. } => line(
            &mut out,
            format!("channel {} added to {}", s("channel"), s("vhost")),
        ),
        DeleteChannel { .. } => line(
            &mut out,
            format!("channel {} deleted from {}", s("deleted"), s("vhost")),
        ),
        ClearChannels { .. } => line(
            &mut out,
            format!(
                "{} channel(s) deleted from {}",
                answer["deleted"],
                s("vhost")
            ),
        ),
        ListResources { .. } => list(&mut out, &answer["resources"], "no resources", |r| {
            format!(
                "{}  source: {}  id_field: {}  items: {}",
                text(&r["name"]),
                text(&r["source"]),
                text(&r["id_field"]),
                r["items"]
            )
        }),
        AddResource { .. } => line(
            &mut out,
            format!("resource {} added to {}", s("resource"), s("vhost")),
        ),
        DeleteResource { .. } => line(
            &mut out,
            format!("resource {} deleted from {}", s("deleted"), s("vhost")),
        ),
        ListItems { .. } => list(&mut out, &answer["items"], "no items", Value::to_string),
        PutItem { .. } => line(&mut out, format!("item put: {}", answer["item"])),
        RemoveItem { .. } => line(&mut out, format!("item {} removed", s("removed"))),
        SetChannelOptions { .. } | ChannelOptions { .. } => {
            let o = &answer["options"];
            line(
                &mut out,
                format!(
                    "channel {} in {}: history_size {} history_ttl {} presence {} history_durable {}",
                    s("channel"),
                    s("vhost"),
                    o["history_size"],
                    o["history_ttl"].as_str().unwrap_or("?"),
                    o["presence"],
                    // An older server does not say.
                    o["history_durable"].as_bool().unwrap_or(false)
                ),
            )
        }
        ListUsers { .. } => list(&mut out, &answer["users"], "no users", user),
        AddUser { .. } => line(&mut out, format!("user added: {}", user(answer))),
        DeleteUser { .. } => line(
            &mut out,
            format!("user {} deleted from {}", s("deleted"), s("vhost")),
        ),
        SetPermissions { .. } | SetSecret { .. } => {
            line(&mut out, format!("user updated: {}", user(answer)))
        }
        ListWorkers { .. } => {
            let empty = match answer["note"].as_str() {
                Some(note) => format!("no workers ({note})"),
                None => "no workers".into(),
            };
            list(&mut out, &answer["workers"], &empty, worker);
        }
        ListNodes => list(&mut out, &answer["nodes"], "no nodes", node),
        RemoveNode { .. } => line(&mut out, format!("node {} removed", s("removed"))),
    }
    out
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

/// One line per element of `items`, or `empty` when there is none.
fn list(out: &mut String, items: &Value, empty: &str, one: impl Fn(&Value) -> String) {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        line(out, empty.to_owned());
    }
    for item in items {
        line(out, one(item));
    }
}

/// A string as is; anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `["READ", "WRITE"]` as `READ|WRITE`; the empty set as `NONE`.
fn permissions(value: &Value) -> String {
    let words: Vec<String> = value
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if words.is_empty() {
        "NONE".into()
    } else {
        words.join("|")
    }
}

fn user(value: &Value) -> String {
    let secret = if value["has_secret"] == Value::Bool(true) {
        "secret"
    } else {
        "no secret"
    };
    format!(
        "{}  {}  ({secret})",
        text(&value["name"]),
        permissions(&value["permissions"])
    )
}

fn worker(value: &Value) -> String {
    format!(
        "{}  ready {}ms  idle {}ms  triggers {}",
        text(&value["identity"]),
        value["ready_for_ms"],
        value["idle_ms"],
        value["triggers"]
    )
}

fn node(value: &Value) -> String {
    if value["self"] == Value::Bool(false) {
        // A cluster peer: its state, heartbeat age and traffic.
        let heartbeat = match value["last_heartbeat_ms"].as_u64() {
            Some(ms) => format!("{ms}ms ago"),
            None => "never".to_string(),
        };
        return format!(
            "{}  {}  heartbeat {}  cluster={} in={} out={} messages{}",
            text(&value["name"]),
            text(&value["state"]),
            heartbeat,
            text(&value["cluster_addr"]),
            value["messages_in"],
            value["messages_out"],
            raft(value),
        );
    }
    let mut line = format!(
        "{}  {}  uptime {}s  websocket={} backend={} admin={}",
        text(&value["name"]),
        text(&value["state"]),
        value["uptime_seconds"],
        text(&value["websocket_addr"]),
        text(&value["backend_addr"]),
        text(&value["admin_addr"]),
    );
    if let Some(cluster) = value["cluster_addr"].as_str() {
        let _ = write!(line, " cluster={cluster}{}", raft(value));
    }
    line
}

/// `  raft <role> lag <n>`: the node's part in the replicated log and how
/// many entries it is behind (the lag of a peer is known on the leader).
fn raft(value: &Value) -> String {
    let Some(role) = value["raft_role"].as_str() else {
        return String::new();
    };
    match value["raft_lag"].as_u64() {
        Some(lag) => format!("  raft {role} lag {lag}"),
        None => format!("  raft {role}"),
    }
}

fn show_vhost(out: &mut String, vhost: &Value) {
    let yes_no = |v: &Value| if v == &Value::Bool(true) { "yes" } else { "no" };
    let channels: Vec<String> = vhost["channels"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "vhost: {}", text(&vhost["path"]));
    let _ = writeln!(out, "token: {}", text(&vhost["token"]));
    let _ = writeln!(out, "anonymous: {}", permissions(&vhost["anonymous"]));
    let _ = writeln!(
        out,
        "auto_create_channels: {}",
        yes_no(&vhost["auto_create_channels"])
    );
    let _ = writeln!(
        out,
        "channels: {}",
        if channels.is_empty() {
            "none".into()
        } else {
            channels.join(", ")
        }
    );
    let users = vhost["users"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if users.is_empty() {
        let _ = writeln!(out, "users: none");
    } else {
        let _ = writeln!(out, "users:");
        for u in users {
            let _ = writeln!(out, "  {}", user(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use webrocket::name::VhostPath;

    fn vhost() -> VhostPath {
        VhostPath::parse("/chat").unwrap()
    }

    #[test]
    fn show_vhost_is_readable() {
        let answer = json!({
            "path": "/chat", "token": "ab", "anonymous": [], "auto_create_channels": true,
            "channels": ["a", "b"],
            "users": [{"name": "alice", "permissions": ["READ", "WRITE"], "has_secret": true}]
        });
        let text = human(&Command::ShowVhost { path: vhost() }, &answer);
        assert_eq!(
            text,
            "vhost: /chat\ntoken: ab\nanonymous: NONE\nauto_create_channels: yes\n\
             channels: a, b\nusers:\n  alice  READ|WRITE  (secret)\n"
        );
    }

    #[test]
    fn lists_say_when_they_are_empty() {
        let answer = json!({"vhosts": []});
        assert_eq!(human(&Command::ListVhosts, &answer), "no vhosts\n");
        let answer = json!({"vhost": "/chat", "workers": [], "note": "no exchange"});
        let text = human(&Command::ListWorkers { vhost: vhost() }, &answer);
        assert_eq!(text, "no workers (no exchange)\n");
        let answer = json!({"vhosts": [{"path": "/chat", "users": 1, "channels": 2}]});
        assert_eq!(
            human(&Command::ListVhosts, &answer),
            "/chat  users: 1  channels: 2\n"
        );
    }
}
