//! The operator writes configuration files for two other crates; each must
//! load in that crate's own type, which refuses unknown keys, so a field the
//! operator misspells or a crate renames fails here, not in a cluster.

use pika_operator::crd::{CachePolicy, MemoryService, Policy};
use pika_operator::render;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> MemoryService {
    let text = std::fs::read_to_string(root().join("examples").join(name)).expect("read example");
    let mut ms: MemoryService = serde_yaml::from_str(&text).expect("example parses as MemoryService");
    ms.metadata.uid = Some("1f0e6a2c-0000-4000-8000-000000000001".into());
    ms
}

fn policy() -> Policy {
    let text = std::fs::read_to_string(root().join("examples/cachepolicy.yaml")).expect("read");
    let cp: CachePolicy = serde_yaml::from_str(&text).expect("cache policy parses");
    cp.spec.0
}

const EXAMPLES: &[&str] = &[
    "memoryservice-minimal.yaml",
    "memoryservice-gpu.yaml",
    "memoryservice-external.yaml",
];

#[test]
fn the_rendered_dataplane_config_loads_in_the_dataplane() {
    for file in EXAMPLES {
        let d = render::render(&example(file), &policy()).expect("renders");
        let data = d.config_maps[0].data.as_ref().expect("data");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dataplane.toml");
        std::fs::write(&path, &data["dataplane.toml"]).expect("write");
        let config =
            pika_dataplane::config::Config::load(Some(&path)).expect("dataplane accepts the rendered config");
        assert_eq!(
            config.worker.concurrency,
            example(file).spec.worker.concurrency as usize
        );
        assert!(!config.worker.in_process, "{file}: workers run apart");
        let index = d.index.as_ref().expect("index");
        assert_eq!(config.vector.index_type, index.kind.milvus_name());
    }
}

#[test]
fn the_rendered_sidecar_config_and_policy_load_in_the_sidecar() {
    for file in EXAMPLES {
        let d = render::render(&example(file), &policy()).expect("renders");
        let data = d.config_maps[0].data.as_ref().expect("data");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sidecar.toml");
        std::fs::write(&path, &data["sidecar.toml"]).expect("write");
        let sidecar =
            pika_sidecar::config::SidecarConfig::load(Some(&path)).expect("sidecar accepts its config");
        let dataplane_path = dir.path().join("dataplane.toml");
        std::fs::write(&dataplane_path, &data["dataplane.toml"]).expect("write");
        let dataplane =
            pika_dataplane::config::Config::load(Some(&dataplane_path)).expect("dataplane config");
        assert_eq!(
            sidecar.embedding, dataplane.embedding,
            "{file}: both embed with one model"
        );
        assert_eq!(sidecar.policy, Path::new("/etc/pika/cache-policy.json"));
        let policy_path = dir.path().join("cache-policy.json");
        std::fs::write(&policy_path, &data["cache-policy.json"]).expect("write");
        let policy = pika_sidecar::load_policy(&policy_path).expect("sidecar policy loads");
        assert!(policy.problems().is_empty());
    }
}

#[test]
fn with_in_pod_tls_the_sidecar_loads_its_certificate_paths_and_the_dataplane_stays_on_loopback() {
    let mut ms = example("memoryservice-gpu.yaml");
    ms.spec.tls = Some(pika_operator::crd::InPodTlsSpec {
        secret_name: "pika-api-tls".into(),
        min_version: pika_operator::crd::TlsMinVersion::Tls13,
    });
    let d = render::render(&ms, &policy()).expect("renders");
    let data = d.config_maps[0].data.as_ref().expect("data");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, &data["sidecar.toml"]).expect("write");
    let sidecar = pika_sidecar::config::SidecarConfig::load(Some(&path)).expect("sidecar config");
    assert_eq!(sidecar.tls.cert_file, Path::new("/etc/pika-tls/tls.crt"));
    assert_eq!(sidecar.tls.key_file, Path::new("/etc/pika-tls/tls.key"));
    assert_eq!(sidecar.tls.min_version, pika_common::tls::TlsVersion::Tls13);
    let dataplane_path = dir.path().join("dataplane.toml");
    std::fs::write(&dataplane_path, &data["dataplane.toml"]).expect("write");
    let dataplane = pika_dataplane::config::Config::load(Some(&dataplane_path)).expect("dataplane config");
    assert_eq!(dataplane.server.listen, "127.0.0.1:8081");
    assert!(
        !dataplane.server.tls.enabled(),
        "behind the sidecar the dataplane speaks plain HTTP on loopback"
    );
}
