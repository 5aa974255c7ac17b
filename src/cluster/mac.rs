//! Proof of the cluster cookie: HMAC-SHA1 (RFC 2104) over what a HELLO
//! says, so the cookie itself never crosses the wire. A HELLO also carries
//! a timestamp and a random nonce; the receiver refuses stale ones and
//! nonces it has seen, so a captured HELLO cannot be replayed.
//!
//! SHA-1's collision weakness does not carry over to HMAC, whose security
//! rests on the compression function being a PRF; HMAC-SHA1 is what the
//! crate's dependencies offer.

use std::collections::VecDeque;

use sha1::{Digest, Sha1};

const BLOCK: usize = 64;

/// HMAC-SHA1 of `message` under `key`, as 40 lowercase hex characters.
pub fn hmac_sha1_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> [u8; BLOCK] {
        let mut out = block;
        for b in &mut out {
            *b ^= byte;
        }
        out
    };
    let mut inner = Sha1::new();
    inner.update(pad(0x36));
    inner.update(message);
    let mut outer = Sha1::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two MACs in time independent of where they differ.
pub fn same_mac(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Nonces seen recently, to refuse a replayed HELLO. Bounded: the oldest
/// are forgotten first, and a HELLO older than the freshness window is
/// refused anyway.
#[derive(Debug, Default)]
pub struct SeenNonces {
    recent: VecDeque<String>,
}

use crate::limits::CLUSTER_REMEMBERED_NONCES as REMEMBERED;

impl SeenNonces {
    /// Records `nonce`; `false` if it was seen already.
    pub fn first_time(&mut self, nonce: &str) -> bool {
        if self.recent.iter().any(|n| n == nonce) {
            return false;
        }
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(nonce.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2202_vectors() {
        assert_eq!(
            hmac_sha1_hex(&[0x0b; 20], b"Hi There"),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hmac_sha1_hex(b"Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // A key longer than the block is hashed first.
        assert_eq!(
            hmac_sha1_hex(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn mac_comparison() {
        assert!(same_mac("abc", "abc"));
        assert!(!same_mac("abc", "abd"));
        assert!(!same_mac("abc", "abcd"));
    }

    #[test]
    fn replayed_nonces_are_refused_and_memory_is_bounded() {
        let mut seen = SeenNonces::default();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        for i in 0..REMEMBERED {
            assert!(seen.first_time(&i.to_string()));
        }
        assert_eq!(seen.recent.len(), REMEMBERED);
        // "a" was forgotten as the oldest.
        assert!(seen.first_time("a"));
    }
}
