//! The configuration the pods run with: the dataplane's TOML (no secrets),
//! the sidecar's cache policy (JSON), and the environment variables that
//! bring the secrets in (`PIKA__SECTION__KEY` from Secret keys).
//!
//! The config hash covers all three and is stamped on the pod templates, so
//! any change to them rolls the pods; a Secret's *content* is not hashed
//! (rotate by changing the key or restarting, see OPERATIONS.md).

use super::meta::Owner;
use crate::crd::{MilvusMode, Policy, SecretKeyRef};
use crate::index::IndexPlan;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Where the config files are mounted in every PIKA container.
pub const CONFIG_DIR: &str = "/etc/pika";
pub const DATAPLANE_FILE: &str = "dataplane.toml";
pub const POLICY_FILE: &str = "cache-policy.json";
pub const SIDECAR_FILE: &str = "sidecar.toml";
/// Where the KEK Secret is mounted in dataplane containers, and its file.
pub const KEK_DIR: &str = "/etc/pika-kek";
pub const KEK_FILE: &str = "kek.keys";
/// Where the sidecar's certificate Secret is mounted (in-pod TLS).
pub const TLS_DIR: &str = "/etc/pika-tls";
/// Dataplane HTTP port (inside the API pod; the sidecar forwards to it).
pub const DATAPLANE_PORT: i32 = 8081;
/// Worker health and metrics port.
pub const WORKER_PORT: i32 = 8082;
/// Sidecar port: what the Service and Ingress expose.
pub const SIDECAR_PORT: i32 = 8080;
pub const MILVUS_PORT: i32 = 19530;
pub const QUEUE_NAME: &str = "pika.extract";

/// The Milvus URL the dataplane connects to.
pub fn milvus_url(owner: &Owner) -> String {
    match owner.ms.spec.milvus.mode {
        MilvusMode::Managed => format!(
            "http://{}.{}.svc:{MILVUS_PORT}",
            owner.child_name("milvus"),
            owner.namespace
        ),
        MilvusMode::External => owner.ms.spec.milvus.url.clone().unwrap_or_default(),
    }
}

/// TOML string literal (basic string with escapes).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The dataplane configuration file shared by API and worker pods.
pub fn dataplane_toml(owner: &Owner, index: &IndexPlan) -> String {
    let spec = &owner.ms.spec;
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(format!(
        "# Rendered by pika-operator for MemoryService {}/{}; do not edit.",
        owner.namespace, owner.name
    ));
    line("[server]".into());
    // Loopback only: the sidecar in the same pod is the way in (auth, rate
    // limits); the kubelet probes with `pika-dataplane probe`.
    line(format!("listen = \"127.0.0.1:{DATAPLANE_PORT}\""));
    // On SIGTERM, keep serving (readiness already 503) while the Service
    // drops the pod, then drain; within the pod's 30 s grace period.
    line(format!("shutdown_delay_ms = {SHUTDOWN_DELAY_MS}"));
    line("drain_timeout_ms = 20000".into());
    line("\n[storage]".into());
    line("data_dir = \"/var/lib/pika\"".into());
    line("\n[vector]".into());
    line(format!("url = {}", quoted(&milvus_url(owner))));
    line(format!("index_type = \"{}\"", index.kind.milvus_name()));
    for (name, key) in [
        ("M", "hnsw_m"),
        ("efConstruction", "hnsw_ef_construction"),
        ("ef", "hnsw_ef"),
        ("nlist", "ivf_nlist"),
        ("nprobe", "ivf_nprobe"),
        ("intermediate_graph_degree", "cagra_intermediate_graph_degree"),
        ("graph_degree", "cagra_graph_degree"),
        ("itopk_size", "cagra_itopk_size"),
        ("search_width", "cagra_search_width"),
    ] {
        if let Some(v) = index.params.get(name) {
            line(format!("{key} = {v}"));
        }
    }
    line("\n[queue]".into());
    line(format!("name = \"{QUEUE_NAME}\""));
    line("\n[worker]".into());
    line("in_process = false".into());
    line(format!("concurrency = {}", spec.worker.concurrency));
    line(format!("listen = \"0.0.0.0:{WORKER_PORT}\""));
    embedding_section(owner).into_iter().for_each(&mut line);
    line("\n[llm]".into());
    match &spec.llm {
        Some(l) => {
            line("provider = \"openai\"".into());
            line(format!("base_url = {}", quoted(&l.base_url)));
            line(format!("model = {}", quoted(&l.model)));
        }
        None => line("provider = \"rules\"".into()),
    }
    line("\n[encryption]".into());
    line(format!("kek_file = \"{KEK_DIR}/{KEK_FILE}\""));
    // Replicas share the KEK from the Secret; a pod never makes its own.
    line("generate_kek = false".into());
    line("\n[log]".into());
    line("format = \"json\"".into());
    t
}

