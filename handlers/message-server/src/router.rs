//! The [`MessageRouter`]: the one piece of message-server state that spans actors. It maps each actor id to that
//! actor's mailbox and holds the channel table; everything else (the mailbox's receiving end, the requests an
//! actor deferred) belongs to the actor's own handler instance.
//!
//! The router is a runtime service (`TheaterRuntime::service::<MessageRouter>()`): one per runtime, never global.
//! Creating it spawns nothing; every operation is a short critical section under one lock, so host functions
//! that use it are plain (non-async) functions and never wait.
//!
//! Every operation names its caller, and the router checks it: only a channel's two participants can send on
//! it or close it, and a channel of other actors is answered like an unknown one (`"channel <id> not found"`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, watch};

/// Where a [`Delivery::Request`] sends its answer: the response, or the error the requester's `request` returns.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, String>>;

/// Where a [`Delivery::ChannelOpen`] sends its answer: `Ok(())` when the peer accepted (the accept message is
/// already in the opener's mailbox), else the error the opener's `open-channel` returns.
pub(crate) type OpenReply = oneshot::Sender<Result<(), String>>;

/// One item of an actor's mailbox: what its `start` loop turns into one `message-server-client` callback.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// `handle-send(msg)`.
    Send(Vec<u8>),
    /// `handle-request(id, msg)`; the answer goes to `reply`.
    Request {
        id: String,
        msg: Vec<u8>,
        reply: Reply,
    },
    /// `handle-channel-open(id, msg)`; the decision goes to `reply`.
    ChannelOpen {
        id: String,
        msg: Vec<u8>,
        reply: OpenReply,
    },
    /// `handle-channel-message(id, msg)`.
    ChannelMessage { id: String, msg: Vec<u8> },
    /// `handle-channel-close(id)`.
    ChannelClose { id: String },
}

/// The sending end of one actor's mailbox, as the router keeps it.
#[derive(Debug)]
pub(crate) struct MailboxSender {
    tx: mpsc::UnboundedSender<Delivery>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// The receiving end of one actor's mailbox, owned by that actor's handler instance.
#[derive(Debug)]
pub(crate) struct MailboxReceiver {
    rx: mpsc::UnboundedReceiver<Delivery>,
    queued: Arc<AtomicUsize>,
}

/// A new mailbox that holds at most `capacity` messages, sends, requests and channel opens at a time.
/// Notifications the router owes an actor (a channel's accept message and its close) are never refused, so they
/// are never lost; there is at most one of each per channel.
pub(crate) fn mailbox(capacity: usize) -> (MailboxSender, MailboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        MailboxSender {
            tx,
            queued: queued.clone(),
            capacity,
        },
        MailboxReceiver { rx, queued },
    )
}

impl MailboxSender {
    /// Queues `item`, refusing it when `counted` and the mailbox is full.
    fn push(&self, owner: &str, item: Delivery, counted: bool) -> Result<(), String> {
        if counted && self.queued.load(Ordering::Acquire) >= self.capacity {
            return Err(format!("mailbox of {owner} is full"));
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(item).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            format!("actor {owner} not found")
        })
    }
}

/// Tells one mailbox from a later one registered under the same actor id (a restarted actor keeps its id).
#[derive(Clone, Debug)]
pub(crate) struct MailboxKey(Arc<AtomicUsize>);

impl MailboxReceiver {
    /// The key of this mailbox, for [`MessageRouter::unregister`].
    pub(crate) fn key(&self) -> MailboxKey {
        MailboxKey(self.queued.clone())
    }

    /// The next item, `None` once the mailbox is closed and empty.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        let item = self.rx.recv().await;
        if item.is_some() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Closes the mailbox and returns what was still queued.
    pub(crate) fn close(&mut self) -> Vec<Delivery> {
        self.rx.close();
        let mut rest = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            rest.push(item);
        }
        rest
    }
}

/// Why the router could not deliver an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Undeliverable {
    /// No mailbox is registered under the id: the actor is unknown, stopped, or runs without the handler.
    NoMailbox,
    /// The mailbox refused it (full); the message says so.
    Refused(String),
}

