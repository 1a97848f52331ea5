//! Cache keys: what makes two searches the same question.
//!
//! The parameter key covers everything except the query text: the user, the
//! result shape (limit, threshold, categories, related facts) and the
//! embedding model, and the route shape and Mem0 scope. Two searches may share an answer only when their
//! parameter keys are equal; the semantic matcher compares queries only
//! within one parameter key, so a user partition is in force before any
//! similarity is computed. The exact key adds the normalised query.

use pika_common::wire::SearchRequest;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// A 128-bit digest, shown as hex in Redis keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest128(pub [u8; 16]);

impl Digest128 {
    fn of(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Digest128(out)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The keys of one search.
#[derive(Debug, Clone)]
pub struct SearchKeys {
    pub user_id: String,
    /// User + parameters + model: the partition semantic matching stays inside.
    pub params: Digest128,
    /// `params` + normalised query.
    pub exact: Digest128,
    /// The normalised query (also what the lexical guard compares).
    pub query: String,
}

impl SearchKeys {
    /// `route`: the answer's shape (`native` or a Mem0 route shape).
    pub fn new(req: &SearchRequest, route: &str, model: &str) -> Self {
        let mut categories: Vec<String> = req
            .categories
            .iter()
            .flatten()
            .map(|c| format!("{c:?}"))
            .collect();
        categories.sort();
        categories.dedup();
        let limit = req.limit.to_string();
        let threshold = req.score_threshold.to_bits().to_string();
        let related = if req.include_related { "1" } else { "0" };
        // "all" and "an explicit empty list" are different requests.
        let cats = match &req.categories {
            None => "*".to_string(),
            Some(_) => categories.join(","),
        };
        // Mem0's agent, run and app filters narrow the answer like categories.
        let scope = req.scope.as_ref().map_or_else(String::new, |s| {
            format!(
                "{}\u{1f}{}\u{1f}{}",
                s.agent_id.as_deref().unwrap_or("*"),
                s.run_id.as_deref().unwrap_or("*"),
                s.app_id.as_deref().unwrap_or("*")
            )
        });
        let params = Digest128::of(&[
            b"pika-search-v2",
            route.as_bytes(),
            scope.as_bytes(),
            req.user_id.as_bytes(),
            limit.as_bytes(),
            threshold.as_bytes(),
            cats.as_bytes(),
            related.as_bytes(),
            model.as_bytes(),
        ]);
        let query = normalize_query(&req.query);
        let exact = Digest128::of(&[&params.0, query.as_bytes()]);
        SearchKeys {
            user_id: req.user_id.clone(),
            params,
            exact,
            query,
        }
    }
}

/// Case, spacing and Unicode form do not change the question; diacritics do
/// ("ma" ghost, "má" mum), so they are kept.
pub fn normalize_query(q: &str) -> String {
    let nfc: String = q.nfc().collect::<String>().to_lowercase();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_common::wire::Category;

    fn req(user: &str, query: &str) -> SearchRequest {
        SearchRequest {
            user_id: user.into(),
            query: query.into(),
            limit: 10,
            score_threshold: 0.0,
            categories: None,
            include_related: true,
            scope: None,
        }
    }

    #[test]
    fn case_spacing_and_unicode_form_do_not_matter() {
        let a = SearchKeys::new(&req("u1", "Bé thích  ăn gì"), "native", "m");
        // Decomposed "é" (e + combining acute) and other case.
        let b = SearchKeys::new(&req("u1", "BE\u{301} THÍCH ĂN GÌ"), "native", "m");
        assert_eq!(a.exact, b.exact);
    }

    #[test]
    fn diacritics_user_parameters_and_model_do_matter() {
        let base = SearchKeys::new(&req("u1", "bé sợ ma"), "native", "m");
        assert_ne!(
            base.exact,
            SearchKeys::new(&req("u1", "bé sợ má"), "native", "m").exact
        );
        assert_ne!(
            base.params,
            SearchKeys::new(&req("u2", "bé sợ ma"), "native", "m").params
        );
        assert_ne!(
            base.params,
            SearchKeys::new(&req("u1", "bé sợ ma"), "native", "other").params
        );
        let mut r = req("u1", "bé sợ ma");
        r.limit = 5;
        assert_ne!(base.params, SearchKeys::new(&r, "native", "m").params);
        let mut r = req("u1", "bé sợ ma");
        r.categories = Some(vec![]);
        assert_ne!(base.params, SearchKeys::new(&r, "native", "m").params);
        let mut a = req("u1", "x");
        a.categories = Some(vec![Category::Preference, Category::Habit]);
        let mut b = req("u1", "x");
        b.categories = Some(vec![Category::Habit, Category::Preference]);
        assert_eq!(
            SearchKeys::new(&a, "native", "m").params,
            SearchKeys::new(&b, "native", "m").params
        );
    }

    #[test]
    fn mem0_shapes_and_scopes_never_share_an_answer_with_native_searches() {
        let r = req("u1", "pets");
        let native = SearchKeys::new(&r, "native", "m");
        let wrapped = SearchKeys::new(&r, "mem0-wrapped", "m");
        let bare = SearchKeys::new(&r, "mem0-bare", "m");
        assert_ne!(native.params, wrapped.params);
        assert_ne!(wrapped.params, bare.params);
        let mut scoped = r.clone();
        scoped.scope = Some(pika_common::wire::MemoryScope {
            agent_id: Some("bot".into()),
            ..Default::default()
        });
        assert_ne!(
            wrapped.params,
            SearchKeys::new(&scoped, "mem0-wrapped", "m").params
        );
        let mut run = r.clone();
        run.scope = Some(pika_common::wire::MemoryScope {
            run_id: Some("bot".into()),
            ..Default::default()
        });
        assert_ne!(
            SearchKeys::new(&scoped, "mem0-wrapped", "m").params,
            SearchKeys::new(&run, "mem0-wrapped", "m").params,
            "an agent id is not a run id"
        );
    }
}
