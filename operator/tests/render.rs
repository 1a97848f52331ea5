//! Render tests: each example MemoryService renders to the objects in
//! `tests/golden/<example>.yaml`. Together the examples cover GPU on and off,
//! autoscaling on and off, managed and external Milvus, Ingress with TLS,
//! without TLS and none. Run with `UPDATE_GOLDEN=1` to rewrite the files after
//! an intended change, and review the diff.

use pika_operator::crd::{CachePolicy, MemoryService, Policy};
use pika_operator::render::{self, Desired};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> MemoryService {
    let text = std::fs::read_to_string(root().join("examples").join(name)).expect("read example");
    let mut ms: MemoryService = serde_yaml::from_str(&text).expect("example parses as MemoryService");
    ms.metadata.uid = Some("1f0e6a2c-0000-4000-8000-000000000001".into());
    ms.metadata.generation = Some(1);
    ms
}

fn policy() -> Policy {
    let text = std::fs::read_to_string(root().join("examples/cachepolicy.yaml")).expect("read");
    let cp: CachePolicy = serde_yaml::from_str(&text).expect("cache policy parses");
    cp.spec.0
}

fn objects(d: &Desired) -> Vec<Value> {
    let mut all = Vec::new();
    let mut push = |v: Value| all.push(v);
    d.config_maps
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.pvcs
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.services
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.deployments
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.hpas
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.pdbs
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.ingresses
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    d.network_policies
        .iter()
        .for_each(|o| push(serde_json::to_value(o).expect("json")));
    all
}

fn check_golden(example_file: &str) -> Desired {
    let ms = example(example_file);
    // As the controller does: the referenced policy, or the defaults.
    let policy = match ms.spec.sidecar.cache_policy_ref {
        Some(_) => policy(),
        None => Policy::default(),
    };
    let desired = render::render(&ms, &policy).expect("renders");
    let docs: Vec<String> = objects(&desired)
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect();
    let text = format!("---\n{}", docs.join("---\n"));
    let golden = root().join("operator/tests/golden").join(example_file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        expected == text,
        "{example_file} renders differently from {}; rerun with UPDATE_GOLDEN=1 if intended.\n--- rendered ---\n{text}",
        golden.display()
    );
    desired
}

fn kinds(d: &Desired) -> Vec<String> {
    objects(d)
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn container<'a>(d: &'a Desired, deployment: &str, name: &str) -> &'a k8s_openapi::api::core::v1::Container {
    d.deployments
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some(deployment))
        .and_then(|x| x.spec.as_ref()?.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == name))
        .expect("container")
}

#[test]
fn minimal_managed_cpu_fixed_replicas_no_ingress() {
    let d = check_golden("memoryservice-minimal.yaml");
    assert_eq!(
        kinds(&d),
        [
            "ConfigMap/pika-dev-config",
            "ConfigMap/pika-dev-milvus",
            "PersistentVolumeClaim/pika-dev-milvus",
            "Service/pika-dev-api",
            "Service/pika-dev-milvus",
            "Deployment/pika-dev-api",
            "Deployment/pika-dev-worker",
            "Deployment/pika-dev-milvus",
            "PodDisruptionBudget/pika-dev-api",
            "PodDisruptionBudget/pika-dev-worker",
            "NetworkPolicy/pika-dev-api",
            "NetworkPolicy/pika-dev-worker",
            "NetworkPolicy/pika-dev-milvus",
        ]
    );
    let api = &d.deployments[0];
    assert_eq!(api.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let milvus = container(&d, "pika-dev-milvus", "milvus");
    assert!(
        !milvus
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key("nvidia.com/gpu"))
    );
    assert_eq!(milvus.image.as_deref(), Some("milvusdb/milvus:v2.5.10"));
    assert_eq!(d.endpoint, "http://pika-dev-api.pika.svc:8080");
    assert_eq!(d.index.as_ref().map(|i| i.kind.milvus_name()), Some("HNSW"));
}

