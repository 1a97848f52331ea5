//! `JobQueue` on RabbitMQ (lapin): a durable queue with publisher confirms and
//! manual acks, prefetch = worker concurrency, a retry queue whose messages
//! expire back into the main queue (per-message TTL = the backoff delay), and
//! a dead-letter queue for messages that can never succeed.
//!
//! Topology, for queue name `pika.jobs`:
//! - `pika.jobs`: persistent job ids, consumed with manual ack.
//! - `pika.jobs.retry`: no consumers; `x-dead-letter-routing-key = pika.jobs`,
//!   so a message published with `expiration = delay` returns after the delay.
//! - `pika.jobs.dead`: poison messages with an `x-pika-reason` header.
//!
//! The connection recovers automatically (lapin auto-recover) after a broker
//! restart; unacked deliveries are redelivered by the broker. When that
//! recovery leaves the connection or a channel unusable (seen in CI after a
//! network cut during recovery: every later call failed and the worker
//! starved while jobs waited), the whole link is opened again (`relink`).
//!
//! Over 400 lines on purpose: connection, topology, confirmed publish and
//! settling a delivery share one channel's state; splitting them would split
//! that state.

use crate::ports::{Delivery, JobQueue, StoreError};
use async_trait::async_trait;
use futures::StreamExt;

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RabbitMqOptions {
    pub url: String,
    /// Base name of the queues.
    pub queue: String,
    /// Unacked messages per consumer (the worker's concurrency).
    pub prefetch: u16,
    /// Deadline for one publish including its confirm.
    pub publish_timeout: Duration,
    /// PEM CA certificate(s) for an `amqps://` broker with a private CA;
    /// empty: the system roots.
    pub ca_file: std::path::PathBuf,
}

/// How long a free worker waits on the consumer before checking that it still
/// receives (see `next`).
const CONSUMER_CHECK: Duration = Duration::from_secs(10);

/// Shortest time between two attempts to open a new link.
const RELINK_EVERY: Duration = Duration::from_secs(1);

/// One connection with its publishing and consuming channels.
struct Link {
    // Kept alive: dropping the connection closes the channels.
    connection: Connection,
    publisher: Channel,
    consumer_channel: Channel,
}

impl Link {
    async fn open(opts: &RabbitMqOptions) -> Result<Link, StoreError> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from("pika-dataplane"))
            .enable_auto_recover();
        pika_common::tls::install_default_provider();
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: if opts.ca_file.as_os_str().is_empty() {
                None
            } else {
                Some(std::fs::read_to_string(&opts.ca_file).map_err(|e| {
                    unavailable(format!("cannot read the CA file {}: {e}", opts.ca_file.display()))
                })?)
            },
        };
        let runtime = lapin::runtime::default_runtime().map_err(unavailable)?;
        let connect = Connection::connect_with_config(&opts.url, props, tls, runtime);
        let connection = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let consumer_channel = connection.create_channel().await.map_err(unavailable)?;
        consumer_channel
            .basic_qos(opts.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(Link {
            connection,
            publisher,
            consumer_channel,
        })
    }

    fn usable(&self) -> bool {
        self.connection.status().connected()
            && self.publisher.status().connected()
            && self.consumer_channel.status().connected()
    }
}

/// RabbitMQ job queue.
pub struct RabbitMqQueue {
    link: RwLock<Arc<Link>>,
    /// Held while a new link is opened; the time of the last attempt.
    relinking: Mutex<Option<Instant>>,
    /// The consumer and the link it was made on.
    consumer: Mutex<Option<(Arc<Link>, Consumer)>>,
    ackers: std::sync::Mutex<HashMap<u64, Acker>>,
    opts: RabbitMqOptions,
}

fn unavailable(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::unavailable("rabbitmq", e)
}

