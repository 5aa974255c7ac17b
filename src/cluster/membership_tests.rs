//! Unit tests of `membership`.

use super::*;

const T: Duration = Duration::from_secs(3);

fn member(name: &str, addr: &str) -> Member {
    Member {
        name: name.into(),
        addr: addr.into(),
    }
}

fn pair(v: &str, c: &str) -> Pair {
    (v.into(), c.into())
}

#[test]
fn learns_members_once_and_never_itself() {
    let mut m = Membership::new("a", "h:1", T);
    assert_eq!(m.learn(&member("a", "h:1")), None);
    assert_eq!(m.learn(&member("x", "h:1")), None, "my own address");
    assert_eq!(m.learn(&member("b", "h:2")), Some("h:2".into()));
    assert_eq!(m.learn(&member("b", "h:2")), None);
    assert_eq!(m.peer("b").unwrap().state, PeerState::Joining);
    // A member that moved is dialled at its new address.
    assert_eq!(m.learn(&member("b", "h:3")), Some("h:3".into()));
    let names: Vec<String> = m.members().into_iter().map(|x| x.name).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn silence_marks_down_and_a_heartbeat_brings_back() {
    let t0 = Instant::now();
    let mut m = Membership::new("a", "h:1", T);
    assert_eq!(m.heard("b", "h:2", 5, t0), Some(Event::Up("b".into())));
    assert_eq!(m.heard("b", "h:2", 5, t0 + Duration::from_secs(1)), None);
    assert!(m.tick(t0 + Duration::from_secs(3)).is_empty());
    assert_eq!(
        m.tick(t0 + Duration::from_millis(4001)),
        [Event::Down("b".into())]
    );
    assert!(!m.is_up("b"));
    assert!(
        m.tick(t0 + Duration::from_secs(10)).is_empty(),
        "down only once"
    );
    assert_eq!(
        m.heard("b", "h:2", 5, t0 + Duration::from_secs(11)),
        Some(Event::Up("b".into()))
    );
    assert!(m.is_up("b"));
}

#[test]
fn a_restart_forgets_what_the_peer_said() {
    let t0 = Instant::now();
    let mut m = Membership::new("a", "h:1", T);
    m.heard("b", "h:2", 1, t0);
    m.apply_interest(
        "b",
        InterestUpdate {
            snapshot: false,
            add: vec![pair("/v", "c")],
            remove: vec![],
        },
    );
    m.set_workers("b", [("/v".to_string(), 2)].into());
    assert_eq!(m.interested("/v", "c"), ["b"]);
    assert_eq!(m.with_workers("/v"), ["b"]);
    // Same state (up), new incarnation: an Up event and a clean slate.
    assert_eq!(m.heard("b", "h:2", 2, t0), Some(Event::Up("b".into())));
    assert!(m.interested("/v", "c").is_empty());
    assert!(m.with_workers("/v").is_empty());
}

#[test]
fn interest_deltas_and_snapshots() {
    let t0 = Instant::now();
    let mut m = Membership::new("a", "h:1", T);
    m.heard("b", "h:2", 1, t0);
    m.heard("c", "h:3", 1, t0);
    let delta = |add: Vec<Pair>, remove: Vec<Pair>| InterestUpdate {
        snapshot: false,
        add,
        remove,
    };
    m.apply_interest("b", delta(vec![pair("/v", "x"), pair("/v", "y")], vec![]));
    m.apply_interest("c", delta(vec![pair("/v", "x")], vec![]));
    assert_eq!(m.interested("/v", "x"), ["b", "c"]);
    m.apply_interest("b", delta(vec![], vec![pair("/v", "x")]));
    assert_eq!(m.interested("/v", "x"), ["c"]);
    assert_eq!(m.interested("/v", "y"), ["b"]);
    m.apply_interest(
        "b",
        InterestUpdate {
            snapshot: true,
            add: vec![pair("/v", "z")],
            remove: vec![],
        },
    );
    assert!(m.interested("/v", "y").is_empty());
    assert_eq!(m.interested("/v", "z"), ["b"]);
    // Down peers get nothing.
    m.tick(t0 + Duration::from_secs(5));
    assert!(m.interested("/v", "z").is_empty());
    assert!(m.interested("/v", "x").is_empty());
}

#[test]
fn the_sequencer_is_chosen_over_live_nodes_only() {
    let t0 = Instant::now();
    let mut a = Membership::new("a", "h:1", T);
    let mut b = Membership::new("b", "h:2", T);
    a.heard("b", "h:2", 1, t0);
    a.heard("c", "h:3", 1, t0);
    b.heard("a", "h:1", 1, t0);
    b.heard("c", "h:3", 1, t0);
    for i in 0..50 {
        let channel = format!("c{i}");
        assert_eq!(a.sequencer("/v", &channel), b.sequencer("/v", &channel));
    }
    // Find a channel c sequences; when c is down, both agree on another.
    let channel = (0..)
        .map(|i| format!("c{i}"))
        .find(|ch| a.sequencer("/v", ch) == "c")
        .unwrap();
    let later = t0 + Duration::from_secs(2);
    a.heard("b", "h:2", 1, later);
    b.heard("a", "h:1", 1, later);
    a.tick(t0 + Duration::from_millis(3500));
    b.tick(t0 + Duration::from_millis(3500));
    let next = a.sequencer("/v", &channel).to_owned();
    assert_ne!(next, "c");
    assert_eq!(b.sequencer("/v", &channel), next);
}

#[test]
fn a_leave_is_immediate_and_sticky_until_a_restart() {
    let t0 = Instant::now();
    let mut m = Membership::new("a", "h:1", T);
    m.heard("b", "h:2", 7, t0);
    m.heard("c", "h:3", 1, t0);
    m.apply_interest(
        "b",
        InterestUpdate {
            snapshot: false,
            add: vec![pair("/v", "x")],
            remove: vec![],
        },
    );
    m.set_workers("b", [("/v".to_string(), 1)].into());
    let channel = (0..)
        .map(|i| format!("c{i}"))
        .find(|ch| m.sequencer("/v", ch) == "b")
        .unwrap();
    // A LEAVE from an older run of b is ignored.
    assert_eq!(m.left("b", 6), None);
    assert!(m.is_up("b"));
    assert_eq!(m.left("b", 7), Some(Event::Left("b".into())));
    assert_eq!(m.left("b", 7), None, "left only once");
    assert_eq!(m.peer("b").unwrap().state.as_str(), "left");
    assert!(m.has_left("b") && !m.is_up("b"));
    // Its roles moved at once: no timeout needed.
    assert_ne!(m.sequencer("/v", &channel), "b");
    assert!(m.interested("/v", "x").is_empty());
    assert!(m.with_workers("/v").is_empty());
    // Its last heartbeats do not bring it back, nor does the tick.
    assert_eq!(
        m.heard("b", "h:2", 7, t0 + Duration::from_millis(100)),
        None
    );
    assert_eq!(
        m.tick(t0 + Duration::from_secs(10)),
        [Event::Down("c".into())],
        "only the silent peer goes down"
    );
    assert!(m.has_left("b"));
    // A restart does.
    assert_eq!(
        m.heard("b", "h:2", 8, t0 + Duration::from_secs(11)),
        Some(Event::Up("b".into()))
    );
    assert!(m.is_up("b"));
    assert_eq!(m.left("x", 1), None, "unknown peer");
}

#[test]
fn a_leaving_node_orders_nothing() {
    let t0 = Instant::now();
    let mut a = Membership::new("a", "h:1", T);
    let mut b = Membership::new("b", "h:2", T);
    a.heard("b", "h:2", 1, t0);
    b.heard("a", "h:1", 1, t0);
    let channel = (0..)
        .map(|i| format!("c{i}"))
        .find(|ch| a.sequencer("/v", ch) == "a")
        .unwrap();
    a.leave();
    assert!(a.is_leaving());
    // a now forwards to the node b will use once it has a's LEAVE.
    b.left("a", 1);
    assert_eq!(a.sequencer("/v", &channel), "b");
    assert_eq!(b.sequencer("/v", &channel), "b");
    // Alone, a leaving node still orders for itself.
    let mut alone = Membership::new("z", "h:9", T);
    alone.leave();
    assert_eq!(alone.sequencer("/v", "x"), "z");
}

#[test]
fn local_interest_snapshot() {
    let mut local = LocalInterest::default();
    assert!(local.set(pair("/v", "b"), true));
    assert!(!local.set(pair("/v", "b"), true));
    assert!(local.set(pair("/v", "a"), true));
    assert!(local.set(pair("/v", "b"), false));
    assert!(!local.set(pair("/v", "b"), false));
    let snap = local.snapshot();
    assert!(snap.snapshot);
    assert_eq!(snap.add, [pair("/v", "a")]);
}