#[test]
fn gpu_autoscaled_with_tls_ingress() {
    let d = check_golden("memoryservice-gpu.yaml");
    let k = kinds(&d);
    assert!(
        k.contains(&"HorizontalPodAutoscaler/pika-api".to_string()),
        "{k:?}"
    );
    assert!(k.contains(&"HorizontalPodAutoscaler/pika-worker".to_string()));
    assert!(k.contains(&"Ingress/pika-api".to_string()));
    // The HPA owns the replica count.
    assert!(
        d.deployments
            .iter()
            .take(2)
            .all(|x| x.spec.as_ref().and_then(|s| s.replicas).is_none())
    );
    let hpa = serde_json::to_value(&d.hpas[0]).expect("json");
    let metrics: Vec<&str> = hpa["spec"]["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| m["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(metrics, ["Resource", "Resource", "Pods"]);
    let worker_hpa = serde_json::to_value(&d.hpas[1]).expect("json");
    assert_eq!(
        worker_hpa["spec"]["metrics"][1]["external"]["metric"]["name"],
        "rabbitmq_queue_messages_ready"
    );
    let milvus = container(&d, "pika-milvus", "milvus");
    let limits = milvus
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(milvus.image.as_deref(), Some("milvusdb/milvus:v2.5.10-gpu"));
    let pod = d.deployments[2]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    assert_eq!(pod.tolerations.as_ref().map(|t| t.len()), Some(1));
    assert!(
        pod.node_selector
            .as_ref()
            .is_some_and(|n| n.contains_key("nvidia.com/gpu.present"))
    );
    assert_eq!(d.endpoint, "https://memory.pika.example.com");
    let ing = serde_json::to_value(&d.ingresses[0]).expect("json");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "memory-pika-tls");
    assert_eq!(d.index.as_ref().map(|i| i.kind.milvus_name()), Some("GPU_CAGRA"));
}

#[test]
fn external_milvus_has_no_milvus_objects_and_plain_ingress() {
    let d = check_golden("memoryservice-external.yaml");
    let k = kinds(&d);
    assert!(!k.iter().any(|x| x.contains("milvus")), "{k:?}");
    assert!(d.pvcs.is_empty() && d.hpas.is_empty());
    assert_eq!(d.endpoint, "http://memory.internal.example.com");
    assert!(
        d.ingresses[0]
            .spec
            .as_ref()
            .and_then(|s| s.tls.as_ref())
            .is_none()
    );
    let toml = &d.config_maps[0].data.as_ref().expect("data")["dataplane.toml"];
    assert!(toml.contains("url = \"http://milvus.data.svc:19530\""), "{toml}");
    assert!(toml.contains("hnsw_ef = 200"), "override applied: {toml}");
    let env: Vec<String> = container(&d, "pika-ext-api", "dataplane")
        .env
        .as_ref()
        .expect("env")
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert!(env.contains(&"PIKA__VECTOR__TOKEN".to_string()));
    assert!(env.contains(&"PIKA__EMBEDDING__API_KEY".to_string()));
}

#[test]
fn a_cache_policy_change_changes_the_api_pod_template_only() {
    let ms = example("memoryservice-gpu.yaml");
    let before = render::render(&ms, &policy()).expect("renders");
    let mut changed = policy();
    changed.semantic.threshold = 0.97;
    let after = render::render(&ms, &changed).expect("renders");
    let hash = |d: &Desired, i: usize| {
        d.deployments[i]
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .map(|a| a["pika.stepup.edu.vn/config-hash"].clone())
    };
    assert_ne!(hash(&before, 0), hash(&after, 0), "API pods roll");
    assert_eq!(hash(&before, 1), hash(&after, 1), "workers do not use the policy");
    assert_ne!(before.config_hash, after.config_hash);
}

#[test]
fn an_invalid_policy_or_index_override_is_refused() {
    let ms = example("memoryservice-minimal.yaml");
    let mut bad = policy();
    bad.semantic.threshold = 1.5;
    let err = render::render(&ms, &bad).expect_err("refused");
    assert!(err.to_string().contains("semantic.threshold"), "{err}");
    let mut ms = example("memoryservice-minimal.yaml");
    ms.spec.milvus.index.params.insert("nprobe".into(), 16);
    let err = render::render(&ms, &policy()).expect_err("refused");
    assert!(
        err.to_string().contains("nprobe does not apply to a HNSW index"),
        "{err}"
    );
}

#[test]
fn every_replica_reads_the_kek_from_its_secret_and_sidecars_share_the_cache_seal_key() {
    let d = check_golden("memoryservice-minimal.yaml");
    let toml = &d.config_maps[0].data.as_ref().expect("data")["dataplane.toml"];
    assert!(toml.contains("kek_file = \"/etc/pika-kek/kek.keys\""), "{toml}");
    assert!(toml.contains("generate_kek = false"), "{toml}");
    let mounts_kek = |c: &k8s_openapi::api::core::v1::Container| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "kek" && m.read_only == Some(true))
    };
    assert!(mounts_kek(container(&d, "pika-dev-api", "dataplane")));
    assert!(mounts_kek(container(&d, "pika-dev-worker", "worker")));
    let sidecar = container(&d, "pika-dev-api", "sidecar");
    assert!(!mounts_kek(sidecar), "the sidecar never sees the KEK");
    let seal = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "PIKA_SIDECAR__REDIS__SEAL_KEY")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("seal key from a Secret");
    assert_eq!(
        (seal.name.as_str(), seal.key.as_str()),
        ("pika-keys", "cache-seal-key")
    );
    let volume = d.deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref()?.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "kek"))
        .and_then(|v| v.secret.as_ref())
        .expect("kek volume");
    assert_eq!(volume.secret_name.as_deref(), Some("pika-keys"));
    assert_eq!(volume.default_mode, Some(0o400));
}

