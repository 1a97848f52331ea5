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
//! restart; unacked deliveries are redelivered by the broker.

use crate::ports::{Delivery, JobQueue, StoreError};
use async_trait::async_trait;
use futures::StreamExt;

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use std::collections::HashMap;
use std::time::Duration;
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
}

/// How long a free worker waits on the consumer before checking that it still
/// receives (see `next`).
const CONSUMER_CHECK: Duration = Duration::from_secs(10);

/// RabbitMQ job queue.
pub struct RabbitMqQueue {
    // Kept alive: dropping the connection closes the channels.
    _connection: Connection,
    publisher: Channel,
    consumer_channel: Channel,
    consumer: Mutex<Option<Consumer>>,
    ackers: std::sync::Mutex<HashMap<u64, Acker>>,
    opts: RabbitMqOptions,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("rabbitmq: {e}"))
}

impl RabbitMqQueue {
    /// Connects and declares the topology (idempotent).
    pub async fn connect(opts: RabbitMqOptions) -> Result<Self, StoreError> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from("pika-dataplane"))
            .enable_auto_recover();
        let connection = tokio::time::timeout(Duration::from_secs(10), Connection::connect(&opts.url, props))
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
            _connection: connection,
            publisher,
            consumer_channel,
            consumer: Mutex::new(None),
            ackers: std::sync::Mutex::new(HashMap::new()),
            opts,
        })
    }

    /// Messages ready in the main queue (a passive declare).
    async fn ready_messages(&self) -> Result<u32, StoreError> {
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let q = tokio::time::timeout(
            Duration::from_secs(5),
            self.publisher.queue_declare(
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
        let props = props.with_delivery_mode(2); // persistent
        let publish = async {
            let confirm = self
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
            self.publisher
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
        if guard.is_none() {
            let consumer = self
                .consumer_channel
                .basic_consume(
                    ShortString::from(self.opts.queue.as_str()),
                    ShortString::from(format!("pika-worker-{}", uuid::Uuid::new_v4().simple()).as_str()),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            *guard = Some(consumer);
        }
        let consumer = guard.as_mut().ok_or_else(|| unavailable("no consumer"))?;
        let delivery = loop {
            match tokio::time::timeout(CONSUMER_CHECK, consumer.next()).await {
                Ok(Some(Ok(d))) => break d,
                Ok(other) => {
                    // Start a fresh consumer on the next call (after a broker restart or cancel).
                    *guard = None;
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
                    let _ = self
                        .consumer_channel
                        .basic_cancel(tag, BasicCancelOptions::default())
                        .await;
                    *guard = None;
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
}
