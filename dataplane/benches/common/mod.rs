//! What the Milvus benches share: settings from the environment, random unit
//! vectors of MiniLM's size, and adapter options for a private collection.

use pika_dataplane::store::{IndexSpec, MilvusOptions};
use rand::Rng;
use std::time::Duration;

pub const DIMENSION: usize = 384;

/// A numeric setting from the environment, or `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn unit_vector(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMENSION).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
    v.into_iter().map(|x| x / norm).collect()
}

/// The service's index defaults (config.rs).
pub fn default_index() -> IndexSpec {
    IndexSpec::Hnsw {
        m: 16,
        ef_construction: 200,
        ef: 64,
    }
}

/// Options for a collection of this bench process alone (`prefix` + pid),
/// dropped with `MilvusIndex::drop_prefix` at the end.
pub fn options(url: String, prefix: &str, index: IndexSpec) -> MilvusOptions {
    MilvusOptions {
        url,
        token: String::new(),
        ca_file: Default::default(),
        collection_prefix: format!("{prefix}{}", std::process::id()),
        num_partitions: 64,
        index,
        timeout: Duration::from_secs(30),
        visible_timeout: Duration::from_secs(30),
    }
}
