//! Durable channel histories on disk: one file per channel whose options
//! say `history_durable`, in `<storage_dir>/history/`, named by a SHA-1 of
//! the vhost and channel (`<40 hex>.hist`; the names themselves are in the
//! file's OPEN record). Layout: [`super::history_log`].
//!
//! The broker thread owns [`HistoryFiles`] and calls it once per round with
//! what the round added: one `write` per channel that changed, into the
//! page cache, no fsync. A background thread (`history-sync`) fsyncs the
//! files written since its last pass every [`HISTORY_SYNC_PERIOD`]. A file
//! grown past twice its compacted size is rewritten (temp file, rename;
//! the fsync of the new file and of the directory is left to the same
//! thread). A clean stop appends CLOSE and fsyncs ([`HistoryFiles::close`]).
//!
//! # What a file is worth at open ([`HistoryFiles::open`])
//!
//! - `*.tmp`: an interrupted compaction; removed (the file it was to
//!   replace is still whole).
//! - Damage other than a torn tail (a bad header or OPEN, a record whose
//!   length or checksum is wrong): logged, the file is kept aside as
//!   `<id>.hist.corrupt` and the channel starts empty (a new epoch).
//! - A torn tail (an append cut short): cut off; what is before it loads,
//!   but the run is not continued (the cut messages may have been
//!   delivered under their offsets, so the next one this node numbers
//!   starts a new epoch).
//! - A file last opened under another boot of the machine (the kernel's
//!   boot id) that was not closed cleanly: the page cache may have lost
//!   its last appends in a power loss or a kernel crash, so it loads the
//!   same way, without continuing the run.
//! - Otherwise (the same boot, so every append reached the kernel before
//!   the crash; or a clean stop): the run and its epoch continue.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use sha1::{Digest, Sha1};

use super::files::{create_private_dir, sync_dir, temp_path};
use super::history_log::{self, Item, ParseError, Tail};
use crate::limits::{HISTORY_COMPACT_MIN, HISTORY_RETRY, HISTORY_SYNC_PERIOD};
use crate::name::{ChannelName, VhostPath};

/// The directory under the storage directory.
pub const HISTORY_DIR: &str = "history";
const EXTENSION: &str = "hist";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The file name of a channel's history.
pub fn file_name(vhost: &VhostPath, channel: &ChannelName) -> String {
    let mut sha = Sha1::new();
    sha.update(vhost.as_str().as_bytes());
    sha.update([0]);
    sha.update(channel.as_str().as_bytes());
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{EXTENSION}")
}

/// What one file held at open.
#[derive(Debug)]
pub struct Loaded {
    /// The vhost.
    pub vhost: VhostPath,
    /// The channel.
    pub channel: ChannelName,
    /// Whether its last run may be continued (see the module docs).
    pub trusted: bool,
    bytes: Vec<u8>,
    max_record: usize,
}

impl Loaded {
    /// The RUN and MESSAGE records, in file order.
    pub fn items(&self) -> Vec<Item<'_>> {
        // Parsed once already at open; this cannot fail the second time.
        history_log::parse(&self.bytes, self.max_record)
            .map(|p| p.items)
            .unwrap_or_default()
    }
}

/// What the caller should do after [`HistoryFiles::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing.
    Done,
    /// Rewrite the file with the whole history ([`HistoryFiles::rewrite`]):
    /// it is due for compaction, or an earlier write failed.
    Rewrite,
}

enum Slot {
    Open(OpenFile),
    /// A write failed at this time: the file was removed, the next
    /// attempt rewrites it whole.
    Failed(Instant),
}

struct OpenFile {
    file: Arc<File>,
    len: u64,
    dirty: Arc<AtomicBool>,
}

/// The durable history files of a node (see the module docs).
pub struct HistoryFiles {
    dir: PathBuf,
    boot: String,
    slots: HashMap<(VhostPath, ChannelName), Slot>,
    syncer: Syncer,
}