#[test]
fn network_policies_let_in_only_the_sidecar_port_and_milvus_only_from_its_pods() {
    let d = check_golden("memoryservice-minimal.yaml");
    let by_name = |n: &str| {
        d.network_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
            .and_then(|p| p.spec.clone())
            .expect("policy")
    };
    let api = by_name("pika-dev-api");
    assert_eq!(api.policy_types, Some(vec!["Ingress".to_string()]));
    let rules = api.ingress.expect("rules");
    assert_eq!(rules.len(), 1);
    let ports: Vec<_> = rules[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.clone())
        .collect();
    assert_eq!(
        ports,
        vec![k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
            8080
        )],
        "the dataplane port 8081 is not reachable from outside the pod"
    );
    // No Ingress in this example: only the MemoryService's own namespace.
    let from = serde_json::to_value(&rules[0].from).expect("json");
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "pika",
        "{from}"
    );
    let worker = by_name("pika-dev-worker");
    assert_eq!(worker.ingress, Some(Vec::new()), "nothing connects to workers");
    let milvus = serde_json::to_value(by_name("pika-dev-milvus")).expect("json");
    let peer = &milvus["ingress"][0]["from"][0]["podSelector"];
    assert_eq!(
        peer["matchLabels"]["app.kubernetes.io/instance"], "pika-dev",
        "{milvus}"
    );
    assert_eq!(
        peer["matchExpressions"][0]["values"],
        serde_json::json!(["api", "worker"]),
        "{milvus}"
    );
    assert_eq!(milvus["ingress"][0]["ports"][0]["port"], 19530);
}

#[test]
fn with_an_ingress_the_api_is_reachable_from_the_ingress_controller_only() {
    let d = check_golden("memoryservice-gpu.yaml");
    let api = d
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref().is_some_and(|n| n.ends_with("-api")))
        .expect("api policy");
    let from = serde_json::to_value(&api.spec.as_ref().expect("spec").ingress).expect("json");
    assert_eq!(
        from[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress-nginx",
        "{from}"
    );
}

fn env_of<'a>(
    c: &'a k8s_openapi::api::core::v1::Container,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

fn secret_ref(e: &k8s_openapi::api::core::v1::EnvVar) -> (String, String) {
    let r = e
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("from a secret");
    (r.name.clone(), r.key.clone())
}

#[test]
fn managed_milvus_requires_a_password_the_operator_generates_and_runs_non_root() {
    let d = render::render(&example("memoryservice-minimal.yaml"), &Policy::default()).expect("renders");
    // The credentials Secret is created once by the controller, not applied.
    let meta = d.milvus_auth.as_ref().expect("a generated Secret is asked for");
    assert_eq!(meta.name.as_deref(), Some("pika-dev-milvus-auth"));
    assert!(meta.owner_references.as_ref().is_some_and(|o| !o.is_empty()));
    let secret = render::milvus::auth_secret_with(meta.clone(), "s3cret");
    let data = secret.string_data.expect("data");
    assert_eq!(data["password"], "s3cret");
    assert_eq!(data["token"], "root:s3cret");

    let milvus = container(&d, "pika-dev-milvus", "milvus");
    assert_eq!(
        env_of(milvus, "COMMON_SECURITY_AUTHORIZATIONENABLED").and_then(|e| e.value.as_deref()),
        Some("true")
    );
    let root_password = env_of(milvus, "COMMON_SECURITY_DEFAULTROOTPASSWORD").expect("root password");
    assert_eq!(
        secret_ref(root_password),
        ("pika-dev-milvus-auth".into(), "password".into())
    );
    // API and worker dataplanes present the token.
    for (deployment, name) in [("pika-dev-api", "dataplane"), ("pika-dev-worker", "worker")] {
        let token = env_of(container(&d, deployment, name), "PIKA__VECTOR__TOKEN").expect("token");
        assert_eq!(secret_ref(token), ("pika-dev-milvus-auth".into(), "token".into()));
    }
    // Non-root, no capabilities, a group-writable volume.
    let pod = d
        .deployments
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some("pika-dev-milvus"))
        .and_then(|x| x.spec.as_ref()?.template.spec.clone())
        .expect("milvus pod");
    let security = pod.security_context.expect("pod security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(1000));
    assert_eq!(security.fs_group, Some(1000));
    let c = milvus.security_context.as_ref().expect("container security");
    assert_eq!(c.allow_privilege_escalation, Some(false));
    assert_eq!(
        c.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );

    // Both can be turned off (an image that needs root; auth elsewhere).
    let mut ms = example("memoryservice-minimal.yaml");
    ms.spec.milvus.authentication = false;
    ms.spec.milvus.run_as_non_root = false;
    let d = render::render(&ms, &Policy::default()).expect("renders");
    assert!(d.milvus_auth.is_none());
    let milvus = container(&d, "pika-dev-milvus", "milvus");
    assert!(env_of(milvus, "COMMON_SECURITY_AUTHORIZATIONENABLED").is_none());
    assert!(env_of(container(&d, "pika-dev-api", "dataplane"), "PIKA__VECTOR__TOKEN").is_none());
}

