//! A fan-out with more subscribers than one process may open sockets:
//! several `fanout-subscribers` processes each hold a share of them, and one
//! `fanout-publisher` process publishes and keeps the closed loop. They talk
//! over UDP on loopback, in short text datagrams:
//!
//! ```text
//! subscribers -> publisher   ready                      (every 500 ms until go)
//!                            progress <n>               (the share's slowest subscriber)
//!                            done <at_stop> <total> <histogram>
//! publisher -> subscribers   go
//!                            stop <published>
//! ```
//!
//! `at_stop` is what the share had delivered when the publishing time was
//! up (the rate's numerator, as in `fanout`); `total` is what it had once
//! every subscriber got every message, or after 30 s (the loss check).
//! Stamps are wall-clock nanoseconds, so latencies compare across
//! processes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::proto::Proto;
use super::stats::Histogram;
use super::{stamped, wall_nanos, wsclient, Subscribers};

/// Broadcasts the publisher keeps in flight ahead of the slowest
/// subscriber (as `fanout`).
const WINDOW: u64 = 64;
/// How long the subscribers of a share wait for the last messages.
const DRAIN: Duration = Duration::from_secs(30);

/// What one `fanout-subscribers` process holds.
pub struct Share {
    pub addr: String,
    pub path: String,
    pub subscribers: usize,
    pub channel: String,
    pub source_net: u8,
    pub proto: Proto,
    /// The publisher's UDP address.
    pub publisher: String,
}

