//! Job queue adapters. Jobs are always written to the metadata store first
//! (the outbox); a queue only tells workers which job to claim, so a lost or
//! duplicated message never loses or doubles a job.

mod embedded;
mod rabbitmq;

pub use embedded::EmbeddedQueue;
pub use rabbitmq::{RabbitMqOptions, RabbitMqQueue};
