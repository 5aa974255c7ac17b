//! webrocket-bench: the load generator behind the benchmark figures. It
//! speaks WebRocket's client protocol, plain echo, and NATS over WebSocket,
//! so that webrocket and its peers are measured by the same client.
//!
//!     webrocket-bench echo   --addr HOST:PORT --path /echo --connections 100 --size 64
//!     webrocket-bench fanout --addr HOST:PORT --path /bench --subscribers 1000 --size 100 [--rate N] [--proto nats]
//!                            [--channels 10] [--source-net N]
//!     webrocket-bench ideal  --addr HOST:PORT
//!     webrocket-bench idle   --addr HOST:PORT --path /bench --connections 10000 [--proto nats]
//!     webrocket-bench sequencer --nodes n0,n1,n2 --vhost /bench --channel bench
//!     webrocket-bench recovery --addr HOST:PORT --path /hist --count 10000
//!
//! `fanout --sub-addr A,B,C` spreads the subscribers round robin over
//! several nodes of a cluster (the publisher stays on `--addr`);
//! `sequencer` prints which of the named nodes orders a channel.
//! `fanout --channels N` spreads the subscribers round robin over channels
//! `bench0`..`bench{N-1}`, and the publisher cycles through them.
//! `fanout-subscribers` and `fanout-publisher` are `fanout` spread over
//! processes, for more subscribers than one process may open sockets
//! (`spread.rs`).
//! `ideal` is not a client: it serves the fan-out load as the best a
//! WebRocket server could (see `ideal.rs`), the reference for `fanout`.
//!
//! Every run is bounded by `--seconds`; results are printed as one JSON line.

mod ideal;
mod proto;
mod recovery;
mod spread;
mod stats;
mod wsclient;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use self::proto::Proto;
use self::stats::Histogram;

#[derive(Parser)]
#[command(about = "Load generator for webrocket and its peers")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtoArg {
    Webrocket,
    Nats,
}

#[derive(Subcommand)]
enum Mode {
    /// Closed-loop echo: each connection sends a message and waits for it.
    Echo {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "/echo")]
        path: String,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Pause before each message (measures wake-up after idle).
        #[arg(long, default_value_t = 0)]
        gap_ms: u64,
    },
    /// One channel, many subscribers, one publisher.
    Fanout {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "/bench")]
        path: String,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per second; 0 = as fast as the slowest subscriber allows.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value = "webrocket")]
        proto: ProtoArg,
        /// Subscribers connect round robin to these `HOST:PORT`s
        /// (comma-separated) instead of `--addr`.
        #[arg(long, value_delimiter = ',')]
        sub_addr: Vec<String>,
        /// Channels: 1 is the channel `bench`; N > 1 spreads subscribers
        /// round robin over `bench0`..`bench{N-1}` and publishes to each
        /// in turn.
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Subscribers connect from 127.0.N.x (as `idle` does), for more
        /// connections than one source address has ports; 0 = the default
        /// source address.
        #[arg(long, default_value_t = 0)]
        source_net: u8,
    },
    /// A share of a fan-out's subscribers, in a process of its own, reporting
    /// to a `fanout-publisher` (for more subscribers than one process may
    /// open sockets).
    FanoutSubscribers {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "/bench")]
        path: String,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value = "bench")]
        channel: String,
        #[arg(long, value_enum, default_value = "webrocket")]
        proto: ProtoArg,
        #[arg(long, default_value_t = 1)]
        source_net: u8,
        /// The publisher's UDP address.
        #[arg(long)]
        publisher: String,
        /// Gives up this long after connecting if the publisher never says
        /// stop.
        #[arg(long, default_value_t = 1200)]
        seconds: u64,
    },
    /// The publisher of a fan-out whose subscribers are in
    /// `fanout-subscribers` processes; prints the merged result.
    FanoutPublisher {
        /// Servers each message is published to (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        #[arg(long, default_value = "/bench")]
        path: String,
        #[arg(long, default_value = "bench")]
        channel: String,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value = "webrocket")]
        proto: ProtoArg,
        /// Subscriber processes to wait for.
        #[arg(long)]
        processes: usize,
        /// Their subscribers in all.
        #[arg(long)]
        subscribers: usize,
        /// UDP address the subscriber processes report to.
        #[arg(long)]
        listen: String,
    },
    /// A single-threaded server that answers the fan-out load as well as a
    /// WebRocket server could (the reference for `fanout`).
    Ideal {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
    },
    /// Opens subscribed connections and holds them (memory per connection).
    Idle {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "/bench")]
        path: String,
        #[arg(long, default_value_t = 10000)]
        connections: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, value_enum, default_value = "webrocket")]
        proto: ProtoArg,
        /// Source addresses are 127.0.N.x: runs back to back should use
        /// different N, so that ports in TIME_WAIT do not collide.
        #[arg(long, default_value_t = 1)]
        source_net: u8,
    },
    /// Time to recover `--count` missed messages with `subscribe` +
    /// `since` (the vhost must keep a history).
    Recovery {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "/hist")]
        path: String,
        #[arg(long, default_value_t = 10000)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Prints the node among `--nodes` that orders `(vhost, channel)`
    /// when all of them are up (the cluster's rendezvous hash).
    Sequencer {
        /// Node names, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        #[arg(long, default_value = "/bench")]
        vhost: String,
        #[arg(long, default_value = "bench")]
        channel: String,
    },
}

