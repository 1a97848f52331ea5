//! `MemoryService`: one PIKA Memory installation (API pods with their caching
//! sidecar, extraction workers, and a managed or external Milvus).
//!
//! Every optional field has a default that matches SDD 14.2 or the dataplane's
//! own defaults, so the smallest useful manifest names only the images and the
//! three secrets. Rules that span fields are CEL (`x-kubernetes-validations`),
//! enforced by the API server and checked locally with `validate_cel`.
//!
//! Over 400 lines on purpose: the resource's Rust types are its schema, mostly
//! field docs that become the CRD's descriptions.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a PIKA Memory installation.
// The lint reads the repeated `type_ = ..` of separate `printcolumn(..)`
// entries as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pika.stepup.edu.vn",
    version = "v1alpha1",
    kind = "MemoryService",
    namespaced,
    status = "MemoryServiceStatus",
    shortname = "msvc",
    category = "pika",
    derive = "PartialEq",
    doc = "A PIKA Memory installation: API pods with the caching sidecar, extraction workers and Milvus.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "API",
        type_ = "string",
        json_path = ".status.api.summary",
        description = "ready/desired API pods"
    ),
    printcolumn(
        name = "Workers",
        type_ = "string",
        json_path = ".status.workers.summary",
        description = "ready/desired worker pods"
    ),
    printcolumn(name = "Index", type_ = "string", json_path = ".status.index.type"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.milvus.mode != 'external' || (has(self.milvus.url) && self.milvus.url != '')").message("milvus.url is required when milvus.mode is external"))]
#[x_kube(validation = Rule::new("self.milvus.mode != 'managed' || !has(self.milvus.url)").message("milvus.url is only for milvus.mode external"))]
#[x_kube(validation = Rule::new("self.milvus.index.type != 'GPU_CAGRA' || self.milvus.gpu.enabled").message("milvus.index.type GPU_CAGRA needs milvus.gpu.enabled"))]
pub struct MemoryServiceSpec {
    pub images: Images,
    /// The API pods: dataplane plus caching sidecar.
    #[serde(default)]
    pub api: ApiSpec,
    #[serde(default)]
    pub sidecar: SidecarSpec,
    /// Extraction workers consuming the RabbitMQ queue.
    #[serde(default)]
    pub worker: WorkerSpec,
    #[serde(default)]
    pub milvus: MilvusSpec,
    /// Postgres URL (facts, jobs, keys, audit).
    pub postgres: SecretKeyRef,
    /// Redis URL (L1 cache, generations, invalidation messages).
    pub redis: SecretKeyRef,
    /// RabbitMQ URL (the extraction queue).
    pub rabbitmq: SecretKeyRef,
    /// Neo4j (`neo4j://`, `bolt://`) or FalkorDB (`falkordb://`) URL of the
    /// entity graph shared by all pods.
    pub neo4j: SecretKeyRef,
    /// An OpenAI-compatible chat model for extraction; without it the
    /// built-in rule extractor runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<ModelEndpoint>,
    /// An OpenAI-compatible embedding endpoint; without it the bundled
    /// all-MiniLM-L6-v2 runs on the pods' CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<ModelEndpoint>,
    /// Public HTTPS entry point; without it the API is reachable in-cluster only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Encryption at rest (docs/SECURITY.md): required, because every
    /// replica must share the keys that seal children's data.
    pub encryption: EncryptionSpec,
    /// Who may connect to which pod (NetworkPolicies, on by default).
    #[serde(default)]
    pub network: NetworkSpec,
    /// HTTPS inside the pod: the sidecar serves TLS with this certificate,
    /// so traffic is encrypted from the ingress to the pod too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<InPodTlsSpec>,
}

/// The sidecar's certificate for in-pod TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InPodTlsSpec {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`), e.g. from
    /// cert-manager; renewals are picked up without a restart.
    pub secret_name: String,
    /// Oldest protocol the sidecar accepts: `"1.2"` or `"1.3"` (TLS 1.3 is
    /// preferred either way).
    #[serde(default)]
    pub min_version: TlsMinVersion,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TlsMinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsMinVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMinVersion::Tls12 => "1.2",
            TlsMinVersion::Tls13 => "1.3",
        }
    }
}

