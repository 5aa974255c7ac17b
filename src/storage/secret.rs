//! User secrets (argon2id hashes) and the node cookie file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

use super::files::{create_private_dir, sync_dir};
use crate::name::NodeName;

/// Length of a node cookie in hex characters (160 random bits).
pub const COOKIE_LEN: usize = 40;

/// Hashes `secret` with argon2id (the crate's default, OWASP-recommended
/// parameters) and a random 128-bit salt; returns the PHC string.
pub fn hash_secret(secret: &str) -> String {
    let salt: [u8; 16] = rand::rng().random();
    // Encoding 16 bytes always fits a salt, and hashing with default
    // parameters cannot fail; the fallbacks are never taken.
    let Ok(salt) = SaltString::encode_b64(&salt) else {
        unreachable!("a 16-byte salt is always valid")
    };
    match Argon2::default().hash_password(secret.as_bytes(), &salt) {
        Ok(hash) => hash.to_string(),
        Err(e) => unreachable!("argon2 with default parameters failed: {e}"),
    }
}

/// True if `secret` matches the PHC string `hash`. A malformed hash matches
/// nothing.
pub fn verify_secret(hash: &str, secret: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Returns the node cookie kept at `<dir>/<node>.cookie`, creating it (40
/// random hex characters, mode 0600, directory mode 0700) if it does not
/// exist. A node name cannot contain `/` or start with `.`, so the path
/// stays inside `dir`.
///
/// The cookie is written to a temporary file and hard-linked into place, so
/// a crash never leaves a half-written cookie and two processes starting at
/// once agree on one cookie.
pub fn load_or_create_cookie(dir: &Path, node: &NodeName) -> io::Result<String> {
    let path = cookie_path(dir, node);
    match read_cookie(dir, node) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        found => return found,
    }
    create_private_dir(dir)?;
    let cookie: String = {
        let bytes: [u8; COOKIE_LEN / 2] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    // A random name: concurrent creators must never share a temporary file.
    let nonce: u64 = rand::rng().random();
    let temp = dir.join(format!(".{}.cookie.{nonce:016x}.tmp", node.as_str()));
    let linked = write_private(&temp, &cookie).and_then(|()| fs::hard_link(&temp, &path));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(cookie)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_cookie(dir, node),
        Err(e) => Err(e),
    }
}

/// Reads the node cookie at `<dir>/<node>.cookie` without creating it (for
/// tools such as webrocket-ctl).
pub fn read_cookie(dir: &Path, node: &NodeName) -> io::Result<String> {
    let path = cookie_path(dir, node);
    let mode = fs::metadata(&path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "node cookie is readable by other users; chmod 600 it");
    }
    let cookie = fs::read_to_string(&path)?.trim().to_owned();
    let valid = cookie.len() == COOKIE_LEN && cookie.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a {COOKIE_LEN}-character hex cookie",
                path.display()
            ),
        ));
    }
    Ok(cookie)
}

fn cookie_path(dir: &Path, node: &NodeName) -> PathBuf {
    dir.join(format!("{}.cookie", node.as_str()))
}

fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let hash = hash_secret("s3cret");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_secret(&hash, "s3cret"));
        assert!(!verify_secret(&hash, "s3creT"));
        assert!(!verify_secret(&hash, ""));
        assert!(!verify_secret("not a hash", "s3cret"));
        assert!(!verify_secret("", ""));
        assert!(crate::config::secret_hash_problem(&hash).is_none());
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash_secret("x"), hash_secret("x"));
    }

    #[test]
    fn cookie_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("nested/storage");
        let node = NodeName::parse("node1").unwrap();
        let cookie = load_or_create_cookie(&storage, &node).unwrap();
        assert_eq!(cookie.len(), COOKIE_LEN);
        assert!(cookie
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let path = storage.join("node1.cookie");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&storage).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o077, 0, "storage dir is private");
        assert_eq!(load_or_create_cookie(&storage, &node).unwrap(), cookie);
        assert_eq!(read_cookie(&storage, &node).unwrap(), cookie);
        let leftovers = fs::read_dir(&storage).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left");
        let other = NodeName::parse("node2").unwrap();
        assert_eq!(
            read_cookie(&storage, &other).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_ne!(load_or_create_cookie(&storage, &other).unwrap(), cookie);
    }

    #[test]
    fn concurrent_creators_agree_on_one_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeName::parse("racy").unwrap();
        let cookies: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_cookie(dir.path(), &node).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(cookies.iter().all(|c| *c == cookies[0]), "{cookies:?}");
        assert_eq!(read_cookie(dir.path(), &node).unwrap(), cookies[0]);
    }

    #[test]
    fn a_damaged_cookie_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeName::parse("n").unwrap();
        fs::write(dir.path().join("n.cookie"), "short").unwrap();
        let err = load_or_create_cookie(dir.path(), &node).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            fs::read_to_string(dir.path().join("n.cookie")).unwrap(),
            "short"
        );
    }
}
