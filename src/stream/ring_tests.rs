//! Tests of `ring.rs`: layout bytes, wrap, full, claims, and thread hammers.

use super::*;
use crate::stream::descriptor::MIN_CAPACITY;

fn ring(capacity: usize, writers: Writers) -> (Arc<Region>, Ring) {
    let region = Arc::new(Region::anonymous(Ring::required_length(capacity)).unwrap());
    let ring = Ring::new(Arc::clone(&region), 0, capacity, writers).unwrap();
    (region, ring)
}

fn read_all(ring: &Ring) -> Vec<(i32, Vec<u8>)> {
    let mut out = Vec::new();
    ring.read(usize::MAX, |type_id, body| {
        out.push((type_id, body.to_vec()))
    });
    out
}

#[test]
fn record_bytes_match_the_descriptor() {
    let (region, ring) = ring(1024, Writers::One);
    ring.write(0x4000_0002, &[b"abc"]).unwrap();
    ring.write(0, &[]).unwrap();
    // length 11 = 8 + 3, type, body, then alignment to 16.
    assert_eq!(
        region.window(0, 16),
        &[11, 0, 0, 0, 2, 0, 0, 0x40, b'a', b'b', b'c', 0, 0, 0, 0, 0]
    );
    // RESET (type 0) with an empty body is a valid, published record.
    assert_eq!(region.window(16, 8), &[8, 0, 0, 0, 0, 0, 0, 0]);
    // Tail at capacity + 128: two records, 16 + 8 bytes.
    assert_eq!(region.window(1024 + 128, 8), &24i64.to_le_bytes());
    assert_eq!(region.load_i64(1024 + 384, Relaxed), 0);
    assert_eq!(
        read_all(&ring),
        vec![(0x4000_0002, b"abc".to_vec()), (0, Vec::new())]
    );
    // The reader moved the head; with one writer it leaves the bytes.
    assert_eq!(region.window(16, 8), &[8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(region.window(1024 + 384, 8), &24i64.to_le_bytes());
}

#[test]
fn gather_write_concatenates_parts() {
    let (_, ring) = ring(1024, Writers::One);
    ring.write(7, &[b"he", b"", b"llo"]).unwrap();
    assert_eq!(read_all(&ring), vec![(7, b"hello".to_vec())]);
    assert!(ring.is_empty());
}

#[test]
fn wrap_inserts_a_padding_record() {
    let (region, ring) = ring(128, Writers::One);
    // Six 16-byte records move head and tail to 96.
    for i in 0..6u8 {
        ring.write(1, &[&[i; 8]]).unwrap();
    }
    assert_eq!(read_all(&ring).len(), 6);
    // A 24-byte record fits in the last 32 bytes: index 96..120.
    ring.write(2, &[&[9; 16]]).unwrap();
    // 8 bytes are left before the end: a 16-byte record wraps.
    ring.write(3, &[b"wrapped!"]).unwrap();
    assert_eq!(region.load_i32(120, Relaxed), 8, "padding length");
    assert_eq!(region.load_i32(124, Relaxed), record::PADDING);
    assert_eq!(region.window(0, 8), &[16, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(region.window(8, 8), b"wrapped!");
    assert_eq!(ring.size(), 24 + 8 + 16);
    assert_eq!(
        read_all(&ring),
        vec![(2, vec![9; 16]), (3, b"wrapped!".to_vec())]
    );
    assert!(ring.is_empty());
}

#[test]
fn many_writer_reader_zeroes_what_it_consumed() {
    let (region, ring) = ring(128, Writers::Many);
    ring.write(1, &[&[5; 16]]).unwrap();
    assert_eq!(read_all(&ring).len(), 1);
    assert_eq!(region.window(0, 24), &[0u8; 24][..]);
}

#[test]
fn wrap_waits_for_the_reader_to_free_the_start() {
    let (_, ring) = ring(64, Writers::One);
    ring.write(1, &[&[1; 8]]).unwrap(); // 0..16
    ring.write(1, &[&[2; 8]]).unwrap(); // 16..32
    ring.write(1, &[&[3; 8]]).unwrap(); // 32..48
    assert_eq!(ring.read(1, |_, _| {}), 1); // head 16
                                            // The 16 bytes left at the end fit exactly: no padding.
    ring.write(1, &[&[4; 8]]).unwrap(); // 48..64
                                        // The head is at 16, so a 16-byte record fits at 0..16.
    ring.write(1, &[&[5; 8]]).unwrap();
    assert_eq!(
        ring.write(1, &[&[6; 8]]),
        Err(RingFull::NoSpace { required: 16 })
    );
    let bodies: Vec<u8> = read_all(&ring).iter().map(|(_, b)| b[0]).collect();
    assert_eq!(bodies, vec![2, 3, 4, 5]);
}

#[test]
fn full_ring_refuses_then_accepts_after_read() {
    for writers in [Writers::One, Writers::Many] {
        let (_, ring) = ring(128, writers);
        let mut written = 0;
        while ring.write(1, &[&[0xab; 16]]).is_ok() {
            written += 1;
        }
        // Five 24-byte records; the sixth would wrap onto unread data.
        assert_eq!(written, 5, "{writers:?}");
        assert_eq!(
            ring.write(1, &[&[0; 16]]),
            Err(RingFull::NoSpace { required: 24 })
        );
        assert_eq!(ring.read(2, |_, body| assert_eq!(body, &[0xab; 16])), 2);
        ring.write(1, &[&[0xcd; 16]]).unwrap();
        let all = read_all(&ring);
        assert_eq!(all.len(), written - 2 + 1);
        assert_eq!(all.last().unwrap().1, vec![0xcd; 16]);
    }
}

#[test]
fn oversize_and_reserved_types_are_errors() {
    let (_, ring) = ring(256, Writers::One);
    assert_eq!(ring.max_body(), 32);
    assert_eq!(ring.capacity(), 256);
    assert!(ring.write(1, &[&[0; 32]]).is_ok());
    assert_eq!(
        ring.write(1, &[&[0; 20], &[0; 13]]),
        Err(RingFull::TooLong { len: 33, max: 32 })
    );
    assert_eq!(
        ring.try_claim(-1, 4).unwrap_err(),
        RingFull::ReservedType(-1)
    );
    assert_eq!(read_all(&ring).len(), 1);
}

#[test]
fn claim_commit_and_abort() {
    let (region, ring) = ring(1024, Writers::Many);
    let mut claim = ring.try_claim(5, 4).unwrap();
    assert_eq!(&claim[..], &[0; 4], "claimed space starts zeroed");
    // Claimed, unpublished: -length in the header, the reader waits.
    assert_eq!(region.load_i32(0, Relaxed), -12);
    assert_eq!(ring.read(10, |_, _| panic!("unpublished")), 0);
    claim.copy_from_slice(b"data");
    claim.commit();
    drop(ring.try_claim(6, 9).unwrap()); // aborted by drop
    ring.try_claim(6, 3).unwrap().abort(); // aborted explicitly
    ring.write(8, &[b"after"]).unwrap();
    assert_eq!(region.load_i32(16 + 4, Relaxed), record::PADDING);
    assert_eq!(
        read_all(&ring),
        vec![(5, b"data".to_vec()), (8, b"after".to_vec())]
    );
}

#[test]
fn reader_stops_at_an_open_claim_and_resumes() {
    let (_, ring) = ring(1024, Writers::Many);
    ring.write(1, &[b"a"]).unwrap();
    let mut open = ring.try_claim(2, 1).unwrap();
    ring.write(3, &[b"c"]).unwrap();
    assert_eq!(read_all(&ring), vec![(1, b"a".to_vec())]);
    open[0] = b'b';
    open.commit();
    assert_eq!(
        read_all(&ring),
        vec![(2, b"b".to_vec()), (3, b"c".to_vec())]
    );
}

#[test]
fn read_respects_the_limit() {
    let (_, ring) = ring(1024, Writers::One);
    for i in 0..5 {
        ring.write(i, &[]).unwrap();
    }
    let mut seen = Vec::new();
    assert_eq!(ring.read(2, |t, _| seen.push(t)), 2);
    assert_eq!(ring.read(0, |t, _| seen.push(t)), 0);
    assert_eq!(ring.read(10, |t, _| seen.push(t)), 3);
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

#[test]
fn correlation_ids_are_shared_through_the_region() {
    let (region, a) = ring(1024, Writers::Many);
    let b = Ring::new(region, 0, 1024, Writers::Many).unwrap();
    assert_eq!(a.next_correlation_id(), 1);
    assert_eq!(b.next_correlation_id(), 2);
    assert_eq!(a.next_correlation_id(), 3);
}

#[test]
fn consumer_heartbeat_round_trips() {
    let (region, ring) = ring(1024, Writers::One);
    assert_eq!(ring.consumer_heartbeat(), 0);
    ring.set_consumer_heartbeat(1_700_000_000_123);
    assert_eq!(ring.consumer_heartbeat(), 1_700_000_000_123);
    assert_eq!(region.load_i64(1024 + 640, Relaxed), 1_700_000_000_123);
}

#[test]
fn bad_layouts_are_rejected() {
    let region = Arc::new(Region::anonymous(4096).unwrap());
    let bad = |offset, capacity| Ring::new(Arc::clone(&region), offset, capacity, Writers::One);
    assert!(matches!(bad(0, 1000), Err(LayoutError::Capacity(1000))));
    assert!(matches!(bad(0, 32), Err(LayoutError::Capacity(32))));
    assert!(matches!(bad(0, 4096), Err(LayoutError::Bounds { .. })));
    assert!(matches!(bad(4, 1024), Err(LayoutError::Bounds { .. })));
    assert!(bad(0, 2048).is_ok());
    assert!(Ring::anonymous(100, Writers::One).is_err());
    assert_eq!(
        Ring::anonymous(MIN_CAPACITY, Writers::One)
            .unwrap()
            .max_body(),
        8
    );
}

/// A hammer body: writer, sequence, a sequence-derived payload, and a CRC of
/// all of it, so loss, duplication, reordering and tearing all show.
fn body(writer: u8, seq: u64) -> Vec<u8> {
    let mut body = vec![writer];
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend((0..seq % 37).map(|i| (seq as u8).wrapping_add(i as u8)));
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

fn check(body: &[u8], next: &mut [u64]) {
    let (data, crc) = body.split_at(body.len() - 4);
    assert_eq!(crc32fast::hash(data).to_le_bytes(), crc, "torn record");
    let writer = usize::from(data[0]);
    let seq = u64::from_le_bytes(data[1..9].try_into().unwrap());
    assert_eq!(seq, next[writer], "writer {writer} out of order");
    assert_eq!(body, &self::body(data[0], seq)[..]);
    next[writer] += 1;
}

fn hammer(writers: Writers, threads: u8, count: u64) {
    let ring = Arc::new(Ring::anonymous(4096, writers).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|writer| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for seq in 0..count {
                    let body = body(writer, seq);
                    while ring
                        .write(0x4000_0000 | i32::from(writer), &[&body])
                        .is_err()
                    {
                        std::hint::spin_loop();
                    }
                }
            })
        })
        .collect();
    let mut next = vec![0u64; usize::from(threads)];
    let total = count * u64::from(threads);
    let mut seen = 0;
    while seen < total {
        let n = ring.read(64, |type_id, body| {
            assert_eq!(type_id, 0x4000_0000 | i32::from(body[0]));
            check(body, &mut next);
        });
        if n == 0 {
            std::thread::yield_now();
        }
        seen += n as u64;
    }
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(ring.read(usize::MAX, |_, _| panic!("extra record")), 0);
    assert!(ring.is_empty());
    assert!(next.iter().all(|&n| n == count));
}

#[test]
fn hammer_one_writer() {
    hammer(Writers::One, 1, 100_000);
}

#[test]
fn hammer_two_writers() {
    hammer(Writers::Many, 2, 50_000);
}

#[test]
fn truncated_claim_gives_the_rest_back() {
    let ring = Ring::anonymous(2048, Writers::One).unwrap();
    let mut claim = ring.try_claim(7, 200).unwrap();
    claim[..3].copy_from_slice(b"abc");
    claim.truncate(3);
    claim.commit();
    // Header 8 + body 3, aligned to 16: the other 192 bytes came back.
    assert_eq!(ring.size(), 16);
    ring.write(8, &[b"next"]).unwrap();
    let mut seen = Vec::new();
    ring.read(10, |t, body| seen.push((t, body.to_vec())));
    assert_eq!(seen, [(7, b"abc".to_vec()), (8, b"next".to_vec())]);
    assert!(ring.is_empty());
}

#[test]
fn cancelled_claim_leaves_nothing_behind() {
    let ring = Ring::anonymous(2048, Writers::One).unwrap();
    let claim = ring.try_claim(7, 250).unwrap();
    claim.cancel();
    assert!(ring.is_empty());
    assert_eq!(ring.size(), 0);
    // The space is reusable at once, with no padding record in the way.
    ring.write(9, &[b"x"]).unwrap();
    let mut seen = Vec::new();
    ring.read(10, |t, body| seen.push((t, body.to_vec())));
    assert_eq!(seen, [(9, b"x".to_vec())]);
}

#[test]
fn truncate_and_cancel_across_a_wrap() {
    let ring = Ring::anonymous(256, Writers::One).unwrap();
    for round in 0..50u8 {
        let mut claim = ring.try_claim(1, 24).unwrap();
        claim[0] = round;
        claim.truncate(1);
        claim.commit();
        ring.try_claim(2, 20).unwrap().cancel();
        let mut seen = Vec::new();
        ring.read(10, |t, body| seen.push((t, body.to_vec())));
        assert_eq!(seen, [(1, vec![round])], "round {round}");
    }
}

/// Resident pages of `region` (mincore), to see what a release gave back.
#[allow(unsafe_code)]
fn resident_pages(region: &Region, offset: usize, len: usize) -> usize {
    let page = 4096;
    let start = offset / page * page;
    let pages = (offset + len - start).div_ceil(page);
    let mut flags = vec![0u8; pages];
    let at = region.window(start, pages * page).as_ptr();
    // SAFETY: `at` is page aligned and `pages` pages lie inside the mapping.
    let rc = unsafe { libc::mincore(at as *mut libc::c_void, pages * page, flags.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore failed");
    flags.iter().filter(|f| **f & 1 == 1).count()
}

#[test]
fn released_free_space_reads_zero_and_the_ring_goes_on() {
    let capacity = 64 * 1024;
    let (region, ring) = ring(capacity, Writers::One);
    // One and a half laps of 1 KiB records touch every page of the data.
    for i in 0..96u32 {
        ring.write(1, &[&[i as u8 | 1; 1000]]).unwrap();
        assert_eq!(read_all(&ring).len(), 1);
    }
    assert_eq!(resident_pages(&region, 0, capacity), capacity / 4096);
    let released = ring.release_free_space();
    // Everything but the page the tail is in.
    assert!(released >= capacity - 4096, "released {released}");
    assert!(resident_pages(&region, 0, capacity) <= 1);
    assert_eq!(ring.release_free_space(), 0, "nothing new to release");
    // Released pages read as zero (only the tail's page was kept), and
    // records keep flowing over them, wrap included.
    let tail_page = (ring.tail_position() as usize & (capacity - 1)) / 4096;
    for page in (0..capacity / 4096).filter(|&p| p != tail_page) {
        assert!(region.window(page * 4096, 4096).iter().all(|b| *b == 0));
    }
    for i in 0..200u32 {
        ring.write(2, &[&i.to_le_bytes(), &[7; 900]]).unwrap();
        let got = read_all(&ring);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1[..4], i.to_le_bytes());
    }
}

#[test]
fn release_spares_unread_records() {
    let capacity = 64 * 1024;
    let (_, ring) = ring(capacity, Writers::One);
    for i in 0..40u32 {
        ring.write(3, &[&[i as u8; 1000]]).unwrap();
    }
    ring.release_free_space();
    let got = read_all(&ring);
    assert_eq!(got.len(), 40);
    for (i, (_, body)) in got.iter().enumerate() {
        assert!(body.iter().all(|b| *b == i as u8), "record {i} changed");
    }
    // Read since, so the pages those records held go back too.
    assert!(ring.release_free_space() > 0);
}

#[test]
fn many_writer_rings_are_left_alone() {
    let (_, ring) = ring(64 * 1024, Writers::Many);
    ring.write(1, &[&[1; 1000]]).unwrap();
    read_all(&ring);
    assert_eq!(ring.release_free_space(), 0);
}

#[test]
fn one_writer_reader_leaves_consumed_space_as_it_was() {
    let (region, ring) = ring(1024, Writers::One);
    ring.write(3, &[&[0xAB; 40]]).unwrap();
    assert_eq!(read_all(&ring), vec![(3, vec![0xAB; 40])]);
    // Not zeroed: the body's bytes are still there, and nothing reads them.
    assert_eq!(region.load_i32(8, Relaxed), i32::from_le_bytes([0xAB; 4]));
    assert!(ring.is_empty());
    assert_eq!(ring.read(10, |_, _| panic!("read past the tail")), 0);
}

#[test]
fn old_laps_never_look_like_records() {
    // Bodies that are valid-looking headers everywhere (length 16, type 1),
    // over many laps of records, shortened claims and cancelled claims of
    // every size: the reader sees exactly what was written, in order.
    let (_, ring) = ring(512, Writers::One);
    let fake: Vec<u8> = [16i32.to_le_bytes(), 1i32.to_le_bytes()].concat().repeat(8);
    let mut expected = Vec::new();
    let mut seen = Vec::new();
    for round in 0..2_000usize {
        let len = 1 + round * 7 % 60;
        if round % 3 == 0 {
            let mut claim = ring.try_claim(2, len).unwrap();
            let keep = len / 2;
            for (i, byte) in claim[..keep].iter_mut().enumerate() {
                *byte = fake[i % fake.len()];
            }
            claim.truncate(keep);
            claim.commit();
            expected.push((2, fake[..keep].iter().copied().cycle().take(keep).collect()));
        } else if round % 7 == 0 {
            ring.try_claim(4, len).unwrap().cancel();
        } else {
            let body: Vec<u8> = fake.iter().copied().cycle().take(len).collect();
            ring.write(5, &[&body]).unwrap();
            expected.push((5, body));
        }
        if round % 5 == 4 {
            ring.read(usize::MAX, |t, body| seen.push((t, body.to_vec())));
        }
    }
    ring.read(usize::MAX, |t, body| seen.push((t, body.to_vec())));
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "records differ");
}
