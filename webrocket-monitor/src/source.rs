//! Where samples come from: the counters region of the node's control files
//! (primary), or the admin API's `GET /stats` (remote, or the fallback).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;
use webrocket::stream::ControlClient;

use crate::args::{AdminTarget, Target};
use crate::sample::{stats_document, Sample, Values};

/// The header carrying the node cookie (spec section 3).
pub const COOKIE_HEADER: &str = "X-WebRocket-Cookie";

/// How long one `/stats` request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A sample could not be taken.
#[derive(Debug, Error)]
pub enum SourceError {
    /// No control file of any nukleus exists under the node's directory.
    #[error(
        "no control files under {} (is the server running with this run \
         directory and node name? see --run-dir, --node-name, --node-dir)",
        dir.display()
    )]
    NoControlFiles {
        /// The node directory searched.
        dir: PathBuf,
    },
    /// A control file exists but cannot be mapped or is not one.
    #[error("cannot read counters from {}: {source}", path.display())]
    Control {
        /// The control file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No cookie was given and the cookie file cannot be read.
    #[error(
        "no node cookie: pass --cookie or set WEBROCKET_COOKIE, or point \
         --storage-dir at the server's storage ({}: {source})",
        path.display()
    )]
    Cookie {
        /// The cookie file tried.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The admin API did not answer with a document.
    #[error("GET {url}: {message}")]
    Http {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Neither source worked.
    #[error("{files}; and the admin API fallback failed too: {admin}")]
    Neither {
        /// Why the files did not work.
        files: Box<SourceError>,
        /// Why the admin API did not work.
        admin: Box<SourceError>,
    },
}

/// Reads every counter of a node from its control files.
#[derive(Debug, Clone)]
pub struct FilesSource {
    node_dir: PathBuf,
}

impl FilesSource {
    /// Reads the node whose files are under `node_dir`.
    pub fn new(node_dir: PathBuf) -> Self {
        FilesSource { node_dir }
    }

    /// The control file of `nukleus`.
    pub fn control_path(&self, nukleus: &str) -> PathBuf {
        self.node_dir.join(nukleus).join("control")
    }

    /// The nuklei with a control file (`tcp`, `ws`, `webrocket`, and `echo`
    /// or `tls` when configured), sorted by name.
    pub fn nuklei(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.node_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|entry| entry.path().join("control").is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// One sample of all counters. The files are mapped anew each time, so a
    /// restarted server (which recreates them) is picked up.
    pub fn sample(&self) -> Result<Sample, SourceError> {
        let nuklei = self.nuklei();
        if nuklei.is_empty() {
            return Err(SourceError::NoControlFiles {
                dir: self.node_dir.clone(),
            });
        }
        let mut values = Values::new();
        for nukleus in &nuklei {
            read_counters(nukleus, &self.control_path(nukleus), &mut values)?;
        }
        Ok(Sample::new(Instant::now(), values))
    }
}

/// Adds the counters of one control file. Each nukleus names its own
/// (`broker.*` for the broker); should two use one label, the later is keyed
/// `<nukleus>/<label>`, as the admin API's `/stats` does.
fn read_counters(nukleus: &str, path: &Path, values: &mut Values) -> Result<(), SourceError> {
    let client = ControlClient::open(path).map_err(|source| SourceError::Control {
        path: path.to_owned(),
        source,
    })?;
    client.counters.for_each(|_, label, value| {
        let key = if values.contains_key(label) {
            format!("{nukleus}/{label}")
        } else {
            label.to_owned()
        };
        values.insert(key, value);
    });
    Ok(())
}

/// Reads `GET http://ADDR/stats` from the admin API.
#[derive(Debug)]
pub struct AdminSource {
    target: AdminTarget,
    agent: ureq::Agent,
}

impl AdminSource {
    /// Asks the admin endpoint of `target`.
    pub fn new(target: AdminTarget) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        AdminSource { target, agent }
    }

    /// The URL asked.
    pub fn url(&self) -> String {
        format!("http://{}/stats", self.target.addr)
    }

    /// The cookie from the flag/environment, else from the cookie file (read
    /// each time: the server may have created it since).
    fn cookie(&self) -> Result<String, SourceError> {
        if let Some(cookie) = &self.target.cookie {
            return Ok(cookie.clone());
        }
        let path = &self.target.cookie_file;
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|source| SourceError::Cookie {
                path: path.clone(),
                source,
            })
    }

    /// One sample: the `/stats` document flattened into labels.
    pub fn sample(&self) -> Result<Sample, SourceError> {
        let url = self.url();
        let http = |message: String| SourceError::Http {
            url: url.clone(),
            message,
        };
        let cookie = self.cookie()?;
        let mut response = self
            .agent
            .get(&url)
            .header(COOKIE_HEADER, &cookie)
            .call()
            .map_err(|e| http(e.to_string()))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| http(e.to_string()))?;
        let document: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| http(format!("the answer is not JSON: {e}")))?;
        Ok(Sample::new(Instant::now(), stats_document(&document)))
    }
}