/// `[embedding]`, the same in both files: the sidecar's query vectors are
/// used by the dataplane only when the models match.
fn embedding_section(owner: &Owner) -> Vec<String> {
    let mut out = vec!["\n[embedding]".to_string()];
    match &owner.ms.spec.embedding {
        Some(e) => {
            out.push("provider = \"openai\"".into());
            out.push(format!("base_url = {}", quoted(&e.base_url)));
            out.push(format!("model = {}", quoted(&e.model)));
            if let Some(d) = e.dimension {
                out.push(format!("dimension = {d}"));
            }
        }
        None => {
            out.push("provider = \"local\"".into());
            out.push("model_dir = \"/app/models/all-MiniLM-L6-v2\"".into());
        }
    }
    out
}

/// How long a terminating API pod keeps serving with readiness off, so the
/// endpoints controller and ingress stop routing to it first.
const SHUTDOWN_DELAY_MS: u64 = 5_000;

/// The sidecar's own configuration file (`pika_sidecar::config::SidecarConfig`).
pub fn sidecar_toml(owner: &Owner) -> String {
    let mut lines = vec![
        format!(
            "# Rendered by pika-operator for MemoryService {}/{}; do not edit.",
            owner.namespace, owner.name
        ),
        format!("listen = \"0.0.0.0:{SIDECAR_PORT}\""),
        format!("upstream = \"http://127.0.0.1:{DATAPLANE_PORT}\""),
        format!("policy = \"{CONFIG_DIR}/{POLICY_FILE}\""),
        // The same delay as the dataplane beside it: both stop accepting
        // once the Service no longer sends here.
        format!("shutdown_delay_ms = {SHUTDOWN_DELAY_MS}"),
        "drain_timeout_ms = 20000".to_string(),
    ];
    lines.extend(embedding_section(owner));
    if let Some(tls) = &owner.ms.spec.tls {
        lines.push("\n[tls]".into());
        lines.push(format!("cert_file = \"{TLS_DIR}/tls.crt\""));
        lines.push(format!("key_file = \"{TLS_DIR}/tls.key\""));
        lines.push(format!("min_version = \"{}\"", tls.min_version.as_str()));
    }
    lines.push("\n[log]".into());
    lines.push("format = \"json\"".into());
    let mut t = lines.join("\n");
    t.push('\n');
    t
}

fn from_secret(var: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: var.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.secret_name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sidecar's secrets as `PIKA_SIDECAR__SECTION__KEY` variables.
pub fn sidecar_secret_env(owner: &Owner) -> Vec<EnvVar> {
    let spec = &owner.ms.spec;
    let mut env = vec![
        from_secret("PIKA_SIDECAR__REDIS__URL", &spec.redis),
        from_secret("PIKA_SIDECAR__REDIS__SEAL_KEY", &spec.encryption.cache_seal_key),
    ];
    if let Some(key) = spec.embedding.as_ref().and_then(|e| e.api_key.as_ref()) {
        env.push(from_secret("PIKA_SIDECAR__EMBEDDING__API_KEY", key));
    }
    env
}

/// The dataplane's secrets as `PIKA__SECTION__KEY` variables (read over the
/// TOML file).
pub fn secret_env(owner: &Owner) -> Vec<EnvVar> {
    let spec = &owner.ms.spec;
    let mut env = vec![
        from_secret("PIKA__STORAGE__META_URL", &spec.postgres),
        from_secret("PIKA__STORAGE__GRAPH_URL", &spec.neo4j),
        from_secret("PIKA__CACHE__REDIS_URL", &spec.redis),
        from_secret("PIKA__QUEUE__URL", &spec.rabbitmq),
    ];
    if let Some(url) = &spec.encryption.keyring_url {
        env.push(from_secret("PIKA__ENCRYPTION__KEYRING_URL", url));
    }
    match (spec.milvus.mode, &spec.milvus.token) {
        (MilvusMode::External, Some(token)) => env.push(from_secret("PIKA__VECTOR__TOKEN", token)),
        (MilvusMode::Managed, _) if spec.milvus.authentication => env.push(from_secret(
            "PIKA__VECTOR__TOKEN",
            &super::milvus::auth_token_ref(owner),
        )),
        _ => {}
    }
    if let Some(key) = spec.embedding.as_ref().and_then(|e| e.api_key.as_ref()) {
        env.push(from_secret("PIKA__EMBEDDING__API_KEY", key));
    }
    if let Some(key) = spec.llm.as_ref().and_then(|l| l.api_key.as_ref()) {
        env.push(from_secret("PIKA__LLM__API_KEY", key));
    }
    env
}

/// The sidecar's policy file.
pub fn policy_json(policy: &Policy) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(policy)
}

/// Short stable hash of the given parts (order matters).
pub fn hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("x\ny"), r#""x\ny""#);
        assert_eq!(quoted("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn hash_depends_on_every_part_and_its_boundaries() {
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_eq!(hash(&[b"x"]), hash(&[b"x"]));
        assert_eq!(hash(&[b"x"]).len(), 16);
    }
}