/// NetworkPolicies rendered for the installation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Render the policies (turn off only where the cluster's network
    /// plugin does not enforce them, or another tool owns them).
    #[serde(default = "default_true")]
    pub policies: bool,
    /// Who may reach the API pods' sidecar port. Default: with `ingress`,
    /// the ingress controller's namespace (`ingressNamespace`); without,
    /// pods of the MemoryService's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_from: Option<Vec<NetworkPolicyPeer>>,
    /// Namespace of the ingress controller.
    #[serde(default = "default_ingress_namespace")]
    pub ingress_namespace: String,
    /// Who may scrape metrics (API sidecar and worker ports), e.g. the
    /// Prometheus namespace. Default: nobody beyond `apiFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            policies: true,
            api_from: None,
            ingress_namespace: default_ingress_namespace(),
            metrics_from: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_ingress_namespace() -> String {
    "ingress-nginx".into()
}

/// The keys of encryption at rest, from Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// A KEK file: `ID BASE64KEY` per line, the last one active (one line
    /// from `pika-dataplane keys new-kek`). Mounted as a file, so a line
    /// added to the Secret reaches running pods; then `keys rotate-kek`.
    pub keks: SecretKeyRef,
    /// 32 random bytes in base64 (`openssl rand -base64 32`): seals the L1
    /// cache, the same in every sidecar.
    pub cache_seal_key: SecretKeyRef,
    /// URL of the keyring database (children's data keys). Default: the
    /// Postgres database; name another so metadata backups hold no keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring_url: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// `pika-dataplane` image (API and workers).
    pub dataplane: String,
    /// `pika-sidecar` image.
    pub sidecar: String,
    /// Milvus image for `milvus.mode: managed`; the default follows `milvus.gpu.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milvus: Option<String>,
    #[serde(default = "default_pull_policy")]
    pub pull_policy: String,
}

fn default_pull_policy() -> String {
    "IfNotPresent".into()
}

/// A key of a Secret in the MemoryService's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub secret_name: String,
    #[serde(default = "default_secret_key")]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Pods when autoscaling is off (with autoscaling on, the HPA owns the count).
    #[schemars(range(min = 1))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<ApiAutoscaling>,
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            replicas: 2,
            resources: None,
            autoscaling: None,
        }
    }
}

/// SDD 14.2.1: CPU 70 %, memory 80 %, optionally requests per pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct ApiAutoscaling {
    #[serde(default = "default_api_min")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    #[serde(default = "default_api_max")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
    #[serde(default = "default_memory")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization: i32,
    /// Scale on `http_requests_per_second` per pod (a Pods metric served by
    /// a custom-metrics adapter such as prometheus-adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_pod: Option<i32>,
}

fn default_api_min() -> i32 {
    3
}
fn default_api_max() -> i32 {
    50
}
fn default_cpu() -> i32 {
    70
}
fn default_memory() -> i32 {
    80
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Name of a `CachePolicy` in the same namespace; the built-in defaults
    /// apply without one. Changing the policy rolls the API pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_policy_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Jobs in flight per worker pod (mostly waiting on the LLM and Milvus).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<WorkerAutoscaling>,
}