impl HistoryFiles {
    /// Opens `<storage_dir>/history` (created if missing) and reads every
    /// history file in it; damaged ones are logged and set aside. The files
    /// loaded are not open yet: [`HistoryFiles::rewrite`] the ones still
    /// wanted, [`HistoryFiles::remove`] the others.
    pub fn open(storage_dir: &Path, max_record: usize) -> io::Result<(Self, Vec<Loaded>)> {
        let dir = storage_dir.join(HISTORY_DIR);
        create_private_dir(&dir)?;
        let boot = fs::read_to_string(BOOT_ID)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let mut loaded = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                remove_logged(&path);
            } else if name.ends_with(&format!(".{EXTENSION}")) {
                if let Some(one) = load(&path, &boot, max_record) {
                    loaded.push(one);
                }
            }
        }
        let files = HistoryFiles {
            syncer: Syncer::start(dir.clone())?,
            dir,
            boot,
            slots: HashMap::new(),
        };
        Ok((files, loaded))
    }

    /// The boot id files are opened under ("" when unknown).
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// Appends `records` (RUN and MESSAGE records of the channel's journal)
    /// to the channel's file, creating it if needed. `live` is the size the
    /// file would have after a compaction.
    pub fn append(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        records: &[u8],
        live: u64,
    ) -> Next {
        let key = (vhost.clone(), channel.clone());
        let result = match self.slots.get_mut(&key) {
            Some(Slot::Failed(at)) => {
                return if at.elapsed() >= HISTORY_RETRY {
                    Next::Rewrite
                } else {
                    Next::Done
                };
            }
            Some(Slot::Open(open)) => (&*open.file).write_all(records).map(|()| {
                open.len += records.len() as u64;
                self.syncer.dirty(open);
                open.len > 2 * live.max(HISTORY_COMPACT_MIN)
            }),
            None => self.create(vhost, channel, records).map(|()| false),
        };
        match result {
            Ok(true) => Next::Rewrite,
            Ok(false) => Next::Done,
            Err(error) => {
                self.failed(vhost, channel, &error);
                Next::Done
            }
        }
    }

    /// Replaces the channel's file with `records` (the whole history: RUN
    /// and MESSAGE records), through a temporary file and a rename.
    pub fn rewrite(&mut self, vhost: &VhostPath, channel: &ChannelName, records: &[u8]) {
        if let Err(error) = self.create(vhost, channel, records) {
            self.failed(vhost, channel, &error);
        }
    }

    /// Removes the channel's file (the channel was deleted, or its history
    /// is no longer durable).
    pub fn remove(&mut self, vhost: &VhostPath, channel: &ChannelName) {
        self.slots.remove(&(vhost.clone(), channel.clone()));
        remove_logged(&self.path(vhost, channel));
    }

    /// Ends a clean stop: appends CLOSE to every open file and fsyncs it.
    pub fn close(&mut self) {
        let mut close = Vec::new();
        history_log::encode_close(&mut close);
        for ((vhost, channel), slot) in self.slots.drain() {
            let Slot::Open(open) = slot else { continue };
            let done = (&*open.file)
                .write_all(&close)
                .and_then(|()| open.file.sync_data());
            if let Err(error) = done {
                tracing::warn!(vhost = %vhost, channel = %channel, %error,
                    "cannot close the durable history file");
            }
        }
        if let Err(error) = sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot sync the history directory");
        }
        self.syncer.stop();
    }

    fn path(&self, vhost: &VhostPath, channel: &ChannelName) -> PathBuf {
        self.dir.join(file_name(vhost, channel))
    }

    /// Writes a new file (header, OPEN, `records`) in place of the old one.
    fn create(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        records: &[u8],
    ) -> io::Result<()> {
        let path = self.path(vhost, channel);
        let temp = temp_path(&path);
        let mut bytes = history_log::encode_start(&self.boot, vhost, channel);
        bytes.extend_from_slice(records);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        (&file).write_all(&bytes)?;
        fs::rename(&temp, &path)?;
        let open = OpenFile {
            file: Arc::new(file),
            len: bytes.len() as u64,
            dirty: Arc::new(AtomicBool::new(false)),
        };
        self.syncer.dirty(&open);
        self.syncer.dir_changed();
        self.slots
            .insert((vhost.clone(), channel.clone()), Slot::Open(open));
        Ok(())
    }

    /// A write failed: the file may now end in a part of a batch whose
    /// messages were delivered, so it must not be continued after a
    /// restart. Removed; the next append rewrites it whole.
    fn failed(&mut self, vhost: &VhostPath, channel: &ChannelName, error: &io::Error) {
        let path = self.path(vhost, channel);
        tracing::warn!(vhost = %vhost, channel = %channel, path = %path.display(), %error,
            "cannot write the durable history; it is removed and rewritten later");
        remove_logged(&temp_path(&path));
        remove_logged(&path);
        self.slots.insert(
            (vhost.clone(), channel.clone()),
            Slot::Failed(Instant::now()),
        );
    }
}