fn proto(arg: ProtoArg) -> Proto {
    match arg {
        ProtoArg::Webrocket => Proto::Webrocket,
        ProtoArg::Nats => Proto::Nats,
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Mode::Sequencer {
        nodes,
        vhost,
        channel,
    } = &args.mode
    {
        let nodes = nodes.iter().map(String::as_str);
        let chosen = webrocket::cluster::rendezvous::choose(nodes, vhost, channel);
        println!("{}", chosen.unwrap_or_default());
        return Ok(());
    }
    if let Mode::Ideal { addr } = &args.mode {
        return ideal::run(addr);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        match args.mode {
            Mode::Echo {
                addr,
                path,
                connections,
                size,
                seconds,
                gap_ms,
            } => echo(addr, path, connections, size, seconds, gap_ms).await,
            Mode::Fanout {
                addr,
                path,
                subscribers,
                size,
                rate,
                seconds,
                proto: p,
                sub_addr,
                channels,
                source_net,
            } => {
                let load = Load {
                    subscribers,
                    size,
                    rate,
                    seconds,
                    channels: channels.max(1),
                    source_net,
                };
                fanout(addr, sub_addr, path, load, proto(p)).await
            }
            Mode::FanoutSubscribers {
                addr,
                path,
                subscribers,
                channel,
                proto: p,
                source_net,
                publisher,
                seconds,
            } => {
                let share = spread::Share {
                    addr,
                    path,
                    subscribers,
                    channel,
                    source_net,
                    proto: proto(p),
                    publisher,
                };
                spread::subscribers(share, seconds).await
            }
            Mode::FanoutPublisher {
                addr,
                path,
                channel,
                size,
                rate,
                seconds,
                proto: p,
                processes,
                subscribers,
                listen,
            } => {
                let run = spread::Publish {
                    addrs: addr,
                    path,
                    channel,
                    size,
                    rate,
                    seconds,
                    proto: proto(p),
                    processes,
                    subscribers,
                    listen,
                };
                spread::publisher(run).await
            }
            Mode::Idle {
                addr,
                path,
                connections,
                seconds,
                proto: p,
                source_net,
            } => idle(addr, path, connections, seconds, proto(p), source_net).await,
            Mode::Recovery {
                addr,
                path,
                count,
                size,
            } => recovery::recovery(addr, path, count, size).await,
            Mode::Sequencer { .. } | Mode::Ideal { .. } => Ok(()),
        }
    })
}

fn now_nanos(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Wall-clock nanoseconds, for stamps that publisher and subscribers in
/// different processes compare.
fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A text payload of `size` bytes starting with a 20-digit timestamp.
fn stamped(size: usize, nanos: u64) -> Vec<u8> {
    let mut payload = format!("{nanos:020}").into_bytes();
    payload.resize(size.max(20), b'x');
    payload
}

fn stamp_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.get(..20)?).ok()?.parse().ok()
}

