//! Crash-safe file primitives: atomic replacement and directory sync.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) readable by the owner only, as it holds
/// secrets (cookies, secret hashes).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Makes a rename or file creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary name used while `path` is being replaced.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `bytes` so that after a crash the file holds either
/// its old or its new contents, never a mix: write a temporary file, fsync
/// it, rename it over `path`, fsync the directory.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    sync_dir(dir.unwrap_or(Path::new(".")))
}

/// Removes a temporary file left by a crash during [`replace_atomically`].
pub fn remove_stale_temp(path: &Path) -> io::Result<()> {
    let temp = temp_path(path);
    // Look first: on a read-only filesystem unlinking fails with EROFS even
    // when there is nothing to remove, and the error would blame a
    // temporary file that is not there instead of the storage itself.
    if let Err(e) = fs::symlink_metadata(&temp) {
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(());
        }
    }
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
