//! One link: a DEALER socket from this node to one peer's ROUTER, owned by
//! one task. The task (re)connects, sends a fresh HELLO and this node's
//! interest snapshot on every new connection, then writes control messages first and data next. When a
//! heartbeat is due, the data queued so far is written first and the
//! heartbeat right after it: a heartbeat is never written ahead of data
//! queued before it, which is what lets a peer drop the stale data of a
//! node returning from a freeze (see `membership`), and it is never
//! starved by a steady flow of data. A `LEAVE` is written the same way,
//! after the data queued before it: the last broadcasts this node ordered
//! reach the peer while it still takes this node as their sequencer.
//!
//! The zeromq crate does not reconnect a DEALER whose peer went away, so a
//! failed write makes the task drop the socket and dial again. Data queued
//! while disconnected was meant for a connection that is gone: it is
//! dropped and counted on reconnect (broadcasts are at most once).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use zeromq::{DealerSocket, Socket, SocketSend, ZmqMessage};

use super::shared::Shared;
use super::wire::PeerMessage;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between connection attempts.
const RETRY: Duration = Duration::from_millis(300);

fn message(frames: Vec<Vec<u8>>) -> Option<ZmqMessage> {
    let mut frames = frames.into_iter();
    let mut message = ZmqMessage::from(frames.next()?);
    for frame in frames {
        message.push_back(frame.into());
    }
    Some(message)
}

async fn send(socket: &mut DealerSocket, frames: Vec<Vec<u8>>) -> bool {
    match message(frames) {
        Some(m) => socket.send(m).await.is_ok(),
        None => true,
    }
}

/// Runs the link to `addr` until both queues are closed.
pub async fn run(
    shared: Arc<Shared>,
    addr: String,
    mut control: mpsc::UnboundedReceiver<Vec<Vec<u8>>>,
    mut data: mpsc::Receiver<Vec<Vec<u8>>>,
) {
    let endpoint = format!("tcp://{addr}");
    loop {
        let mut socket = DealerSocket::new();
        match timeout(CONNECT_TIMEOUT, socket.connect(&endpoint)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "cluster link cannot connect");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(_) => continue,
        }
        let mut stale = 0;
        while data.try_recv().is_ok() {
            stale += 1;
        }
        shared
            .counters
            .dropped_full
            .fetch_add(stale, Ordering::Relaxed);
        tracing::debug!(%addr, "cluster link connected");
        // The interest snapshot follows every HELLO: the one sent when the
        // peer came up may have been written to the connection that just
        // failed (a peer that restarts within a heartbeat), and without it
        // the peer would never send this node its channels' deliveries.
        let greeting = [shared.hello(), shared.interest_snapshot()];
        let mut greeted = true;
        for message in greeting {
            if !send(&mut socket, message.encode()).await {
                greeted = false;
                break;
            }
        }
        if !greeted {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let period = shared.settings.heartbeat;
        let mut next_beat = Instant::now();
        let connected = loop {
            let frames = tokio::select! {
                biased;
                frames = control.recv() => match frames {
                    Some(frames) => frames,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_beat) => {
                    next_beat = Instant::now() + period;
                    if !flush(&mut socket, &mut data).await {
                        break false;
                    }
                    shared.heartbeat().encode()
                }
                frames = data.recv() => match frames {
                    Some(frames) => frames,
                    None => return,
                },
            };
            let leave = PeerMessage::is_leave(&frames);
            if leave && !flush(&mut socket, &mut data).await {
                break false;
            }
            if !send(&mut socket, frames).await {
                break false;
            }
            if leave {
                shared.leave_written();
            }
        };
        if !connected {
            tracing::debug!(%addr, "cluster link lost; reconnecting");
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Writes the data messages queued right now; `false` if a write failed.
async fn flush(socket: &mut DealerSocket, data: &mut mpsc::Receiver<Vec<Vec<u8>>>) -> bool {
    for _ in 0..data.len() {
        match data.try_recv() {
            Ok(frames) => {
                if !send(socket, frames).await {
                    return false;
                }
            }
            Err(_) => break,
        }
    }
    true
}