fn default_concurrency() -> i32 {
    8
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            replicas: 1,
            concurrency: default_concurrency(),
            resources: None,
            autoscaling: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct WorkerAutoscaling {
    #[serde(default = "default_worker_min")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    #[serde(default = "default_worker_max")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
    /// Scale on ready messages per pod (SDD 14.2: 50), read from the
    /// External metric `rabbitmq_queue_messages_ready{queue=...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub queue_depth_per_pod: Option<i32>,
}

fn default_worker_min() -> i32 {
    1
}
fn default_worker_max() -> i32 {
    10
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum MilvusMode {
    /// The operator runs a standalone Milvus (embedded etcd, local storage on a PVC).
    #[default]
    Managed,
    /// `milvus.url` points at a Milvus the platform team runs.
    External,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilvusSpec {
    #[serde(default)]
    pub mode: MilvusMode,
    /// gRPC URL of an external Milvus, e.g. `http://milvus.data:19530`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Token of an external Milvus (`user:password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretKeyRef>,
    /// Managed Milvus: authentication on, with a root password the operator
    /// generates once into the Secret `{name}-milvus-auth` (keys `password`
    /// and `token`) and hands to the dataplane.
    #[serde(default = "default_true")]
    pub authentication: bool,
    /// Managed Milvus: run as a non-root user (uid 1000) with no
    /// capabilities; turn off only for an image that needs root.
    #[serde(default = "default_true")]
    pub run_as_non_root: bool,
    #[serde(default)]
    pub storage: MilvusStorage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub gpu: GpuSpec,
    #[serde(default)]
    pub index: IndexSpec,
}

impl Default for MilvusSpec {
    fn default() -> Self {
        MilvusSpec {
            mode: MilvusMode::default(),
            url: None,
            token: None,
            authentication: true,
            run_as_non_root: true,
            storage: MilvusStorage::default(),
            resources: None,
            gpu: GpuSpec::default(),
            index: IndexSpec::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilvusStorage {
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Keep the volume (orphaned, not deleted) when the MemoryService is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
}

impl Default for MilvusStorage {
    fn default() -> Self {
        MilvusStorage {
            size: "50Gi".into(),
            storage_class_name: None,
            retain_on_delete: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    pub enabled: bool,
    /// `nvidia.com/gpu` per Milvus pod.
    #[serde(default = "default_gpu_count")]
    #[schemars(range(min = 1, max = 8))]
    pub count: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Defaults to tolerating `nvidia.com/gpu` taints when GPU is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

fn default_gpu_count() -> i32 {
    1
}

impl Default for GpuSpec {
    fn default() -> Self {
        GpuSpec {
            enabled: false,
            count: default_gpu_count(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum IndexType {
    /// GPU_CAGRA on a GPU, HNSW otherwise, IVF_FLAT above 50 million vectors.
    #[default]
    #[serde(rename = "AUTO")]
    Auto,
    #[serde(rename = "HNSW")]
    Hnsw,
    #[serde(rename = "IVF_FLAT")]
    IvfFlat,
    #[serde(rename = "GPU_CAGRA")]
    GpuCagra,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    #[serde(rename = "type", default)]
    pub type_: IndexType,
    /// Vectors expected in the collection (all children together).
    #[serde(default = "default_expected_vectors")]
    #[schemars(range(min = 1))]
    pub expected_vectors: i64,
    /// Wanted recall@k of the approximate search, in (0, 1).
    #[serde(default = "default_recall")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0").message("recallTarget must be within (0, 1)"))]
    pub recall_target: f64,
    /// Overrides of tuned parameters by Milvus name (`M`, `efConstruction`,
    /// `ef`, `nlist`, `nprobe`, `intermediate_graph_degree`, `graph_degree`,
    /// `itopk_size`, `search_width`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, i64>,
}

fn default_expected_vectors() -> i64 {
    1_000_000
}
fn default_recall() -> f64 {
    0.95
}

impl Default for IndexSpec {
    fn default() -> Self {
        IndexSpec {
            type_: IndexType::Auto,
            expected_vectors: default_expected_vectors(),
            recall_target: default_recall(),
            params: BTreeMap::new(),
        }
    }
}

/// An OpenAI-compatible endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEndpoint {
    pub base_url: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretKeyRef>,
    /// Vector size (embedding only; must match the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub dimension: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    pub host: String,
    /// TLS Secret for `host`; without it the Ingress serves plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Progressing, Ready, Degraded or Failed.
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub api: ReplicaCounts,
    #[serde(default)]
    pub workers: ReplicaCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexStatus>,
    /// Where clients reach the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Hash of the rendered configuration the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    pub ready: i32,
    pub desired: i32,
    /// `ready/desired`, for `kubectl get`.
    pub summary: String,
}

impl ReplicaCounts {
    pub fn new(ready: i32, desired: i32) -> Self {
        ReplicaCounts {
            ready,
            desired,
            summary: format!("{ready}/{desired}"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexStatus {
    #[serde(rename = "type")]
    pub type_: String,
    pub params: BTreeMap<String, i64>,
}
