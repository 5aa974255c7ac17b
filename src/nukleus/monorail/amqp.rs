//! `source = "amqp"` resources: watches fed from a RabbitMQ topic exchange
//! (AMQP 0-9-1, the `amqprs` client). Each node consumes on its own: one
//! connection per resource, an exclusive server-named queue bound to the
//! `[amqp] exchange` (declared as a durable topic exchange) with the
//! resource's binding key `<vhost segments joined by '.'>.<resource>.#`.
//!
//! A message's body is a JSON object: the item (watchers it matches get
//! `item`), or, when the message's `type` property is `remove`, the params
//! of a `remove` every watcher of the resource gets. Anything else (not
//! JSON, not an object, over `limits.max_item_size`) is dropped and
//! logged. A lost connection is dialled again every second.
//!
//! Consumers run on a runtime of their own (one thread, made at the first
//! `amqp` resource), so that the data path and the node's own runtime never
//! wait for the AMQP broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::channel::{
    BasicConsumeArguments, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use serde_json::Value;

use super::Task;
use crate::config::AmqpConfig;
use crate::name::{ResourceName, VhostPath, MAX_NAME_LEN};

const REDIAL: Duration = Duration::from_secs(1);

/// Hands a task to the monorail nukleus.
pub type Tell = Arc<dyn Fn(Task) + Send + Sync>;

/// One consumer per `amqp` resource of this node.
pub struct Consumers {
    settings: AmqpConfig,
    max_item_size: usize,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    running: Mutex<HashMap<(VhostPath, ResourceName), tokio::task::AbortHandle>>,
}

/// The binding key of a resource: `chat.nodes.#` for `/chat`'s `nodes`.
pub fn binding_key(vhost: &VhostPath, resource: &ResourceName) -> String {
    let segments = vhost.as_str().trim_start_matches('/').replace('/', ".");
    format!("{segments}.{resource}.#")
}

/// What one AMQP message means for the watchers.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// An item, new or changed.
    Item(Value),
    /// Params of items to remove.
    Remove(Value),
}

/// Turns a message into a [`Feed`]; `None` when it is not a JSON object
/// of at most `max_size` bytes.
pub fn feed(body: &[u8], message_type: Option<&str>, max_size: usize) -> Option<Feed> {
    if body.len() > max_size {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    if !value.is_object() {
        return None;
    }
    Some(match message_type {
        Some("remove") => Feed::Remove(value),
        _ => Feed::Item(value),
    })
}

impl Consumers {
    /// No consumer yet; `settings` say where the broker is.
    pub fn new(settings: AmqpConfig, max_item_size: usize) -> Self {
        Consumers {
            settings,
            max_item_size,
            runtime: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts consuming for a resource (once).
    pub fn start(&self, vhost: &VhostPath, resource: &ResourceName, tell: Tell) {
        let key = binding_key(vhost, resource);
        if key.len() > MAX_NAME_LEN || self.settings.exchange.len() > MAX_NAME_LEN {
            tracing::error!(%vhost, %resource, "amqp binding key or exchange over 255 bytes");
            return;
        }
        let mut runtime = lock(&self.runtime);
        if runtime.is_none() {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("amqp")
                .enable_all()
                .build();
            match built {
                Ok(built) => *runtime = Some(built),
                Err(error) => {
                    tracing::error!(%error, "amqp runtime did not start");
                    return;
                }
            }
        }
        let Some(runtime) = runtime.as_ref() else {
            return;
        };
        let mut running = lock(&self.running);
        let id = (vhost.clone(), resource.clone());
        if running.contains_key(&id) {
            return;
        }
        let consumer = Consumer {
            settings: self.settings.clone(),
            key,
            vhost: vhost.clone(),
            resource: resource.clone(),
            max_item_size: self.max_item_size,
            tell,
        };
        let task = runtime.spawn(consumer.run());
        running.insert(id, task.abort_handle());
    }

    /// Stops the consumers of the resources `doomed` picks.
    pub fn stop_where(&self, doomed: impl Fn(&VhostPath, &ResourceName) -> bool) {
        lock(&self.running).retain(|(v, r), task| {
            let stop = doomed(v, r);
            if stop {
                task.abort();
            }
            !stop
        });
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        // May run inside another runtime, where a blocking drop would panic.
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.shutdown_background();
        }
    }
}

struct Consumer {
    settings: AmqpConfig,
    key: String,
    vhost: VhostPath,
    resource: ResourceName,
    max_item_size: usize,
    tell: Tell,
}

impl Consumer {
    async fn run(self) {
        loop {
            match self.consume().await {
                Ok(()) => {
                    tracing::info!(vhost = %self.vhost, resource = %self.resource, "amqp consumer ended; dialling again")
                }
                Err(error) => {
                    tracing::warn!(vhost = %self.vhost, resource = %self.resource, %error, "amqp consumer failed; dialling again")
                }
            }
            tokio::time::sleep(REDIAL).await;
        }
    }

    /// One connection: declare, bind, consume until it ends.
    async fn consume(&self) -> Result<(), amqprs::error::Error> {
        let s = &self.settings;
        let args = OpenConnectionArguments::new(&s.host, s.port, &s.user, &s.password)
            .virtual_host(&s.vhost)
            .finish();
        let connection = Connection::open(&args).await?;
        let channel = connection.open_channel(None).await?;
        let mut exchange = ExchangeDeclareArguments::new(&s.exchange, "topic");
        exchange.durable = true;
        channel.exchange_declare(exchange).await?;
        let declared = channel
            .queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await?;
        let Some((queue, _, _)) = declared else {
            return Ok(());
        };
        channel
            .queue_bind(QueueBindArguments::new(&queue, &s.exchange, &self.key))
            .await?;
        let consume = BasicConsumeArguments::new(&queue, "")
            .manual_ack(false)
            .finish();
        let (_tag, mut messages) = channel.basic_consume_rx(consume).await?;
        tracing::info!(vhost = %self.vhost, resource = %self.resource, key = %self.key, "amqp consumer bound");
        while let Some(message) = messages.recv().await {
            let body = message.content.unwrap_or_default();
            let kind = message
                .basic_properties
                .as_ref()
                .and_then(|p| p.message_type().cloned());
            match feed(&body, kind.as_deref(), self.max_item_size) {
                Some(feed) => (self.tell)(Task::Feed {
                    vhost: self.vhost.clone(),
                    resource: self.resource.clone(),
                    feed,
                }),
                None => {
                    tracing::warn!(resource = %self.resource, bytes = body.len(), "amqp message dropped: not a JSON object within max_item_size")
                }
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binding_keys_and_messages() {
        let vhost = VhostPath::parse("/apps/chat").unwrap();
        let resource = ResourceName::parse("nodes").unwrap();
        assert_eq!(binding_key(&vhost, &resource), "apps.chat.nodes.#");
        assert_eq!(
            feed(br#"{"id":1}"#, None, 100),
            Some(Feed::Item(json!({"id": 1})))
        );
        assert_eq!(
            feed(br#"{"id":1}"#, Some("remove"), 100),
            Some(Feed::Remove(json!({"id": 1})))
        );
        assert_eq!(feed(b"[1]", None, 100), None);
        assert_eq!(feed(b"nope", None, 100), None);
        assert_eq!(feed(br#"{"id":1}"#, None, 3), None);
    }
}
