//! The man pages document what the code defines: every client error id,
//! every close reason, every config key, every server flag; and each page
//! renders without a warning.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use webrocket::config::{Config, ServerArgs, DEFAULT_CONFIG_TOML};
use webrocket::limits::Limits;
use webrocket::protocol::{CloseReason, ErrorId};

const PAGES: [&str; 5] = [
    "webrocket-server.1",
    "webrocket-ctl.1",
    "webrocket-monitor.1",
    "webrocket.toml.5",
    "webrocket.7",
];

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

fn source(page: &str) -> String {
    let path = man_dir().join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page's text with the roff escapes used in these pages undone, so a
/// test can look for `"invalid UTF-8"` rather than `\(dqinvalid UTF\-8\(dq`.
fn text(page: &str) -> String {
    let mut out = source(page);
    for (escape, plain) in [
        ("\\-", "-"),
        ("\\(dq", "\""),
        ("\\(mu", "x"),
        ("\\(em", "--"),
        ("\\e", "\\"),
        ("\\&", ""),
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
    ] {
        out = out.replace(escape, plain);
    }
    out
}

/// True when a roff font line (`.B`, `.BI`, `.BR`) of `page` holds `flag`:
/// the flag has an entry of its own, not just a mention.
fn has_entry(page: &str, flag: &str) -> bool {
    page.lines().any(|l| {
        (l.starts_with(".B ") || l.starts_with(".BI ") || l.starts_with(".BR ")) && l.contains(flag)
    })
}

/// True when `word` occurs in `haystack` not as part of a longer name.
fn has_word(haystack: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

#[test]
fn every_error_id_is_documented_in_webrocket_7() {
    let page = text("webrocket.7");
    for id in ErrorId::ALL {
        // Each id has its own entry in ERRORS: `.TP` then `.B <ID>`.
        let entry = format!(".TP\n.B {}\n", id.as_str());
        assert!(
            page.contains(&entry),
            "webrocket.7 has no ERRORS entry for {id}"
        );
    }
}

#[test]
fn every_close_reason_is_documented_with_its_code_and_text() {
    let page = text("webrocket.7");
    let section = page
        .split(".SH CLOSE CODES AND REASONS")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("webrocket.7 has a CLOSE CODES AND REASONS section");
    for reason in CloseReason::ALL {
        let line = section
            .lines()
            .find(|l| l.starts_with(".BR ") && has_word(l, reason.label()))
            .unwrap_or_else(|| {
                panic!(
                    "webrocket.7 has no entry for close reason {}",
                    reason.label()
                )
            });
        let code = reason.code().to_string();
        assert!(has_word(line, &code), "{line:?} lacks code {code}");
        assert!(
            line.contains(&format!("\"{}\"", reason.reason())),
            "{line:?} lacks {:?}",
            reason.reason()
        );
    }
}

#[test]
fn backend_commands_and_codes_are_documented() {
    let page = text("webrocket.7");
    for command in [
        "RD", "HB", "QT", "TR", "BC", "OC", "CC", "DS", "PI", "RI", "RB", "RA", "OK", "ER",
    ] {
        assert!(
            page.contains(&format!(".BR {command} "))
                || page.contains(&format!(".BR \"{command} ")),
            "{command}"
        );
    }
    let codes = page
        .split(".SS Error codes")
        .nth(1)
        .expect("webrocket.7 has an Error codes subsection");
    for code in ["400", "402", "403", "404", "413", "451", "454", "597"] {
        assert!(codes.contains(&format!(".TP\n.B {code}\n")), "ER {code}");
    }
    for event in webrocket::protocol::CLIENT_EVENTS {
        assert!(
            page.contains(&format!(".SS {event}\n")),
            "client event {event}"
        );
    }
}

/// Every key a config file may hold: the tree of the default config (with
/// its example vhost and user, and `null` for unset options), the keys the
/// shipped file shows commented out, and every `[limits]` field.
fn config_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keys = BTreeSet::new();
    let mut sections = BTreeSet::new();
    let tree = serde_json::to_value(Config::default()).expect("config serializes");
    walk_json(&tree, &mut keys, &mut sections);
    let limits = serde_json::to_value(Limits::default()).expect("limits serialize");
    walk_json(&limits, &mut keys, &mut sections);
    let shipped: toml::Value = toml::from_str(DEFAULT_CONFIG_TOML).expect("shipped config parses");
    walk_toml(&shipped, &mut keys, &mut sections);
    for line in DEFAULT_CONFIG_TOML.lines() {
        if let Some((key, _)) = line.strip_prefix('#').and_then(|l| l.split_once(" = ")) {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.insert(key.to_owned());
            }
        }
    }
    (keys, sections)
}

fn walk_json(
    value: &serde_json::Value,
    keys: &mut BTreeSet<String>,
    sections: &mut BTreeSet<String>,
) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (key, inner) in map {
        match inner {
            serde_json::Value::Object(_) => {
                sections.insert(key.clone());
                walk_json(inner, keys, sections);
            }
            serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                sections.insert(key.clone());
                items
                    .iter()
                    .for_each(|item| walk_json(item, keys, sections));
            }
            _ => {
                keys.insert(key.clone());
            }
        }
    }
}

