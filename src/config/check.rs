//! Parsing with every problem reported, not just the first.
//!
//! Serde stops at the first error, so the file is first parsed into toml's
//! spanned tree and each table is checked on its own: if a whole table does
//! not deserialize, each key is deserialized alone (next to valid stand-ins
//! for the required keys) to find every bad key. Bad keys are reported with
//! their TOML path and line/column, then removed (or, for required keys,
//! replaced by a stand-in) so that the rest of the file, and finally the
//! relations between values ([`super::validate`]), can still be checked.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::{
    validate, BackendConfig, ClusterConfig, Config, LogConfig, ServerConfig, TlsConfig, UserConfig,
    VhostConfig,
};
use crate::limits::Limits;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// TOML path of the offending key, e.g. `vhost[1].user[0].name`; empty
    /// for a syntax error.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// 1-based `(line, column)` where the problem is in the text, if known.
    pub location: Option<(usize, usize)>,
}

impl ConfigProblem {
    /// A problem not tied to a place in the text.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl ConfigErrors {
    pub(super) fn result(problems: Vec<ConfigProblem>) -> Result<(), ConfigErrors> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// The problems.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why [`Config::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("invalid config file {}:\n{errors}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        errors: ConfigErrors,
    },
}

/// Collects problems, turning byte spans into line/column.
struct Problems<'t> {
    text: &'t str,
    list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn at(&mut self, path: &str, message: impl Into<String>, span: Option<Range<usize>>) {
        let location = span.map(|s| line_column(self.text, s.start));
        self.list.push(ConfigProblem {
            path: path.to_owned(),
            message: message.into(),
            location,
        });
    }

    fn toml(&mut self, path: &str, error: &toml::de::Error) {
        self.at(path, error.message().trim_end(), error.span());
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// See the module docs.
pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Problems {
        text,
        list: Vec::new(),
    };
    let mut root = match DeTable::parse(text) {
        Ok(table) => table,
        Err(error) => {
            problems.toml("", &error);
            return Err(ConfigErrors(problems.list));
        }
    };
    check_root(&mut root, &mut problems);
    // Walk problems come in tree order; show them in file order.
    problems.list.sort_by_key(|p| p.location);
    let span = root.span();
    let value = Spanned::new(span, DeValue::Table(root.into_inner()));
    let config = match Config::deserialize(ValueDeserializer::from(value)) {
        Ok(config) => config,
        Err(error) => {
            // Unreachable if the walk removed every bad key; kept so that a
            // missed case still reports instead of panicking.
            problems.toml("", &error);
            return Err(ConfigErrors(problems.list));
        }
    };
    validate::config(&config, &mut problems.list);
    ConfigErrors::result(problems.list).map(|()| config)
}

fn check_root(root: &mut Spanned<DeTable<'_>>, problems: &mut Problems<'_>) {
    let table = root.get_mut();
    for (key, value) in table.iter_mut() {
        let key: &str = key.get_ref();
        match key {
            "server" => check_table::<ServerConfig>(value, key, &[], problems),
            "tls" => check_table::<TlsConfig>(value, key, &[], problems),
            "limits" => check_table::<Limits>(value, key, &[], problems),
            "backend" => check_table::<BackendConfig>(value, key, &[], problems),
            "cluster" => check_table::<ClusterConfig>(value, key, &[], problems),
            "log" => check_table::<LogConfig>(value, key, &[], problems),
            "vhost" => check_vhosts(value, problems),
            _ => {} // reported as an unknown field just below
        }
    }
    let span = root.span();
    let mut whole = Spanned::new(span.clone(), DeValue::Table(std::mem::take(root.get_mut())));
    check_table::<Config>(&mut whole, "", &[], problems);
    if let DeValue::Table(table) = whole.into_inner() {
        *root = Spanned::new(span, table);
    }
}

fn check_vhosts(value: &mut Spanned<DeValue<'_>>, problems: &mut Problems<'_>) {
    // Not an array: left for the root check to report as a type error.
    let DeValue::Array(vhosts) = value.get_mut() else {
        return;
    };
    for (i, vhost) in vhosts.iter_mut().enumerate() {
        let path = format!("vhost[{i}]");
        if let DeValue::Table(table) = vhost.get_mut() {
            if let Some(users) = table.get_mut("user") {
                check_users(users, &path, problems);
            }
        }
        let stand_in = ("path", format!("/invalid-vhost-{i}"));
        check_table::<VhostConfig>(vhost, &path, &[stand_in], problems);
    }
}

fn check_users(value: &mut Spanned<DeValue<'_>>, vhost: &str, problems: &mut Problems<'_>) {
    let DeValue::Array(users) = value.get_mut() else {
        return;
    };
    for (j, user) in users.iter_mut().enumerate() {
        let stand_in = ("name", format!("_invalid-user-{j}"));
        check_table::<UserConfig>(user, &format!("{vhost}.user[{j}]"), &[stand_in], problems);
    }
}

/// Checks `value` as a `T` at TOML path `path`. `required` lists the keys `T`
/// cannot do without, each with a valid stand-in value used to check the
/// other keys alone and to replace a missing or bad required key.
fn check_table<T: DeserializeOwned>(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    required: &[(&'static str, String)],
    problems: &mut Problems<'_>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.get_mut() else {
        let found = value.get_ref().type_str();
        problems.at(
            path,
            format!("expected a table, found {found}"),
            Some(span.clone()),
        );
        *value = Spanned::new(span, DeValue::Table(stand_ins(required)));
        return;
    };
    if deserializes::<T>(table, &span).is_ok() {
        return;
    }
    let child = |key: &str| match path {
        "" => key.to_owned(),
        _ => format!("{path}.{key}"),
    };
    for (key, _) in required {
        if !table.contains_key(*key) {
            problems.at(&child(key), "required key is missing", Some(span.clone()));
        }
    }
    let mut bad = Vec::new();
    for (key, item) in table.iter() {
        let mut probe = stand_ins(required);
        probe.insert(key.clone(), item.clone());
        if let Err(error) = deserializes::<T>(&probe, &span) {
            problems.toml(&child(key.get_ref()), &error);
            bad.push(key.get_ref().to_string());
        }
    }
    for key in &bad {
        table.remove(key.as_str());
    }
    for (key, stand_in) in stand_ins(required) {
        if !table.contains_key(key.get_ref().as_ref()) {
            table.insert(key, stand_in);
        }
    }
}

fn deserializes<T: DeserializeOwned>(
    table: &DeTable<'_>,
    span: &Range<usize>,
) -> Result<T, toml::de::Error> {
    let value = Spanned::new(span.clone(), DeValue::Table(table.clone()));
    T::deserialize(ValueDeserializer::from(value))
}

fn stand_ins(required: &[(&'static str, String)]) -> DeTable<'static> {
    let mut table = DeTable::new();
    for (key, value) in required {
        table.insert(
            Spanned::new(0..0, Cow::Borrowed(*key)),
            Spanned::new(0..0, DeValue::String(Cow::Owned(value.clone()))),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn problem_display() {
        let p = ConfigProblem {
            path: "server.websocket_addr".into(),
            message: "invalid socket address syntax".into(),
            location: Some((3, 18)),
        };
        assert_eq!(
            p.to_string(),
            "server.websocket_addr: invalid socket address syntax (line 3, column 18)"
        );
        assert_eq!(ConfigProblem::new("", "oops").to_string(), "oops");
    }
}
