//! The checked-in CRDs match the Rust types, the CEL rules accept good specs
//! and refuse bad ones, and every file in `examples/` parses.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use pika_operator::crd::{self, CachePolicy, MemoryService};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn checked_in_crds_match_the_types() {
    for (file, yaml) in crd::crd_files().expect("crds render") {
        for dir in ["crds", "charts/pika-operator/crds"] {
            let path = root().join(dir).join(file);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{} is stale: run `cargo run -p pika-operator --bin crdgen` and commit the result",
                path.display()
            );
        }
    }
}

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json")
}

/// Runs the CRD's CEL rules (with defaults applied, as the API server does)
/// on a whole object; returns the messages of the rules that failed.
fn violations(schema: &Value, obj: &Value) -> Vec<String> {
    match Validator::new().validate(schema, obj, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn minimal_ms() -> Value {
    json!({
        "apiVersion": "pika.stepup.edu.vn/v1alpha1",
        "kind": "MemoryService",
        "metadata": {"name": "m", "namespace": "pika"},
        "spec": {
            "images": {"dataplane": "d:1", "sidecar": "s:1"},
            "postgres": {"secretName": "b", "key": "postgres"},
            "redis": {"secretName": "b", "key": "redis"},
            "rabbitmq": {"secretName": "b", "key": "rabbitmq"},
            "neo4j": {"secretName": "b", "key": "graph"},
            "encryption": {
                "keks": {"secretName": "k", "key": "keks"},
                "cacheSealKey": {"secretName": "k", "key": "seal"}
            }
        }
    })
}

#[test]
fn memory_service_cel_rules() {
    let schema = schema_of(&MemoryService::crd());
    assert_eq!(violations(&schema, &minimal_ms()), Vec::<String>::new());

    let with = |path: &[&str], value: Value| {
        let mut obj = minimal_ms();
        let mut at = &mut obj["spec"];
        for p in &path[..path.len() - 1] {
            if at.get(*p).is_none() {
                at[*p] = json!({});
            }
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        obj
    };
    let cases = [
        (
            with(
                &["api", "autoscaling"],
                json!({"minReplicas": 5, "maxReplicas": 2}),
            ),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            with(
                &["worker", "autoscaling"],
                json!({"minReplicas": 4, "maxReplicas": 3}),
            ),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            with(&["milvus"], json!({"index": {"type": "GPU_CAGRA"}})),
            "GPU_CAGRA needs milvus.gpu.enabled",
        ),
        (
            with(&["milvus"], json!({"mode": "external"})),
            "milvus.url is required",
        ),
        (
            with(&["milvus"], json!({"mode": "managed", "url": "http://x:19530"})),
            "only for milvus.mode external",
        ),
        (
            with(&["milvus"], json!({"index": {"recallTarget": 1.0}})),
            "recallTarget must be within (0, 1)",
        ),
        (
            with(&["milvus"], json!({"index": {"recallTarget": 0.0}})),
            "recallTarget must be within (0, 1)",
        ),
    ];
    for (obj, expected) in cases {
        let got = violations(&schema, &obj);
        assert!(
            got.iter().any(|m| m.contains(expected)),
            "expected {expected:?} for {}, got {got:?}",
            obj["spec"]
        );
    }
    let fine = [
        with(
            &["api", "autoscaling"],
            json!({"minReplicas": 2, "maxReplicas": 2}),
        ),
        with(
            &["milvus"],
            json!({"index": {"type": "GPU_CAGRA"}, "gpu": {"enabled": true}}),
        ),
        with(&["milvus"], json!({"mode": "external", "url": "http://x:19530"})),
        with(&["milvus"], json!({"index": {"recallTarget": 0.99}})),
    ];
    for obj in fine {
        assert_eq!(violations(&schema, &obj), Vec::<String>::new(), "{}", obj["spec"]);
    }
}

fn policy(spec: Value) -> Value {
    json!({
        "apiVersion": "pika.stepup.edu.vn/v1alpha1",
        "kind": "CachePolicy",
        "metadata": {"name": "p", "namespace": "pika"},
        "spec": spec
    })
}

#[test]
fn cache_policy_cel_rules() {
    let schema = schema_of(&CachePolicy::crd());
    for good in [
        json!({}),
        json!({"semantic": {"threshold": 1.0}}),
        json!({"l1": {"enabled": false, "ttlSeconds": 0}}),
    ] {
        assert_eq!(
            violations(&schema, &policy(good.clone())),
            Vec::<String>::new(),
            "{good}"
        );
    }
    let cases = [
        (
            json!({"semantic": {"threshold": 1.2}}),
            "threshold must be within (0, 1]",
        ),
        (
            json!({"semantic": {"threshold": 0.0}}),
            "threshold must be within (0, 1]",
        ),
        (json!({"l0": {"maxEntries": 0}}), "maxEntries must be at least 1"),
        (
            json!({"l0": {"ttlSeconds": 10, "unsubscribedTtlSeconds": 20}}),
            "must not exceed",
        ),
        (
            json!({"l1": {"enabled": true, "maxEntriesPerUser": 0}}),
            "at least 1 when L1 is enabled",
        ),
        (json!({"warmup": {"queries": ["  "]}}), "1..500 characters"),
    ];
    for (spec, expected) in cases {
        let got = violations(&schema, &policy(spec.clone()));
        assert!(
            got.iter().any(|m| m.contains(expected)),
            "expected {expected:?} for {spec}, got {got:?}"
        );
    }
}

#[test]
fn every_example_parses_into_the_rust_types_and_passes_the_rules() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("yaml");
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "MemoryService" => {
                    let ms: MemoryService = serde_json::from_value(value.clone()).expect("MemoryService");
                    assert_eq!(
                        violations(&schema_of(&MemoryService::crd()), &value),
                        Vec::<String>::new(),
                        "{}",
                        path.display()
                    );
                    assert!(ms.spec.api.replicas >= 1);
                }
                "CachePolicy" => {
                    let cp: CachePolicy = serde_json::from_value(value.clone()).expect("CachePolicy");
                    assert!(cp.spec.0.problems().is_empty());
                    assert_eq!(
                        violations(&schema_of(&CachePolicy::crd()), &value),
                        Vec::<String>::new()
                    );
                }
                "Secret" => {}
                other => panic!("{}: unexpected kind {other}", path.display()),
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "examples found: {seen}");
}