/// Connects a share of the subscribers, reports to the publisher, and
/// ends when the publisher says stop (or after `seconds` without it).
pub async fn subscribers(share: Share, seconds: u64) -> io::Result<()> {
    let names = [share.channel.clone()];
    let subs = Subscribers::connect(
        &share.addr,
        &[],
        &share.path,
        share.subscribers,
        &names,
        share.source_net,
        share.proto,
    )
    .await?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(&share.publisher).await?;
    let mut buf = vec![0u8; 2048];
    // Ready until the publisher answers go.
    loop {
        socket.send(b"ready").await?;
        let got = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await;
        if let Ok(Ok(n)) = got {
            if &buf[..n] == b"go" {
                break;
            }
        }
    }
    let slowest = || {
        (subs.progress.iter())
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let limit = Instant::now() + Duration::from_secs(seconds);
    let mut reported = 0;
    let published = loop {
        if Instant::now() > limit {
            break None;
        }
        let low = slowest();
        if low != reported {
            reported = low;
            socket.send(format!("progress {low}").as_bytes()).await?;
        }
        let got = tokio::time::timeout(Duration::from_millis(1), socket.recv(&mut buf)).await;
        if let Ok(Ok(n)) = got {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(count) = text.strip_prefix("stop ") {
                break count.trim().parse::<u64>().ok();
            }
        }
    };
    let at_stop = subs.delivered.load(Ordering::Relaxed);
    let drained = Instant::now() + DRAIN;
    while published.is_some_and(|p| slowest() < p) && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subs.stop.store(true, Ordering::Relaxed);
    let total = subs.delivered.load(Ordering::Relaxed);
    let done = format!("done {at_stop} {total} {}", subs.hist.borrow().encode());
    socket.send(done.as_bytes()).await?;
    for task in subs.tasks {
        task.abort();
    }
    println!(
        "{{\"mode\":\"fanout-subscribers\",\"subscribers\":{},\"delivered\":{total}}}",
        share.subscribers
    );
    Ok(())
}

/// What the publisher sends, and to whom.
pub struct Publish {
    /// Servers to publish each message to: one node of a cluster, or each
    /// shard of servers that do not forward to one another.
    pub addrs: Vec<String>,
    pub path: String,
    pub channel: String,
    pub size: usize,
    /// Messages per second; 0 = as fast as the slowest subscriber allows.
    pub rate: u64,
    pub seconds: u64,
    pub proto: Proto,
    /// Subscriber processes to wait for, and their subscribers in all.
    pub processes: usize,
    pub subscribers: usize,
    /// Where the subscriber processes report.
    pub listen: String,
}

/// Waits for every subscriber process, publishes for `seconds`, and
/// prints the merged result as `fanout` does.
pub async fn publisher(run: Publish) -> io::Result<()> {
    let socket = UdpSocket::bind(&run.listen).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut peers: HashMap<SocketAddr, u64> = HashMap::new();
    let waiting = Instant::now() + Duration::from_secs(900);
    while peers.len() < run.processes {
        let got = tokio::time::timeout_at(waiting.into(), socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, from))) = got else {
            return Err(io::Error::other(format!(
                "{} of {} subscriber processes ready",
                peers.len(),
                run.processes
            )));
        };
        if &buf[..n] == b"ready" {
            peers.insert(from, 0);
        }
    }
    let mut publishers = Vec::new();
    for addr in &run.addrs {
        let (mut tx, mut rx) = wsclient::connect(addr, &run.path).await?;
        run.proto.hello(&mut tx, &mut rx).await?;
        // Drain the publisher's own replies.
        tokio::task::spawn_local(async move { while rx.next().await.is_ok() {} });
        publishers.push(tx);
    }
    for peer in peers.keys() {
        socket.send_to(b"go", peer).await?;
    }
    // Other nodes of a cluster learn of their subscribers' interest
    // asynchronously.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = Instant::now();
    let deadline = began + Duration::from_secs(run.seconds);
    let mut sent: u64 = 0;
    while Instant::now() < deadline {
        if let Some(gap) = (sent * 1_000_000_000).checked_div(run.rate) {
            tokio::time::sleep_until((began + Duration::from_nanos(gap)).into()).await;
        } else {
            while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
                note_progress(&mut peers, from, &buf[..n]);
            }
            let slowest = peers.values().copied().min().unwrap_or(0);
            if sent.saturating_sub(slowest) >= WINDOW {
                for tx in &mut publishers {
                    tx.flush().await?;
                }
                // Bounded, so that a stalled server still ends the run.
                let got =
                    tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf))
                        .await;
                if let Ok(Ok((n, from))) = got {
                    note_progress(&mut peers, from, &buf[..n]);
                }
                continue;
            }
        }
        let payload = stamped(run.size, wall_nanos());
        for tx in &mut publishers {
            run.proto.publish(tx, &run.channel, &payload);
            if run.rate > 0 {
                tx.flush().await?;
            }
        }
        sent += 1;
    }
    for tx in &mut publishers {
        tx.flush().await?;
    }
    let elapsed = began.elapsed().as_secs_f64();
    for peer in peers.keys() {
        socket
            .send_to(format!("stop {sent}").as_bytes(), peer)
            .await?;
    }
    let (mut at_stop, mut total, mut hist) = (0u64, 0u64, Histogram::default());
    let mut done = 0;
    let waiting = Instant::now() + DRAIN + Duration::from_secs(10);
    while done < run.processes {
        let got = tokio::time::timeout_at(waiting.into(), socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = got else { break };
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some(report) = text.strip_prefix("done ") else {
            continue;
        };
        let mut fields = report.splitn(3, ' ');
        let mut count = || fields.next().and_then(|f| f.parse::<u64>().ok());
        at_stop += count().unwrap_or(0);
        total += count().unwrap_or(0);
        hist.merge_encoded(fields.next().unwrap_or(""));
        done += 1;
    }
    println!(
        "{{\"mode\":\"fanout\",\"proto\":\"{}\",\"subscribers\":{},\"processes\":{},\"reported\":{done},\"channels\":1,\"size\":{},\"rate\":{},\"published\":{sent},\"deliveries_per_sec\":{:.0},\"expected_deliveries\":{},\"delivered\":{total},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        run.proto.name(),
        run.subscribers,
        run.processes,
        run.size,
        run.rate,
        at_stop as f64 / elapsed,
        sent * run.subscribers as u64,
        hist.quantile(0.5) as f64 / 1000.0,
        hist.quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}

/// Takes a `progress <n>` datagram from a known subscriber process.
fn note_progress(peers: &mut HashMap<SocketAddr, u64>, from: SocketAddr, datagram: &[u8]) {
    let text = String::from_utf8_lossy(datagram);
    let Some(n) = text.strip_prefix("progress ") else {
        return;
    };
    if let (Some(slot), Ok(n)) = (peers.get_mut(&from), n.trim().parse::<u64>()) {
        *slot = (*slot).max(n);
    }
}
