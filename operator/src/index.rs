//! Milvus index parameters as a pure function of the expected collection
//! size, the wanted recall and whether Milvus has a GPU.
//!
//! The rules (recall `r`, expected vectors `N`):
//!
//! | type | parameter | value |
//! |---|---|---|
//! | AUTO | — | GPU_CAGRA with a GPU; IVF_FLAT for N > 50 M (HNSW's graph no longer fits memory comfortably); HNSW otherwise |
//! | HNSW | `M` | 8 (r ≤ 0.90), 16 (≤ 0.95), 24 (≤ 0.98), 32 above; +8 when N > 10 M (max 64) |
//! | HNSW | `efConstruction` | 12·M, within 100..=500 |
//! | HNSW | `ef` | 64 / 128 / 256 / 512 by the same recall steps; ×2 when N > 10 M (max 2048) |
//! | IVF_FLAT | `nlist` | 4·√N rounded up to a power of two, within 64..=65536 |
//! | IVF_FLAT | `nprobe` | nlist/128, /64, /32, /16 by the recall steps, at least 8 |
//! | GPU_CAGRA | `graph_degree` | 32 (r ≤ 0.95), 64 above; `intermediate_graph_degree` twice that |
//! | GPU_CAGRA | `itopk_size` | 64 / 128 / 256 / 512 by the recall steps |
//! | GPU_CAGRA | `search_width` | 1 (r ≤ 0.95), 2 (≤ 0.98), 4 above |
//!
//! The recall steps follow the published HNSW/IVF/CAGRA recall curves for
//! 384–1024-dimensional text embeddings: each step roughly halves the misses
//! at about twice the search work. `index.params` overrides any value by its
//! Milvus name; a name that does not belong to the chosen type is an error.

use crate::crd::{IndexSpec, IndexType};
use std::collections::BTreeMap;

/// Above this many vectors AUTO prefers IVF_FLAT to HNSW on CPU.
const IVF_ABOVE: i64 = 50_000_000;
/// Above this many vectors HNSW gets more links and a wider search.
const LARGE: i64 = 10_000_000;

/// The index Milvus builds, as the dataplane names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Hnsw,
    IvfFlat,
    GpuCagra,
}

impl Resolved {
    pub fn milvus_name(self) -> &'static str {
        match self {
            Resolved::Hnsw => "HNSW",
            Resolved::IvfFlat => "IVF_FLAT",
            Resolved::GpuCagra => "GPU_CAGRA",
        }
    }

    fn parameter_names(self) -> &'static [&'static str] {
        match self {
            Resolved::Hnsw => &["M", "efConstruction", "ef"],
            Resolved::IvfFlat => &["nlist", "nprobe"],
            Resolved::GpuCagra => &[
                "intermediate_graph_degree",
                "graph_degree",
                "itopk_size",
                "search_width",
            ],
        }
    }
}

/// Tuned parameters of one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlan {
    pub kind: Resolved,
    /// By Milvus parameter name.
    pub params: BTreeMap<String, i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("milvus.index.params.{name} does not apply to a {kind} index (valid: {valid})")]
    UnknownParameter {
        name: String,
        kind: &'static str,
        valid: String,
    },
    #[error("milvus.index.params.{name} must be positive, got {value}")]
    NotPositive { name: String, value: i64 },
}

/// Which of the four recall steps `r` falls in (0: ≤ 0.90 … 3: above 0.98).
fn recall_step(r: f64) -> u32 {
    if r <= 0.90 {
        0
    } else if r <= 0.95 {
        1
    } else if r <= 0.98 {
        2
    } else {
        3
    }
}

