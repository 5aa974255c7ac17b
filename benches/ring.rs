//! Ring throughput: one writer thread, one reader thread, frames per second
//! for 64-byte and 1 KiB bodies, in both writer modes. About 4 seconds.
//!
//! Run with `cargo bench --bench ring` (a plain `main`, `harness = false`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use webrocket::stream::{Ring, Writers};

const CAPACITY: usize = 1 << 20;
const RUN: Duration = Duration::from_secs(1);

/// Frames handed to the reader, and how long it took.
fn run(body: usize, writers: Writers) -> (u64, Duration) {
    let ring = Arc::new(Ring::anonymous(CAPACITY, writers).expect("map the ring"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let ring = Arc::clone(&ring);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match ring.try_claim(2, body) {
                    Ok(mut claim) => {
                        claim[..8].copy_from_slice(&seq.to_le_bytes());
                        claim.commit();
                        seq += 1;
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            }
        })
    };
    let started = Instant::now();
    let mut frames = 0u64;
    let mut expected = 0u64;
    while started.elapsed() < RUN {
        let read = ring.read(256, |_, body| {
            let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
            assert_eq!(seq, expected, "lost or reordered frame");
            expected += 1;
            black_box(body);
        });
        if read == 0 {
            std::hint::spin_loop();
        }
        frames += read as u64;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    (frames, elapsed)
}

fn main() {
    for body in [64, 1024] {
        for writers in [Writers::One, Writers::Many] {
            let (frames, elapsed) = run(body, writers);
            let rate = frames as f64 / elapsed.as_secs_f64();
            println!(
                "ring {:<4} body {body:>4} B: {:>7.2} M frames/s, {:>8.1} MB/s",
                format!("{writers:?}").to_lowercase(),
                rate / 1e6,
                rate * body as f64 / 1e6,
            );
        }
    }
}
