//! `recovery`: how long a client that missed `count` messages of a channel
//! with a history takes to get them all back with `subscribe` + `since`.
//!
//! A subscriber reads one message (its offset and epoch) and disconnects;
//! a publisher sends `count` more and waits for every `broadcasted`; the
//! subscriber connects again and subscribes with `since`. The time runs
//! from sending that subscribe to the last missed message received.

use std::io;
use std::time::Instant;

use super::proto::Proto;
use super::wsclient::{connect, Receiver};

const CHANNEL: &str = "recovery";

/// The number after `key` in `message`.
fn number_after(message: &[u8], key: &[u8]) -> Option<u64> {
    let at = message.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = message[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The 16-hex epoch in `message`.
fn epoch_of(message: &[u8]) -> Option<String> {
    let key = b"\"epoch\":\"";
    let at = message.windows(key.len()).position(|w| w == key)? + key.len();
    Some(String::from_utf8_lossy(message.get(at..at + 16)?).into_owned())
}

async fn expect(rx: &mut Receiver, what: &[u8]) -> io::Result<Vec<u8>> {
    loop {
        let message = rx.next().await?;
        if message.windows(what.len()).any(|w| w == what) {
            return Ok(message.to_vec());
        }
    }
}

/// Runs the measurement and prints one JSON line.
pub async fn recovery(addr: String, path: String, count: u64, size: usize) -> io::Result<()> {
    let proto = Proto::Webrocket;
    let (mut ptx, mut prx) = connect(&addr, &path).await?;
    let (mut stx, mut srx) = connect(&addr, &path).await?;
    proto.subscribe(&mut stx, &mut srx, CHANNEL).await?;
    let payload = vec![b'x'; size];
    proto.publish(&mut ptx, CHANNEL, &payload);
    ptx.flush().await?;
    let first = expect(&mut srx, b"\"offset\":").await?;
    let (Some(offset), Some(epoch)) = (number_after(&first, b"\"offset\":"), epoch_of(&first))
    else {
        return Err(io::Error::other("the channel keeps no history"));
    };
    drop((stx, srx));
    for _ in 0..count {
        proto.publish(&mut ptx, CHANNEL, &payload);
    }
    ptx.flush().await?;
    for _ in 0..=count {
        expect(&mut prx, b"broadcasted").await?;
    }
    let (mut stx, mut srx) = connect(&addr, &path).await?;
    let request = format!(
        "{{\"subscribe\":{{\"channel\":\"{CHANNEL}\",\"since\":{{\"offset\":{offset},\"epoch\":\"{epoch}\"}}}}}}"
    );
    let start = Instant::now();
    stx.send_text(request.as_bytes()).await?;
    let reply = expect(&mut srx, b"subscribed").await?;
    let recovered = reply.windows(16).any(|w| w == b"\"recovered\":true");
    let mut got = 0;
    let mut last = offset;
    if recovered {
        while got < count {
            let message = srx.next().await?;
            if let Some(n) = number_after(message, b"\"offset\":") {
                if n != last + 1 {
                    return Err(io::Error::other(format!("offset {n} after {last}")));
                }
                last = n;
                got += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{{\"missed\":{count},\"recovered\":{recovered},\"received\":{got},\"ms\":{:.2},\"messages_per_s\":{:.0}}}",
        elapsed.as_secs_f64() * 1e3,
        got as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