/// Picks the index type and its parameters.
pub fn tune(spec: &IndexSpec, gpu: bool) -> Result<IndexPlan, IndexError> {
    let n = spec.expected_vectors.max(1);
    let step = recall_step(spec.recall_target);
    let kind = match spec.type_ {
        IndexType::Auto if gpu => Resolved::GpuCagra,
        IndexType::Auto if n > IVF_ABOVE => Resolved::IvfFlat,
        IndexType::Auto | IndexType::Hnsw => Resolved::Hnsw,
        IndexType::IvfFlat => Resolved::IvfFlat,
        IndexType::GpuCagra => Resolved::GpuCagra,
    };
    let mut params = BTreeMap::new();
    let mut set = |k: &str, v: i64| {
        params.insert(k.to_string(), v);
    };
    match kind {
        Resolved::Hnsw => {
            let mut m = [8, 16, 24, 32][step as usize];
            let mut ef = 64_i64 << step;
            if n > LARGE {
                m = (m + 8).min(64);
                ef = (ef * 2).min(2048);
            }
            set("M", m);
            set("efConstruction", (12 * m).clamp(100, 500));
            set("ef", ef);
        }
        Resolved::IvfFlat => {
            let raw = (4.0 * (n as f64).sqrt()).ceil() as i64;
            let nlist = (raw.max(1) as u64).next_power_of_two().clamp(64, 65_536) as i64;
            let nprobe = (nlist / (128 >> step)).max(8);
            set("nlist", nlist);
            set("nprobe", nprobe);
        }
        Resolved::GpuCagra => {
            let degree = if step <= 1 { 32 } else { 64 };
            set("graph_degree", degree);
            set("intermediate_graph_degree", degree * 2);
            set("itopk_size", 64_i64 << step);
            set("search_width", [1, 1, 2, 4][step as usize]);
        }
    }
    for (name, value) in &spec.params {
        if !kind.parameter_names().contains(&name.as_str()) {
            return Err(IndexError::UnknownParameter {
                name: name.clone(),
                kind: kind.milvus_name(),
                valid: kind.parameter_names().join(", "),
            });
        }
        if *value <= 0 {
            return Err(IndexError::NotPositive {
                name: name.clone(),
                value: *value,
            });
        }
        params.insert(name.clone(), *value);
    }
    Ok(IndexPlan { kind, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(type_: IndexType, n: i64, r: f64) -> IndexSpec {
        IndexSpec {
            type_,
            expected_vectors: n,
            recall_target: r,
            params: BTreeMap::new(),
        }
    }

    fn p(plan: &IndexPlan, k: &str) -> i64 {
        plan.params[k]
    }

    #[test]
    fn auto_picks_by_gpu_and_size() {
        assert_eq!(
            tune(&spec(IndexType::Auto, 1_000_000, 0.95), false)
                .expect("tunes")
                .kind,
            Resolved::Hnsw
        );
        assert_eq!(
            tune(&spec(IndexType::Auto, 1_000_000, 0.95), true)
                .expect("tunes")
                .kind,
            Resolved::GpuCagra
        );
        assert_eq!(
            tune(&spec(IndexType::Auto, 80_000_000, 0.95), false)
                .expect("tunes")
                .kind,
            Resolved::IvfFlat
        );
        // An explicit type wins over size.
        assert_eq!(
            tune(&spec(IndexType::Hnsw, 80_000_000, 0.95), false)
                .expect("tunes")
                .kind,
            Resolved::Hnsw
        );
    }

    #[test]
    fn hnsw_defaults_match_the_dataplane_at_one_million() {
        let plan = tune(&spec(IndexType::Hnsw, 1_000_000, 0.95), false).expect("tunes");
        assert_eq!(
            (p(&plan, "M"), p(&plan, "efConstruction"), p(&plan, "ef")),
            (16, 192, 128)
        );
        assert_eq!(plan.params.len(), 3);
    }

    #[test]
    fn more_recall_or_more_vectors_never_means_less_work() {
        let recalls = [0.80, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 0.999];
        let sizes = [1_000, 1_000_000, 10_000_001, 49_000_000, 200_000_000];
        for kind in [IndexType::Hnsw, IndexType::IvfFlat, IndexType::GpuCagra] {
            for n in sizes {
                let mut last: Option<BTreeMap<String, i64>> = None;
                for r in recalls {
                    let plan = tune(&spec(kind, n, r), true).expect("tunes");
                    if let Some(prev) = &last {
                        for (k, v) in &plan.params {
                            assert!(
                                v >= &prev[k],
                                "{kind:?} n={n} r={r}: {k} fell from {} to {v}",
                                prev[k]
                            );
                        }
                    }
                    last = Some(plan.params);
                }
            }
        }
        let small = tune(&spec(IndexType::Hnsw, 1_000_000, 0.95), false).expect("tunes");
        let large = tune(&spec(IndexType::Hnsw, 20_000_000, 0.95), false).expect("tunes");
        assert_eq!((p(&large, "M"), p(&large, "ef")), (24, 256));
        assert!(p(&large, "efConstruction") > p(&small, "efConstruction"));
    }

    #[test]
    fn ivf_lists_grow_with_the_square_root_and_stay_in_bounds() {
        let at = |n| tune(&spec(IndexType::IvfFlat, n, 0.95), false).expect("tunes");
        assert_eq!(
            (p(&at(1_000_000), "nlist"), p(&at(1_000_000), "nprobe")),
            (4096, 64)
        );
        assert_eq!(p(&at(10), "nlist"), 64);
        assert_eq!(p(&at(10), "nprobe"), 8);
        assert_eq!(p(&at(1_000_000_000_000), "nlist"), 65_536);
    }

    #[test]
    fn cagra_steps() {
        let plan = tune(&spec(IndexType::GpuCagra, 1_000_000, 0.99), true).expect("tunes");
        assert_eq!(p(&plan, "graph_degree"), 64);
        assert_eq!(p(&plan, "intermediate_graph_degree"), 128);
        assert_eq!(p(&plan, "itopk_size"), 512);
        assert_eq!(p(&plan, "search_width"), 4);
    }

    #[test]
    fn overrides_apply_by_name_and_foreign_names_are_refused() {
        let mut s = spec(IndexType::Hnsw, 1_000_000, 0.95);
        s.params.insert("ef".into(), 300);
        assert_eq!(p(&tune(&s, false).expect("tunes"), "ef"), 300);
        s.params.insert("nlist".into(), 1024);
        let err = tune(&s, false).expect_err("refused");
        assert!(
            err.to_string().contains("nlist does not apply to a HNSW index"),
            "{err}"
        );
        let mut s = spec(IndexType::IvfFlat, 1_000_000, 0.95);
        s.params.insert("nprobe".into(), 0);
        assert!(matches!(tune(&s, false), Err(IndexError::NotPositive { .. })));
    }
}