#[test]
fn an_external_milvus_gets_no_generated_secret() {
    let d = check_golden("memoryservice-external.yaml");
    assert!(d.milvus_auth.is_none());
}

#[test]
fn the_dataplane_listens_on_loopback_and_is_probed_by_exec() {
    let d = render::render(&example("memoryservice-minimal.yaml"), &Policy::default()).expect("renders");
    let toml = d.config_maps[0].data.as_ref().expect("data")["dataplane.toml"].clone();
    assert!(toml.contains("listen = \"127.0.0.1:8081\""), "{toml}");
    let dataplane = container(&d, "pika-dev-api", "dataplane");
    for probe in [&dataplane.liveness_probe, &dataplane.readiness_probe] {
        let probe = probe.as_ref().expect("probe");
        assert!(probe.http_get.is_none(), "an HTTP probe cannot reach loopback");
        let command = probe.exec.as_ref().and_then(|e| e.command.clone()).expect("exec");
        assert_eq!(
            command[..2],
            ["/usr/local/bin/pika-dataplane".to_string(), "probe".to_string()]
        );
    }
}

#[test]
fn in_pod_tls_mounts_the_certificate_into_the_sidecar_and_probes_https() {
    let mut ms = example("memoryservice-gpu.yaml");
    ms.spec.tls = Some(pika_operator::crd::InPodTlsSpec {
        secret_name: "pika-api-tls".into(),
        min_version: pika_operator::crd::TlsMinVersion::Tls13,
    });
    let d = render::render(&ms, &policy()).expect("renders");
    let sidecar_toml = d.config_maps[0].data.as_ref().expect("data")["sidecar.toml"].clone();
    // (tests/tests/operator_config.rs loads this file into the sidecar's config.)
    assert!(
        sidecar_toml.contains("[tls]\ncert_file = \"/etc/pika-tls/tls.crt\"\nkey_file = \"/etc/pika-tls/tls.key\"\nmin_version = \"1.3\""),
        "{sidecar_toml}"
    );
    let api = d
        .deployments
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some("pika-api"))
        .expect("api");
    let pod = api
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let volume = pod
        .volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == "tls"))
        .expect("tls volume");
    let secret = volume.secret.as_ref().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("pika-api-tls"));
    assert_eq!(secret.default_mode, Some(0o400));
    let sidecar = container(&d, "pika-api", "sidecar");
    assert!(sidecar.volume_mounts.as_ref().is_some_and(|m| {
        m.iter()
            .any(|m| m.name == "tls" && m.mount_path == "/etc/pika-tls")
    }));
    let dataplane = container(&d, "pika-api", "dataplane");
    assert!(
        !dataplane
            .volume_mounts
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.name == "tls")),
        "only the sidecar holds the certificate"
    );
    let scheme = sidecar
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|g| g.scheme.clone());
    assert_eq!(scheme.as_deref(), Some("HTTPS"));
    let ingress = &d.ingresses[0];
    assert_eq!(
        ingress.metadata.annotations.as_ref().expect("annotations")["nginx.ingress.kubernetes.io/backend-protocol"],
        "HTTPS"
    );
    // Worker pods do not mount it.
    let worker = d
        .deployments
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some("pika-worker"))
        .and_then(|x| x.spec.as_ref()?.template.spec.as_ref())
        .expect("worker");
    assert!(
        !worker
            .volumes
            .as_ref()
            .is_some_and(|v| v.iter().any(|v| v.name == "tls"))
    );
}