impl RabbitMqQueue {
    /// Connects and declares the topology (idempotent).
    pub async fn connect(opts: RabbitMqOptions) -> Result<Self, StoreError> {
        let link = Link::open(&opts).await?;
        let publisher = &link.publisher;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        publisher
            .queue_declare(
                ShortString::from(opts.queue.as_str()),
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let mut retry_args = FieldTable::default();
        retry_args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from("")),
        );
        retry_args.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(LongString::from(opts.queue.as_str())),
        );
        publisher
            .queue_declare(
                ShortString::from(format!("{}.retry", opts.queue).as_str()),
                durable,
                retry_args,
            )
            .await
            .map_err(unavailable)?;
        publisher
            .queue_declare(
                ShortString::from(format!("{}.dead", opts.queue).as_str()),
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(RabbitMqQueue {
            link: RwLock::new(Arc::new(link)),
            relinking: Mutex::new(None),
            consumer: Mutex::new(None),
            ackers: std::sync::Mutex::new(HashMap::new()),
            opts,
        })
    }

    fn link(&self) -> Arc<Link> {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After a failure on `broken`: if it is still the current link and lapin
    /// has not brought it back, opens a new one (at most once a second).
    async fn relink(&self, broken: &Arc<Link>) {
        if broken.usable() {
            return;
        }
        let mut last = self.relinking.lock().await;
        if !Arc::ptr_eq(&self.link(), broken) || last.is_some_and(|t| t.elapsed() < RELINK_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        match Link::open(&self.opts).await {
            Ok(fresh) => {
                *self.link.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                tracing::warn!("rabbitmq connection did not recover by itself; opened a new one");
                // Stop the old one's own recovery attempts, if it is still trying.
                let old = broken.clone();
                tokio::spawn(async move {
                    let _ = old.connection.close(200, ShortString::from("replaced")).await;
                });
            }
            Err(e) => tracing::debug!(error = %e, "rabbitmq still unreachable"),
        }
    }

    /// Messages ready in the main queue (a passive declare).
    async fn ready_messages(&self) -> Result<u32, StoreError> {
        let link = self.link();
        let ready = self.ready_messages_on(&link).await;
        if ready.is_err() {
            self.relink(&link).await;
        }
        ready
    }

    async fn ready_messages_on(&self, link: &Link) -> Result<u32, StoreError> {
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let q = tokio::time::timeout(
            Duration::from_secs(5),
            link.publisher.queue_declare(
                ShortString::from(self.opts.queue.as_str()),
                passive,
                FieldTable::default(),
            ),
        )
        .await
        .map_err(|_| unavailable("queue check timed out"))?
        .map_err(unavailable)?;
        Ok(q.message_count())
    }

    async fn publish_to(&self, queue: &str, body: &[u8], props: BasicProperties) -> Result<(), StoreError> {
        let link = self.link();
        let published = self.publish_on(&link, queue, body, props).await;
        if published.is_err() {
            self.relink(&link).await;
        }
        published
    }

    async fn publish_on(
        &self,
        link: &Link,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), StoreError> {
        let props = props.with_delivery_mode(2); // persistent
        let publish = async {
            let confirm = link
                .publisher
                .basic_publish(
                    ShortString::from(""),
                    ShortString::from(queue),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await
                .map_err(unavailable)?
                .await
                .map_err(unavailable)?;
            match confirm {
                Confirmation::Ack(_) => Ok(()),
                Confirmation::Nack(_) => Err(unavailable("broker refused the message (nack)")),
                Confirmation::NotRequested => Err(unavailable("publisher confirms are off")),
            }
        };
        tokio::time::timeout(self.opts.publish_timeout, publish)
            .await
            .map_err(|_| unavailable("publish confirm timed out"))?
    }

    fn take_acker(&self, delivery: &Delivery) -> Option<Acker> {
        self.ackers.lock().ok().and_then(|mut m| m.remove(&delivery.tag))
    }

    /// Messages waiting in the main queue (for metrics and tests).
    pub async fn depth(&self) -> Result<u32, StoreError> {
        self.count(&self.opts.queue).await
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<u32, StoreError> {
        self.count(&format!("{}.dead", self.opts.queue)).await
    }

    async fn count(&self, queue: &str) -> Result<u32, StoreError> {
        let q = self
            .link()
            .publisher
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(q.message_count())
    }

    /// Deletes the three queues (tests and teardown).
    pub async fn delete_queues(&self) -> Result<(), StoreError> {
        for suffix in ["", ".retry", ".dead"] {
            let name = format!("{}{suffix}", self.opts.queue);
            self.link()
                .publisher
                .queue_delete(
                    ShortString::from(name.as_str()),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for RabbitMqQueue {
    async fn publish(&self, job_id: &str) -> Result<(), StoreError> {
        self.publish_to(&self.opts.queue, job_id.as_bytes(), BasicProperties::default())
            .await
    }

    async fn next(&self) -> Result<Delivery, StoreError> {
        let mut guard = self.consumer.lock().await;
        let current = self.link();
        if guard.as_ref().is_some_and(|(on, _)| !Arc::ptr_eq(on, &current)) {
            // Made on a link that has since been replaced.
            *guard = None;
        }
        if guard.is_none() {
            let consumer = current
                .consumer_channel
                .basic_consume(
                    ShortString::from(self.opts.queue.as_str()),
                    ShortString::from(format!("pika-worker-{}", uuid::Uuid::new_v4().simple()).as_str()),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await;
            match consumer {
                Ok(c) => *guard = Some((current.clone(), c)),
                Err(e) => {
                    drop(guard);
                    self.relink(&current).await;
                    return Err(unavailable(e));
                }
            }
        }
        let (link, consumer) = guard.as_mut().ok_or_else(|| unavailable("no consumer"))?;
        let link = link.clone();
        let delivery = loop {
            match tokio::time::timeout(CONSUMER_CHECK, consumer.next()).await {
                Ok(Some(Ok(d))) => break d,
                Ok(other) => {
                    // Start a fresh consumer on the next call (after a broker restart or cancel).
                    *guard = None;
                    drop(guard);
                    self.relink(&link).await;
                    return Err(match other {
                        Some(Err(e)) => unavailable(e),
                        _ => unavailable("consumer stream ended"),
                    });
                }
                Err(_) => {
                    // Nothing for a while: fine on an idle queue, but messages
                    // waiting while a worker is free mean this consumer no longer
                    // receives (a recovery that did not restore it). Replace it.
                    let ready = self.ready_messages().await;
                    if matches!(ready, Ok(0)) {
                        continue;
                    }
                    let tag = consumer.tag();
                    let _ = link
                        .consumer_channel
                        .basic_cancel(tag, BasicCancelOptions::default())
                        .await;
                    *guard = None;
                    drop(guard);
                    self.relink(&link).await;
                    return Err(match ready {
                        Ok(n) => {
                            tracing::warn!(
                                ready = n,
                                "consumer receives nothing while jobs wait; subscribing again"
                            );
                            unavailable("stale consumer replaced")
                        }
                        Err(e) => e,
                    });
                }
            }
        };
        let body = String::from_utf8_lossy(&delivery.data).to_string();
        let valid = !body.is_empty() && body.len() <= 100 && uuid::Uuid::parse_str(&body).is_ok();
        let tag = delivery.delivery_tag;
        if let Ok(mut m) = self.ackers.lock() {
            m.insert(tag, delivery.acker);
        }
        Ok(Delivery {
            job_id: valid.then(|| body.clone()),
            body,
            redelivered: delivery.redelivered,
            tag,
        })
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), StoreError> {
        match self.take_acker(delivery) {
            Some(acker) => acker
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(unavailable),
            None => Ok(()),
        }
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError> {
        let expiration = ShortString::from(delay.as_millis().max(1).to_string().as_str());
        self.publish_to(
            &format!("{}.retry", self.opts.queue),
            delivery.body.as_bytes(),
            BasicProperties::default().with_expiration(expiration),
        )
        .await?;
        self.ack(delivery).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-pika-reason"),
            AMQPValue::LongString(LongString::from(reason)),
        );
        self.publish_to(
            &format!("{}.dead", self.opts.queue),
            delivery.body.as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await?;
        tracing::error!(body = %delivery.body, reason, "job message dead-lettered");
        self.ack(delivery).await
    }

    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize, StoreError> {
        let dead = format!("{}.dead", self.opts.queue);
        let mut moved = 0;
        while moved < limit {
            let link = self.link();
            let got = link
                .publisher
                .basic_get(
                    ShortString::from(dead.as_str()),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(unavailable)?;
            let Some(message) = got else { break };
            // Confirmed in the main queue before it leaves the dead one: a
            // failure in between leaves a copy in both (a duplicate delivery
            // is harmless), never in neither.
            self.publish_to(
                &self.opts.queue,
                &message.delivery.data,
                BasicProperties::default(),
            )
            .await?;
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
            moved += 1;
        }
        Ok(moved)
    }
}