impl Drop for HistoryFiles {
    fn drop(&mut self) {
        self.syncer.stop();
    }
}

/// Reads one file; `None` when it is set aside or removed.
fn load(path: &Path, boot: &str, max_record: usize) -> Option<Loaded> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error,
                "cannot read a durable history file; its channel starts empty");
            return None;
        }
    };
    let parsed = match history_log::parse(&bytes, max_record) {
        Ok(parsed) => parsed,
        Err(error) => {
            set_aside(path, &error);
            return None;
        }
    };
    if path.file_name().and_then(|n| n.to_str()) != Some(&file_name(&parsed.vhost, &parsed.channel))
    {
        tracing::warn!(path = %path.display(), "history file under another channel's name: removed");
        remove_logged(path);
        return None;
    }
    if parsed.tail == Tail::Torn {
        tracing::warn!(path = %path.display(), at = parsed.good_len,
            "durable history ends in a torn record: cut off, the channel's run is not continued");
    }
    let same_boot = !boot.is_empty() && parsed.boot == boot;
    let trusted = parsed.tail == Tail::Clean && (parsed.closed || same_boot);
    if parsed.tail == Tail::Clean && !trusted {
        tracing::info!(path = %path.display(),
            "durable history was not closed before the machine restarted: loaded, but the channel's next message starts a new epoch");
    }
    let (vhost, channel, good_len) = (parsed.vhost, parsed.channel, parsed.good_len);
    let mut bytes = bytes;
    bytes.truncate(good_len);
    Some(Loaded {
        vhost,
        channel,
        trusted,
        bytes,
        max_record,
    })
}

/// Keeps a damaged file as `<name>.corrupt` (replacing an older one).
fn set_aside(path: &Path, error: &ParseError) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    tracing::error!(path = %path.display(), %error,
        "durable history file is damaged: kept aside as .corrupt, its channel starts empty with a new epoch");
    if let Err(error) = fs::rename(path, &aside) {
        tracing::warn!(path = %path.display(), %error, "cannot set the damaged history file aside");
        remove_logged(path);
    }
}

fn remove_logged(path: &Path) {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), %error, "cannot remove a history file")
        }
        _ => {}
    }
}

/// The `history-sync` thread: fsyncs the files written since its last pass.
struct Syncer {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    files: Mutex<Vec<(Arc<File>, Arc<AtomicBool>)>>,
    dir_changed: AtomicBool,
}

impl Syncer {
    fn start(dir: PathBuf) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = mpsc::channel::<()>();
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("history-sync".into())
            .spawn(move || loop {
                let last = !matches!(
                    stopped.recv_timeout(HISTORY_SYNC_PERIOD),
                    Err(RecvTimeoutError::Timeout)
                );
                theirs.sync(&dir);
                if last {
                    break;
                }
            })?;
        Ok(Syncer {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Queues `open` for the next pass (once until that pass).
    fn dirty(&self, open: &OpenFile) {
        if !open.dirty.swap(true, Ordering::AcqRel) {
            let mut files = self.shared.files.lock().unwrap_or_else(|e| e.into_inner());
            files.push((Arc::clone(&open.file), Arc::clone(&open.dirty)));
        }
    }

    fn dir_changed(&self) {
        self.shared.dir_changed.store(true, Ordering::Release);
    }

    /// Runs a last pass and ends the thread.
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn sync(&self, dir: &Path) {
        let files = std::mem::take(&mut *self.files.lock().unwrap_or_else(|e| e.into_inner()));
        for (file, dirty) in files {
            dirty.store(false, Ordering::Release);
            if let Err(error) = file.sync_data() {
                tracing::warn!(%error, "cannot fsync a durable history file");
            }
        }
        if self.dir_changed.swap(false, Ordering::AcqRel) {
            if let Err(error) = sync_dir(dir) {
                tracing::warn!(dir = %dir.display(), %error, "cannot sync the history directory");
            }
        }
    }
}

#[cfg(test)]
#[path = "history_files_tests.rs"]
mod tests;