/// One channel between two actors.
#[derive(Debug)]
struct Channel {
    /// The actor that called `open-channel`.
    opener: String,
    /// The actor whose `handle-channel-open` decides.
    peer: String,
    /// `Some(messages)` until the peer accepts: what the peer sent on the channel meanwhile (during its
    /// `handle-channel-open`), delivered to the opener right after the accept message.
    pending: Option<Vec<Vec<u8>>>,
}

impl Channel {
    /// The other participant, if `caller` is one.
    fn other(&self, caller: &str) -> Option<&str> {
        if caller == self.opener {
            Some(&self.peer)
        } else if caller == self.peer {
            Some(&self.opener)
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Routes {
    mailboxes: HashMap<String, MailboxSender>,
    channels: HashMap<String, Channel>,
}

impl Routes {
    fn deliver(&self, to: &str, item: Delivery, counted: bool) -> Result<(), Undeliverable> {
        let mailbox = self.mailboxes.get(to).ok_or(Undeliverable::NoMailbox)?;
        mailbox
            .push(to, item, counted)
            .map_err(Undeliverable::Refused)
    }
}

/// Routes messages between the actors of one runtime that run the message-server handler: actor id → mailbox,
/// and the table of channels (channel id → its two participants).
///
/// Obtained with `TheaterRuntime::service::<MessageRouter>()`; the handler instances of one runtime share it and
/// nothing else does. Its operations are crate-private: actors reach it only through their handler instance,
/// which always passes its own actor's id as the caller.
#[derive(Debug, Default)]
pub struct MessageRouter {
    routes: Mutex<Routes>,
    /// The number of registered mailboxes, watched by the mailbox loops (whether an actor has peers).
    mailbox_count: watch::Sender<usize>,
}

impl MessageRouter {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // Every critical section leaves the tables consistent, so a poisoned lock is still usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an actor with `id` has a registered mailbox.
    pub fn has_mailbox(&self, id: &str) -> bool {
        self.routes().mailboxes.contains_key(id)
    }

    /// Whether any actor other than `id` has a mailbox, i.e. could message `id`.
    pub(crate) fn has_peers(&self, id: &str) -> bool {
        let routes = self.routes();
        routes.mailboxes.len() > usize::from(routes.mailboxes.contains_key(id))
    }

    /// Changes whenever a mailbox is registered or unregistered.
    pub(crate) fn watch_mailboxes(&self) -> watch::Receiver<usize> {
        self.mailbox_count.subscribe()
    }

    /// Registers `id`'s mailbox.
    ///
    /// # Errors
    /// `id` already has one.
    pub(crate) fn register(&self, id: &str, mailbox: MailboxSender) -> Result<(), String> {
        let mut routes = self.routes();
        if routes.mailboxes.contains_key(id) {
            return Err(format!("actor {id} already has a mailbox"));
        }
        routes.mailboxes.insert(id.to_owned(), mailbox);
        self.mailbox_count.send_replace(routes.mailboxes.len());
        Ok(())
    }

    /// Removes `id`'s mailbox and closes its channels; the other side of each hears `handle-channel-close`. A
    /// channel still waiting for `id`'s decision is dropped without a notification: its opener's `open-channel`
    /// fails when `id`'s mailbox goes. Idempotent; does nothing once a newer mailbox (not `key`'s) holds `id`.
    pub(crate) fn unregister(&self, id: &str, key: &MailboxKey) {
        let mut routes = self.routes();
        match routes.mailboxes.get(id) {
            Some(mailbox) if !Arc::ptr_eq(&mailbox.queued, &key.0) => return,
            Some(_) => {
                routes.mailboxes.remove(id);
                self.mailbox_count.send_replace(routes.mailboxes.len());
            }
            None => {}
        }
        let mine: Vec<String> = routes
            .channels
            .iter()
            .filter(|(_, c)| c.opener == id || c.peer == id)
            .map(|(k, _)| k.clone())
            .collect();
        for channel_id in mine {
            if let Some(channel) = routes.channels.remove(&channel_id)
                && let Some(other) = channel.other(id)
            {
                let close = Delivery::ChannelClose { id: channel_id };
                let _ = routes.deliver(other, close, false);
            }
        }
    }

    /// Queues `item` for `to`; a full mailbox refuses it.
    pub(crate) fn deliver(&self, to: &str, item: Delivery) -> Result<(), Undeliverable> {
        self.routes().deliver(to, item, true)
    }

    /// Records a new channel `channel_id` from `opener` to `peer` and queues its [`Delivery::ChannelOpen`] for
    /// `peer`. The channel waits for the peer's decision ([`accept`](Self::accept) or [`discard`](Self::discard)).
    pub(crate) fn open(
        &self,
        channel_id: &str,
        opener: &str,
        peer: &str,
        msg: Vec<u8>,
        reply: OpenReply,
    ) -> Result<(), Undeliverable> {
        let mut routes = self.routes();
        let open = Delivery::ChannelOpen {
            id: channel_id.to_owned(),
            msg,
            reply,
        };
        routes.deliver(peer, open, true)?;
        routes.channels.insert(
            channel_id.to_owned(),
            Channel {
                opener: opener.to_owned(),
                peer: peer.to_owned(),
                pending: Some(Vec::new()),
            },
        );
        Ok(())
    }

    /// The peer (`peer`) accepted `channel_id`: the opener's mailbox gets `message` (if any) and then what the
    /// peer sent meanwhile, and the channel opens.
    ///
    /// # Errors
    /// The channel is gone (its opener gave up or stopped, or the peer closed it while deciding); the peer's
    /// mailbox then gets a [`Delivery::ChannelClose`] for it.
    pub(crate) fn accept(
        &self,
        channel_id: &str,
        peer: &str,
        message: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let mut routes = self.routes();
        let routes = &mut *routes;
        let Some(channel) = routes
            .channels
            .get_mut(channel_id)
            .filter(|c| c.peer == peer)
        else {
            // The peer took the channel for open: tell it that it is not.
            let close = Delivery::ChannelClose {
                id: channel_id.to_owned(),
            };
            let _ = routes.deliver(peer, close, false);
            return Err(format!("channel {channel_id} not found"));
        };
        let early = channel.pending.take().unwrap_or_default();
        let opener = channel.opener.clone();
        for msg in message.into_iter().chain(early) {
            let item = Delivery::ChannelMessage {
                id: channel_id.to_owned(),
                msg,
            };
            let _ = routes.deliver(&opener, item, false);
        }
        Ok(())
    }

    /// Forgets `channel_id` if it is still waiting for a decision (rejected, or its opener gave up); what the peer
    /// sent on it meanwhile is dropped.
    pub(crate) fn discard(&self, channel_id: &str) {
        let mut routes = self.routes();
        if routes
            .channels
            .get(channel_id)
            .is_some_and(|c| c.pending.is_some())
        {
            routes.channels.remove(channel_id);
        }
    }

    /// The opener of `channel_id` gave up waiting for the peer's decision (timeout, or it is stopping): the channel
    /// goes, and if the peer accepted meanwhile it hears `handle-channel-close`.
    pub(crate) fn abandon(&self, channel_id: &str, opener: &str) {
        let mut routes = self.routes();
        let Some(channel) = routes.channels.get(channel_id) else {
            return;
        };
        if channel.opener != opener {
            return;
        }
        let accepted = channel.pending.is_none();
        let peer = channel.peer.clone();
        routes.channels.remove(channel_id);
        if accepted {
            let close = Delivery::ChannelClose {
                id: channel_id.to_owned(),
            };
            let _ = routes.deliver(&peer, close, false);
        }
    }

    /// `caller` sends `msg` on `channel_id`: queued for the other participant (while the channel waits for the
    /// peer's decision, the peer's messages wait with it). `limit` bounds those waiting messages.
    ///
    /// # Errors
    /// `"channel <id> not found"` unless `caller` takes part in the channel; a full mailbox.
    pub(crate) fn send_on_channel(
        &self,
        channel_id: &str,
        caller: &str,
        msg: Vec<u8>,
        limit: usize,
    ) -> Result<(), String> {
        let mut routes = self.routes();
        let not_found = || format!("channel {channel_id} not found");
        let channel = routes.channels.get_mut(channel_id).ok_or_else(not_found)?;
        let other = channel.other(caller).ok_or_else(not_found)?.to_owned();
        if let Some(early) = &mut channel.pending {
            if early.len() >= limit {
                return Err(format!("mailbox of {other} is full"));
            }
            early.push(msg);
            return Ok(());
        }
        let item = Delivery::ChannelMessage {
            id: channel_id.to_owned(),
            msg,
        };
        routes.deliver(&other, item, true).map_err(|e| match e {
            Undeliverable::NoMailbox => not_found(),
            Undeliverable::Refused(message) => message,
        })
    }

    /// `caller` closes `channel_id`; the other participant hears `handle-channel-close`.
    ///
    /// # Errors
    /// `"channel <id> not found"` unless `caller` takes part in the channel.
    pub(crate) fn close(&self, channel_id: &str, caller: &str) -> Result<(), String> {
        let mut routes = self.routes();
        let other = routes
            .channels
            .get(channel_id)
            .and_then(|c| c.other(caller))
            .map(str::to_owned)
            .ok_or_else(|| format!("channel {channel_id} not found"))?;
        routes.channels.remove(channel_id);
        let close = Delivery::ChannelClose {
            id: channel_id.to_owned(),
        };
        let _ = routes.deliver(&other, close, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(router: &MessageRouter, id: &str, capacity: usize) -> MailboxReceiver {
        let (tx, rx) = mailbox(capacity);
        router.register(id, tx).unwrap();
        rx
    }

    #[tokio::test]
    async fn a_full_mailbox_refuses_at_once_and_frees_up_as_it_drains() {
        let router = MessageRouter::default();
        let mut rx = registered(&router, "b", 2);
        router.deliver("b", Delivery::Send(vec![1])).unwrap();
        router.deliver("b", Delivery::Send(vec![2])).unwrap();
        assert_eq!(
            router.deliver("b", Delivery::Send(vec![3])),
            Err(Undeliverable::Refused("mailbox of b is full".into()))
        );
        assert!(matches!(rx.recv().await, Some(Delivery::Send(m)) if m == [1]));
        router.deliver("b", Delivery::Send(vec![3])).unwrap();
        assert_eq!(
            router.deliver("nobody", Delivery::Send(vec![])),
            Err(Undeliverable::NoMailbox)
        );
    }

    #[test]
    fn registering_twice_fails_and_unregistering_closes_channels() {
        let router = MessageRouter::default();
        let a = registered(&router, "a", 4);
        let mut b = registered(&router, "b", 4);
        assert!(router.register("a", mailbox(1).0).is_err());
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router.accept("ch", "b", None).unwrap();
        let stale = mailbox(1).1.key();
        router.unregister("a", &stale);
        assert!(
            router.has_mailbox("a"),
            "another mailbox's key unregisters nothing"
        );
        router.unregister("a", &a.key());
        assert!(!router.has_mailbox("a"));
        let items = b.close();
        assert!(
            matches!(&items[..], [Delivery::ChannelOpen { .. }, Delivery::ChannelClose { id }] if id == "ch")
        );
        assert_eq!(
            router.send_on_channel("ch", "b", vec![], 4),
            Err("channel ch not found".into())
        );
    }

    #[test]
    fn only_participants_use_a_channel_and_early_messages_follow_the_accept_message() {
        let router = MessageRouter::default();
        let mut a = registered(&router, "a", 4);
        let _b = registered(&router, "b", 4);
        let _c = registered(&router, "c", 4);
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router
            .send_on_channel("ch", "b", b"early".to_vec(), 4)
            .unwrap();
        assert_eq!(
            router.send_on_channel("ch", "c", vec![], 4),
            Err("channel ch not found".into())
        );
        assert_eq!(router.close("ch", "c"), Err("channel ch not found".into()));
        assert_eq!(
            router.accept("ch", "c", None),
            Err("channel ch not found".into())
        );
        router.accept("ch", "b", Some(b"welcome".to_vec())).unwrap();
        router
            .send_on_channel("ch", "b", b"later".to_vec(), 4)
            .unwrap();
        let got: Vec<Vec<u8>> = a
            .close()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::ChannelMessage { msg, .. } => Some(msg),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            [b"welcome".to_vec(), b"early".to_vec(), b"later".to_vec()]
        );
    }
}
