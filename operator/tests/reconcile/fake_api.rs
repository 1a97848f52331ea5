//! A small in-memory Kubernetes API server behind a tower-test mock service:
//! enough of GET/list (with label selectors), server-side apply, JSON and
//! merge patches, DELETE and POST for the controller's calls, with every
//! request logged and failures injectable. Tests then assert on what the
//! controller *did* (the writes) rather than on a scripted call order.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Collections the controller lists (last path segment).
const PLURALS: &[&str] = &[
    "deployments",
    "configmaps",
    "services",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "ingresses",
    "networkpolicies",
    "persistentvolumeclaims",
    "secrets",
    "memoryservices",
    "cachepolicies",
    "events",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub content_type: String,
}

impl Call {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

struct Failure {
    method: Method,
    path_contains: String,
    status: u16,
    remaining: usize,
}

#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    calls: Mutex<Vec<Call>>,
    failures: Mutex<Vec<Failure>>,
    next_uid: Mutex<u64>,
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    // The reasons the API server uses (kube matches on "NotFound").
    let reason = match code.as_u16() {
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        400 => "BadRequest",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn label_selector(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("labelSelector="))
        .flat_map(|sel| {
            decode(sel)
                .split(',')
                .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Vec<_>>()
        })
        .collect()
}

impl FakeApi {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeApi::default())
    }

    /// A kube Client whose requests this fake answers.
    pub fn client(self: &Arc<Self>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let resp = fake.handle(req).await;
                send.send_response(resp);
            }
        });
        Client::new(service, "default")
    }

    /// Stores an object at its path (as if created earlier).
    pub fn insert(&self, path: &str, mut obj: Value) {
        self.stamp(&mut obj, None);
        self.objects.lock().expect("lock").insert(path.to_string(), obj);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().expect("lock").get(path).cloned()
    }

    /// Replaces an object in place (a user editing it).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut objects = self.objects.lock().expect("lock");
        let obj = objects.get_mut(path).expect("object to edit");
        f(obj);
    }

    pub fn paths_under(&self, prefix: &str) -> Vec<String> {
        self.objects
            .lock()
            .expect("lock")
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().expect("lock").clear();
    }

    /// The next `times` requests with this method whose path contains
    /// `path_contains` fail with `code`.
    pub fn fail(&self, method: Method, path_contains: &str, code: u16, times: usize) {
        self.failures.lock().expect("lock").push(Failure {
            method,
            path_contains: path_contains.to_string(),
            status: code,
            remaining: times,
        });
    }

    /// uid, resourceVersion, generation as the API server sets them.
    fn stamp(&self, obj: &mut Value, old: Option<&Value>) {
        let mut uid = self.next_uid.lock().expect("lock");
        *uid += 1;
        let meta = &mut obj["metadata"];
        let old_meta = old.map(|o| &o["metadata"]);
        meta["uid"] = old_meta
            .and_then(|m| m.get("uid").cloned())
            .or_else(|| meta.get("uid").cloned())
            .unwrap_or_else(|| json!(format!("uid-{}", *uid)));
        meta["resourceVersion"] = json!(uid.to_string());
        let given_gen = meta["generation"].as_i64();
        let old_gen = old_meta.and_then(|m| m["generation"].as_i64());
        let spec_changed = old.is_none_or(|o| o.get("spec") != obj.get("spec"));
        let generation = match old_gen {
            Some(g) if spec_changed => g + 1,
            Some(g) => g,
            None => given_gen.unwrap_or(1),
        };
        obj["metadata"]["generation"] = json!(generation);
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!("2026-11-21T00:00:00Z");
        }
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.calls.lock().expect("lock").push(Call {
            method: method.clone(),
            path: path.clone(),
            content_type: content_type.clone(),
        });
        {
            let mut failures = self.failures.lock().expect("lock");
            if let Some(f) = failures
                .iter_mut()
                .find(|f| f.method == method && path.contains(&f.path_contains) && f.remaining > 0)
            {
                f.remaining -= 1;
                let code = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return status(code, "injected failure");
            }
        }
        let body = match req.into_body().collect_bytes().await {
            Ok(b) => b,
            Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let last = path.rsplit('/').next().unwrap_or("");
        let is_collection = PLURALS.contains(&last);
        match method {
            Method::GET if is_collection => {
                let selector = label_selector(&query);
                let prefix = format!("{path}/");
                let objects = self.objects.lock().expect("lock");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                    .map(|(_, v)| v.clone())
                    .filter(|v| {
                        selector
                            .iter()
                            .all(|(k, want)| v["metadata"]["labels"][k].as_str() == Some(want))
                    })
                    .collect();
                ok(
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            Method::GET => match self.get(&path) {
                Some(v) => ok(&v),
                None => status(StatusCode::NOT_FOUND, "not found"),
            },
            Method::POST => {
                let mut obj: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{}{}",
                            obj["metadata"]["generateName"].as_str().unwrap_or("obj-"),
                            self.calls().len()
                        )
                    });
                obj["metadata"]["name"] = json!(name);
                self.insert(&format!("{path}/{name}"), obj.clone());
                ok(&self.get(&format!("{path}/{name}")).unwrap_or(obj))
            }
            Method::DELETE => match self.objects.lock().expect("lock").remove(&path) {
                Some(v) => ok(&v),
                None => status(StatusCode::NOT_FOUND, "not found"),
            },
            Method::PATCH => self.patch(&path, &content_type, &body),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "unsupported"),
        }
    }

    fn patch(&self, path: &str, content_type: &str, body: &[u8]) -> Response<Body> {
        let patch: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        let old = self.get(&object_path);
        let mut new = match (content_type, &old, subresource) {
            (_, None, true) => return status(StatusCode::NOT_FOUND, "not found"),
            (ct, Some(old), true) if ct.starts_with("application/apply-patch") => {
                let mut o = old.clone();
                o["status"] = patch["status"].clone();
                o
            }
            (ct, _, false) if ct.starts_with("application/apply-patch") => {
                // Server-side apply of a whole object by its only manager: the
                // applied object, keeping the server-set status.
                let mut o = patch.clone();
                if let Some(s) = old.as_ref().and_then(|o| o.get("status")) {
                    o["status"] = s.clone();
                }
                o
            }
            (ct, Some(old), _) if ct.starts_with("application/json-patch") => {
                let mut o = old.clone();
                if o["metadata"].get("finalizers").is_none() {
                    o["metadata"]["finalizers"] = Value::Null;
                }
                let ops: json_patch::Patch = match serde_json::from_value(patch) {
                    Ok(p) => p,
                    Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
                };
                if let Err(e) = json_patch::patch(&mut o, &ops) {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
                }
                o
            }
            (ct, Some(old), _) if ct.starts_with("application/merge-patch") => {
                let mut o = old.clone();
                json_patch::merge(&mut o, &patch);
                o
            }
            _ => return status(StatusCode::NOT_FOUND, "not found"),
        };
        // A finalizer removed from an object being deleted lets it go.
        let deleting = new["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        self.stamp(&mut new, old.as_ref());
        if deleting && no_finalizers {
            self.objects.lock().expect("lock").remove(&object_path);
        } else {
            self.objects
                .lock()
                .expect("lock")
                .insert(object_path, new.clone());
        }
        ok(&new)
    }
}
