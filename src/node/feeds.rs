//! Where data comes into the node from outside the data path: the AMQP
//! consumers of `amqp` resources, started and stopped as resources come
//! and go (they feed the monorail nukleus through the [`Inbox`]).

use std::sync::Arc;

use super::Inbox;
use crate::config::Config;
use crate::nukleus::monorail::amqp::{Consumers, Tell};
use crate::storage::{Change, ResourceSource, State};

/// The node's AMQP consumers, one per `amqp` resource.
pub struct Feeds {
    amqp: Consumers,
    inbox: Inbox,
}

impl Feeds {
    /// No consumer yet; [`Feeds::start`] starts those `state` asks for.
    pub fn new(config: &Config, inbox: Inbox) -> Self {
        Feeds {
            amqp: Consumers::new(config.amqp.clone(), config.limits.max_item_size),
            inbox,
        }
    }

    fn tell(&self) -> Tell {
        let inbox = self.inbox.clone();
        Arc::new(move |task| inbox.to_monorail(task))
    }

    /// Starts a consumer for every `amqp` resource of `state`.
    pub fn start(&self, state: &State) {
        for (vhost, record) in &state.vhosts {
            for (name, resource) in &record.resources {
                if resource.source == ResourceSource::Amqp {
                    self.amqp.start(vhost, name, self.tell());
                }
            }
        }
    }

    /// Starts or stops consumers for a change already durable.
    pub fn follow(&self, change: &Change) {
        match change {
            Change::AddResource {
                vhost,
                name,
                source: ResourceSource::Amqp,
                ..
            } => self.amqp.start(vhost, name, self.tell()),
            Change::DeleteResource { vhost, name } => {
                self.amqp.stop_where(|v, r| v == vhost && r == name)
            }
            Change::DeleteVhost { path } => self.amqp.stop_where(|v, _| v == path),
            Change::ClearVhosts => self.amqp.stop_where(|_, _| true),
            _ => {}
        }
    }
}
