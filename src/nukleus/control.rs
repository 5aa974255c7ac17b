//! The client side of a nukleus's control file: send a command, wait for its
//! response. Used by the server to set itself up, and by tools and tests from
//! other processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::{Command, Response};
use super::runner::Signal;
use crate::stream::ControlClient;

/// Why a command got no success response.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control file could not be opened.
    #[error("cannot open control file of {nukleus}: {source}")]
    Open {
        /// Which nukleus.
        nukleus: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command ring had no room.
    #[error("command ring of {0} is full")]
    Full(String),
    /// The nukleus answered ERROR.
    #[error("{nukleus} refused command {command:#x}")]
    Refused {
        /// Which nukleus.
        nukleus: String,
        /// The command type.
        command: i32,
    },
    /// No response in time.
    #[error("{nukleus} did not answer command {command:#x} in time")]
    Timeout {
        /// Which nukleus.
        nukleus: String,
        /// The command type.
        command: i32,
    },
}

/// Sends commands to one nukleus.
pub struct Controller {
    nukleus: String,
    client: ControlClient,
    signal: Option<Arc<Signal>>,
    scratch: Vec<u8>,
}

impl Controller {
    /// Opens `<run_dir>/<nukleus>/control`. `signal` wakes the nukleus when it
    /// runs in this process.
    pub fn open(
        run_dir: &Path,
        nukleus: &str,
        signal: Option<Arc<Signal>>,
    ) -> Result<Self, ControlError> {
        let client =
            ControlClient::open(&run_dir.join(nukleus).join("control")).map_err(|source| {
                ControlError::Open {
                    nukleus: nukleus.to_string(),
                    source,
                }
            })?;
        Ok(Controller {
            nukleus: nukleus.to_string(),
            client,
            signal,
            scratch: Vec::new(),
        })
    }

    /// Sends `command` and returns its correlation id.
    pub fn send(&mut self, command: Command<'_>) -> Result<i64, ControlError> {
        let correlation = self.client.commands.next_correlation_id();
        self.scratch.clear();
        command.encode(correlation, &mut self.scratch);
        self.write(command.type_id())?;
        Ok(correlation)
    }

    /// Sends a record of any `type_id` with `args` after the correlation
    /// id (a tool speaking a newer command set, or a test of what an
    /// unknown command gets) and returns the correlation id.
    pub fn send_raw(&mut self, type_id: i32, args: &[u8]) -> Result<i64, ControlError> {
        let correlation = self.client.commands.next_correlation_id();
        self.scratch.clear();
        self.scratch.extend_from_slice(&correlation.to_le_bytes());
        self.scratch.extend_from_slice(args);
        self.write(type_id)?;
        Ok(correlation)
    }

    fn write(&mut self, type_id: i32) -> Result<(), ControlError> {
        self.client
            .commands
            .write(type_id, &[&self.scratch])
            .map_err(|_| ControlError::Full(self.nukleus.clone()))?;
        if let Some(signal) = &self.signal {
            signal.wake();
        }
        Ok(())
    }

    /// Waits for the response to `correlation`.
    pub fn wait(
        &mut self,
        command: i32,
        correlation: i64,
        timeout: Duration,
    ) -> Result<Response, ControlError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut found = None;
            self.client.responses.receive(|type_id, body| {
                if let Some(response) = Response::decode(type_id, body) {
                    if response.correlation == correlation {
                        found = Some(response);
                    }
                }
            });
            match found {
                Some(response) if response.is_error() => {
                    return Err(ControlError::Refused {
                        nukleus: self.nukleus.clone(),
                        command,
                    })
                }
                Some(response) => return Ok(response),
                None if Instant::now() >= deadline => {
                    return Err(ControlError::Timeout {
                        nukleus: self.nukleus.clone(),
                        command,
                    })
                }
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// Sends `command` and waits for its response.
    pub fn call(
        &mut self,
        command: Command<'_>,
        timeout: Duration,
    ) -> Result<Response, ControlError> {
        let correlation = self.send(command)?;
        self.wait(command.type_id(), correlation, timeout)
    }
}