async fn echo(
    addr: String,
    path: String,
    connections: usize,
    size: usize,
    seconds: u64,
    gap_ms: u64,
) -> std::io::Result<()> {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (mut tx, mut rx) = wsclient::connect(&addr, &path).await?;
        let stop = Arc::clone(&stop);
        tasks.push(tokio::task::spawn_local(async move {
            let mut hist = Histogram::default();
            while !stop.load(Ordering::Relaxed) {
                if gap_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                }
                let sent = now_nanos(start);
                if tx.send_text(&stamped(size, sent)).await.is_err() || rx.next().await.is_err() {
                    break;
                }
                hist.record(now_nanos(start) - sent);
            }
            hist
        }));
    }
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let mut all = Histogram::default();
    for task in tasks {
        if let Ok(hist) = task.await {
            all.merge(&hist);
        }
    }
    println!(
        "{{\"mode\":\"echo\",\"connections\":{connections},\"size\":{size},\"gap_ms\":{gap_ms},\"messages_per_sec\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        all.count() as f64 / elapsed,
        all.quantile(0.5) as f64 / 1000.0,
        all.quantile(0.99) as f64 / 1000.0,
        all.quantile(1.0) as f64 / 1000.0
    );
    Ok(())
}

/// What `fanout` sends and for how long.
struct Load {
    subscribers: usize,
    size: usize,
    rate: u64,
    seconds: u64,
    channels: usize,
    /// Subscribers connect from 127.0.`source_net`.x unless 0.
    source_net: u8,
}

/// Subscribers, each on its own connection and task, counting what they
/// get and when.
pub(crate) struct Subscribers {
    pub stop: Arc<AtomicBool>,
    pub delivered: Arc<AtomicU64>,
    /// Deliveries per subscriber: the slowest one bounds the publisher.
    pub progress: Arc<Vec<AtomicU64>>,
    /// Wakes the publisher when a subscriber got something, so that it
    /// waits for the window to open without polling everyone's progress.
    pub progressed: Rc<tokio::sync::Notify>,
    /// Publish-to-deliver latencies.
    pub hist: Rc<RefCell<Histogram>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscribers {
    /// Connects `count` subscribers, round robin over `sub_addrs` (or to
    /// `addr`) and over the channels `names`, from 127.0.`source_net`.x
    /// unless it is 0; each has its subscription confirmed.
    pub async fn connect(
        addr: &str,
        sub_addrs: &[String],
        path: &str,
        count: usize,
        names: &[String],
        source_net: u8,
        proto: Proto,
    ) -> std::io::Result<Subscribers> {
        let mut subs = Subscribers {
            stop: Arc::new(AtomicBool::new(false)),
            delivered: Arc::new(AtomicU64::new(0)),
            progress: Arc::new((0..count).map(|_| AtomicU64::new(0)).collect()),
            progressed: Rc::new(tokio::sync::Notify::new()),
            hist: Rc::new(RefCell::new(Histogram::default())),
            tasks: Vec::with_capacity(count),
        };
        for i in 0..count {
            let sub_addr = match sub_addrs.len() {
                0 => addr,
                n => &sub_addrs[i % n],
            };
            let (mut tx, mut rx) = match source_net {
                0 => wsclient::connect(sub_addr, path).await?,
                net => wsclient::connect_from(sub_addr, path, net, i).await?,
            };
            proto
                .subscribe(&mut tx, &mut rx, &names[i % names.len()])
                .await?;
            let (stop, delivered, progress) = (
                Arc::clone(&subs.stop),
                Arc::clone(&subs.delivered),
                Arc::clone(&subs.progress),
            );
            let hist = Rc::clone(&subs.hist);
            let progressed = Rc::clone(&subs.progressed);
            subs.tasks.push(tokio::task::spawn_local(async move {
                // Held for the task's life: dropping the write half would
                // half-close the connection.
                let _writer = tx;
                let mut stamps = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(message) = rx.next().await else { break };
                    stamps.clear();
                    proto.deliveries(message, &mut stamps);
                    let now = wall_nanos();
                    let mut hist = hist.borrow_mut();
                    for &stamp in &stamps {
                        hist.record(now.saturating_sub(stamp));
                    }
                    delivered.fetch_add(stamps.len() as u64, Ordering::Relaxed);
                    progress[i].fetch_add(stamps.len() as u64, Ordering::Relaxed);
                    progressed.notify_one();
                }
            }));
        }
        Ok(subs)
    }
}