/// The source in use.
#[derive(Debug)]
pub enum Source {
    /// The counters files.
    Files(FilesSource),
    /// The admin API.
    Admin(AdminSource),
}

impl Source {
    /// Picks the source for `target` and takes the first sample with it:
    /// the admin API if the flags asked for it, else the counters files,
    /// else (no control file at all) the admin API.
    pub fn open(target: &Target) -> Result<(Source, Sample), SourceError> {
        let admin = AdminSource::new(target.admin.clone());
        if target.admin_only {
            let sample = admin.sample()?;
            return Ok((Source::Admin(admin), sample));
        }
        let files = FilesSource::new(target.node_dir.clone());
        match files.sample() {
            Ok(sample) => Ok((Source::Files(files), sample)),
            Err(files_error @ SourceError::NoControlFiles { .. }) => match admin.sample() {
                Ok(sample) => Ok((Source::Admin(admin), sample)),
                Err(admin_error) => Err(SourceError::Neither {
                    files: Box::new(files_error),
                    admin: Box::new(admin_error),
                }),
            },
            Err(other) => Err(other),
        }
    }

    /// One sample.
    pub fn sample(&self) -> Result<Sample, SourceError> {
        match self {
            Source::Files(files) => files.sample(),
            Source::Admin(admin) => admin.sample(),
        }
    }

    /// For the title: `files DIR` or `admin URL`.
    pub fn describe(&self) -> String {
        match self {
            Source::Files(files) => format!("files {}", files.node_dir.display()),
            Source::Admin(admin) => format!("admin {}", admin.url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrocket::stream::{ControlFile, ControlLayout};

    fn admin_target(cookie_file: PathBuf) -> AdminTarget {
        AdminTarget {
            // Port 9 (discard) on loopback: nothing listens in tests.
            addr: "127.0.0.1:9".to_owned(),
            cookie: None,
            cookie_file,
        }
    }

    #[test]
    fn files_source_reads_the_counters_of_every_control_file() {
        let dir = tempfile::tempdir().unwrap();
        let broker = ControlFile::create(
            &dir.path().join("webrocket/control"),
            ControlLayout::default(),
        )
        .unwrap();
        let tcp =
            ControlFile::create(&dir.path().join("tcp/control"), ControlLayout::default()).unwrap();
        broker
            .counters
            .allocate("broker.messages_in")
            .unwrap()
            .set(42);
        broker.counters.allocate("broker.sessions").unwrap().set(2);
        tcp.counters.allocate("tcp.accepted").unwrap().set(5);
        tcp.counters.allocate("broker.sessions").unwrap().set(9);
        std::fs::create_dir(dir.path().join("streams-only")).unwrap();
        let source = FilesSource::new(dir.path().to_owned());
        assert_eq!(source.nuklei(), ["tcp", "webrocket"]);
        let sample = source.sample().unwrap();
        assert_eq!(sample.values["broker.messages_in"], 42);
        assert_eq!(sample.values["broker.sessions"], 9);
        assert_eq!(sample.values["webrocket/broker.sessions"], 2);
        assert_eq!(sample.values["tcp.accepted"], 5);
        assert_eq!(sample.values.len(), 4);
    }

    #[test]
    fn files_source_without_files_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let error = FilesSource::new(dir.path().join("n1"))
            .sample()
            .unwrap_err();
        assert!(matches!(error, SourceError::NoControlFiles { .. }));
        assert!(error.to_string().contains("n1"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_control_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        std::fs::write(dir.path().join("ws/control"), vec![0u8; 4096]).unwrap();
        let error = FilesSource::new(dir.path().to_owned())
            .sample()
            .unwrap_err();
        assert!(matches!(error, SourceError::Control { .. }), "{error}");
    }

    #[test]
    fn admin_source_needs_a_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let source = AdminSource::new(admin_target(dir.path().join("n1.cookie")));
        let error = source.sample().unwrap_err();
        assert!(matches!(error, SourceError::Cookie { .. }), "{error}");
        assert!(error.to_string().contains("--cookie"), "{error}");
    }

    #[test]
    fn admin_source_reads_the_cookie_file_and_reports_http_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.cookie");
        std::fs::write(&path, "ab12\n").unwrap();
        let source = AdminSource::new(admin_target(path));
        assert_eq!(source.cookie().unwrap(), "ab12");
        let error = source.sample().unwrap_err();
        assert!(matches!(error, SourceError::Http { .. }), "{error}");
        assert!(
            error.to_string().contains("http://127.0.0.1:9/stats"),
            "{error}"
        );
    }

    #[test]
    fn open_falls_back_to_the_admin_api_and_reports_both_failures() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            node_name: "n1".to_owned(),
            node_dir: dir.path().join("n1"),
            admin: admin_target(dir.path().join("n1.cookie")),
            admin_only: false,
        };
        let error = Source::open(&target).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("no control files") && text.contains("cookie"),
            "{text}"
        );
    }
}
