//! Ordered, acknowledged delivery to one [`Address`]: every envelope this host sends there goes through one queue
//! and one task, which sends it as a NATS request numbered with the connection's next sequence number and sends
//! the next only once it is acknowledged. A lost request or answer (a NATS restart) is sent again under the same
//! number until acknowledged or its deadline passes; the receiver's [`Dedup`](crate::dedup) serves it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Request, RequestErrorKind};
use tokio::sync::{mpsc, oneshot};

use crate::envelope::{EPOCH, ERROR, HOST, SEQ};
use crate::{Address, DeliveryError, Envelope, Reply, Shared};

/// Envelopes waiting in one address's queue at most; past it [`Cluster::deliver`](crate::Cluster::deliver)
/// refuses at once. (Each actor waits for its own sends, so only notifications and many actors sending to one
/// address at once fill it.)
pub const MAX_QUEUED: usize = 65_536;

/// How long one attempt waits for its acknowledgement before the envelope is sent again.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before another attempt after NATS said "no responders" within the reconnect grace, or failed otherwise.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// An idle queue's task ends after this long.
const IDLE: Duration = Duration::from_secs(30);

/// Where an envelope's outcome goes, if anyone waits for it.
type Done = oneshot::Sender<Result<Reply, DeliveryError>>;

pub(crate) struct Item {
    pub(crate) envelope: Envelope,
    pub(crate) deadline: Instant,
    pub(crate) done: Option<Done>,
}

/// One queue per address with envelopes in flight.
#[derive(Default)]
pub(crate) struct Outboxes {
    queues: std::sync::Mutex<HashMap<Address, mpsc::Sender<Item>>>,
}

impl Outboxes {
    /// Queues `item` for `to`, starting the address's task if it has none.
    pub(crate) fn push(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        to: &Address,
        item: Item,
    ) -> Result<(), DeliveryError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let item = match queues.get(to) {
            None => item,
            Some(tx) => match tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(DeliveryError::Refused(format!(
                        "{MAX_QUEUED} envelopes already wait for {to} (theater-cluster MAX_QUEUED)"
                    )));
                }
                // The task ended (idle): start another.
                Err(mpsc::error::TrySendError::Closed(item)) => item,
            },
        };
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        tx.try_send(item).expect("a new queue has room");
        queues.insert(to.clone(), tx);
        tokio::spawn(run(self.clone(), shared.clone(), to.clone(), rx));
        Ok(())
    }
}

/// The task of `to`'s queue: one envelope at a time, in order.
async fn run(
    outboxes: Arc<Outboxes>,
    shared: Arc<Shared>,
    to: Address,
    mut rx: mpsc::Receiver<Item>,
) {
    loop {
        let item = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => return,
            Err(_) => {
                let mut queues = outboxes.queues.lock().unwrap_or_else(|p| p.into_inner());
                // Under the lock no push comes between the check and the removal.
                if rx.is_empty() {
                    queues.remove(&to);
                    return;
                }
                continue;
            }
        };
        let outcome = send(&shared, &to, item.envelope, item.deadline).await;
        if let Err(e) = &outcome {
            tracing::debug!(to = %to, "theater-cluster: not delivered: {e}");
        }
        if let Some(done) = item.done {
            let _ = done.send(outcome);
        }
    }
}

/// Sends `envelope` to `to` under the next sequence number until acknowledged, refused or `deadline`.
async fn send(
    shared: &Shared,
    to: &Address,
    mut envelope: Envelope,
    deadline: Instant,
) -> Result<Reply, DeliveryError> {
    let seq = shared.next_seq();
    let headers = envelope.headers_mut();
    headers.insert(HOST, shared.host.as_str());
    headers.insert(EPOCH, shared.epoch.as_str());
    headers.insert(SEQ, seq.to_string().as_str());
    let (headers, payload) = envelope.into_parts();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeliveryError::TimedOut(to.to_string()));
        }
        let request = Request::new()
            .headers(headers.clone())
            .payload(payload.clone())
            .timeout(Some(left.min(ATTEMPT_TIMEOUT)));
        match shared
            .client
            .send_request(to.as_str().to_owned(), request)
            .await
        {
            Ok(message) => {
                let reply = Envelope::from_parts(message.headers, message.payload);
                if let Some(error) = reply.header(ERROR) {
                    return Err(DeliveryError::Refused(error.to_owned()));
                }
                return Ok(Reply {
                    host: reply.header(HOST).unwrap_or_default().to_owned(),
                    body: reply.into_body(),
                });
            }
            Err(e) => match e.kind() {
                RequestErrorKind::NoResponders if !shared.in_reconnect_grace() => {
                    return Err(DeliveryError::NotFound(to.to_string()));
                }
                RequestErrorKind::MaxPayloadExceeded => {
                    return Err(DeliveryError::TooLarge {
                        size: payload.len(),
                        max: shared.client.server_info().max_payload,
                    });
                }
                RequestErrorKind::InvalidSubject => {
                    return Err(DeliveryError::BadAddress(to.to_string()));
                }
                RequestErrorKind::TimedOut => {}
                RequestErrorKind::NoResponders | RequestErrorKind::Other => {
                    tokio::time::sleep(RETRY_PAUSE.min(left)).await;
                }
            },
        }
    }
}