async fn fanout(
    addr: String,
    sub_addrs: Vec<String>,
    path: String,
    load: Load,
    proto: Proto,
) -> std::io::Result<()> {
    let Load {
        subscribers,
        size,
        rate,
        seconds,
        channels,
        source_net,
    } = load;
    let names: Vec<String> = match channels {
        1 => vec!["bench".to_owned()],
        n => (0..n).map(|c| format!("bench{c}")).collect(),
    };
    let Subscribers {
        stop,
        delivered,
        progress,
        progressed,
        hist,
        tasks,
    } = Subscribers::connect(
        &addr,
        &sub_addrs,
        &path,
        subscribers,
        &names,
        source_net,
        proto,
    )
    .await?;
    if !sub_addrs.is_empty() {
        // Other nodes learn of their subscribers' interest asynchronously.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mut ptx, mut prx) = wsclient::connect(&addr, &path).await?;
    proto.hello(&mut ptx, &mut prx).await?;
    // Drain the publisher's own replies.
    tokio::task::spawn_local(async move { while prx.next().await.is_ok() {} });
    let began = Instant::now();
    let deadline = began + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    // Messages published to each channel.
    let mut sent_on = vec![0u64; channels];
    const WINDOW: u64 = 64;
    while Instant::now() < deadline {
        if let Some(gap) = (sent * 1_000_000_000).checked_div(rate) {
            tokio::time::sleep_until((began + Duration::from_nanos(gap)).into()).await;
        } else {
            let lag = progress
                .iter()
                .enumerate()
                .map(|(i, p)| sent_on[i % channels].saturating_sub(p.load(Ordering::Relaxed)))
                .max()
                .unwrap_or(0);
            if lag >= WINDOW {
                // What the window allowed leaves in one write, as from a
                // client that buffers (each server gets the same bursts).
                ptx.flush().await?;
                // Bounded, so that a stalled server still ends the run.
                let _ =
                    tokio::time::timeout(Duration::from_millis(100), progressed.notified()).await;
                continue;
            }
        }
        let channel = (sent % channels as u64) as usize;
        proto.publish(&mut ptx, &names[channel], &stamped(size, wall_nanos()));
        if rate > 0 {
            ptx.flush().await?;
        }
        sent += 1;
        sent_on[channel] += 1;
    }
    let elapsed = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let total = delivered.load(Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    let expected: u64 = (0..subscribers).map(|i| sent_on[i % channels]).sum();
    let all = hist.borrow();
    println!(
        "{{\"mode\":\"fanout\",\"proto\":\"{}\",\"subscribers\":{subscribers},\"channels\":{channels},\"size\":{size},\"rate\":{rate},\"published\":{sent},\"deliveries_per_sec\":{:.0},\"expected_deliveries\":{},\"delivered\":{total},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        proto.name(),
        total as f64 / elapsed,
        expected,
        all.quantile(0.5) as f64 / 1000.0,
        all.quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}

async fn idle(
    addr: String,
    path: String,
    connections: usize,
    seconds: u64,
    proto: Proto,
    source_net: u8,
) -> std::io::Result<()> {
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        let (mut tx, mut rx) = wsclient::connect_from(&addr, &path, source_net, i).await?;
        proto.subscribe(&mut tx, &mut rx, "idle").await?;
        held.push((tx, rx));
    }
    println!("{{\"mode\":\"idle\",\"ready\":{connections}}}");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}