fn walk_toml(value: &toml::Value, keys: &mut BTreeSet<String>, sections: &mut BTreeSet<String>) {
    let toml::Value::Table(table) = value else {
        return;
    };
    for (key, inner) in table {
        match inner {
            toml::Value::Table(_) => {
                sections.insert(key.clone());
                walk_toml(inner, keys, sections);
            }
            toml::Value::Array(items) if items.iter().any(|i| i.is_table()) => {
                sections.insert(key.clone());
                items
                    .iter()
                    .for_each(|item| walk_toml(item, keys, sections));
            }
            _ => {
                keys.insert(key.clone());
            }
        }
    }
}

#[test]
fn every_config_key_is_documented_with_type_and_default() {
    let page = text("webrocket.toml.5");
    let (keys, sections) = config_keys();
    assert!(keys.len() > 40, "the walk found too few keys: {keys:?}");
    for section in [
        "server", "tls", "limits", "backend", "cluster", "log", "vhost", "user",
    ] {
        assert!(
            sections.contains(section),
            "{section} not found by the walk: {sections:?}"
        );
    }
    for section in &sections {
        let heading = [
            format!(".SH [{section}]"),
            format!(".SH [[{section}]]"),
            format!(".{section}]]"),
        ];
        assert!(
            heading.iter().any(|h| page.contains(h.as_str())),
            "webrocket.toml.5 has no section {section}"
        );
    }
    // Key entries start at the first section (UNITS above uses the same
    // entry shape for type names such as `permissions`).
    let entries = &page[page.find(".SH [server]").expect("a [server] section")..];
    for key in &keys {
        let entry = format!(".TP\n.B {key}\n");
        let bodies: Vec<&str> = entries
            .match_indices(&entry)
            .map(|(at, _)| {
                let body = &entries[at + entry.len()..];
                body.split(".TP\n").next().unwrap_or_default()
            })
            .collect();
        assert!(
            !bodies.is_empty(),
            "webrocket.toml.5 has no entry for {key}"
        );
        // The entry's first sentence gives the type and the default.
        assert!(
            bodies.iter().any(|b| b.to_lowercase().contains("default")),
            "{key}: no default in {bodies:?}"
        );
    }
}

#[test]
fn every_server_flag_is_documented() {
    let page = text("webrocket-server.1");
    for arg in ServerArgs::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                has_entry(&page, &format!("--{long}")),
                "webrocket-server.1 lacks --{long}"
            );
        }
    }
    for field in ["node=", "websocket=", "run_dir="] {
        assert!(page.contains(field), "ready line field {field}");
    }
}

#[test]
fn every_ctl_command_is_documented() {
    let page = text("webrocket-ctl.1");
    let commands = [
        "list_vhosts",
        "add_vhost",
        "delete_vhost",
        "show_vhost",
        "clear_vhosts",
        "regenerate_vhost_token",
        "list_channels",
        "add_channel",
        "delete_channel",
        "clear_channels",
        "list_users",
        "add_user",
        "delete_user",
        "set_permissions",
        "set_secret",
        "list_resources",
        "add_resource",
        "delete_resource",
        "list_items",
        "put_item",
        "remove_item",
        "list_workers",
        "list_nodes",
        "remove_node",
    ];
    for command in commands {
        let documented = page
            .lines()
            .any(|l| (l.starts_with(".B ") || l.starts_with(".BI ")) && l.contains(command));
        assert!(documented, "webrocket-ctl.1 lacks {command}");
    }
    for option in [
        "--admin-addr",
        "--cookie",
        "--storage-dir",
        "--node-name",
        "--json",
        "WEBROCKET_COOKIE",
    ] {
        assert!(page.contains(option), "webrocket-ctl.1 lacks {option}");
    }
}

#[test]
fn every_monitor_flag_is_documented() {
    let page = text("webrocket-monitor.1");
    for flag in [
        "--config",
        "--run-dir",
        "--node-name",
        "--node-dir",
        "--admin-addr",
        "--cookie",
        "--storage-dir",
        "--interval",
        "--once",
        "--json",
    ] {
        assert!(
            has_entry(&page, flag),
            "webrocket-monitor.1 lacks an entry for {flag}"
        );
    }
}

#[test]
fn pages_render_without_warnings() {
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("groff is not installed: skipping the rendering check");
        return;
    }
    for page in PAGES {
        let output = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(man_dir().join(page))
            .output()
            .expect("run groff");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{page}: groff failed: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "{page}: groff warnings:\n{stderr}"
        );
    }
}

#[test]
fn pages_cross_reference_each_other() {
    for page in PAGES {
        let page_text = text(page);
        let others = PAGES.iter().filter(|p| **p != page);
        for other in others {
            let (name, section) = other.rsplit_once('.').expect("name.section");
            let reference = format!("{name} ({section})");
            let in_see_also = page_text
                .split(".SH SEE ALSO")
                .nth(1)
                .is_some_and(|s| s.contains(&format!(".BR {name} ({section})")));
            assert!(in_see_also, "{page}: SEE ALSO lacks {reference}");
        }
    }
}
