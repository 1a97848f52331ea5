//! Splitting one padded batch into passes of similar lengths.
//!
//! Why: MiniLM runs a batch as one rectangle, every text padded to the
//! longest, and its cost grows with the rectangle, padding included. The
//! extraction worker's batches mix short facts ("Bé nuôi mèo tên Miu", about
//! 12 tokens) with episodes that carry the turn they answer (40 and more),
//! several jobs at once, so most of a padded batch was padding. Sorting by
//! length and cutting where a new pass costs less than the padding it saves
//! keeps the per-pass fixed cost amortised while the rectangles stay tight.
//!
//! The cut points are chosen exactly (dynamic programming over the sorted
//! lengths) for the cost model `passes × overhead + Σ texts × longest`; a
//! batch of equal lengths stays one pass.

/// The fixed cost of one forward pass, in padded token slots. Measured on
/// this project's 2-core machines: one pass over a single short query costs
/// about as much as 16 more tokens in a stacked batch (docs/BENCHMARKS.md,
/// "Worker embedding").
pub const PASS_OVERHEAD_TOKENS: usize = 16;

/// The most texts one group holds: past this the overhead is amortised
/// anyway, and it bounds the search to O(n × 256) for a bulk request.
const MAX_GROUP: usize = 256;

/// Groups of indices into `lens` (token counts), each to run as one pass
/// padded to its longest member. Every index appears exactly once; groups
/// come shortest first, and within a group indices are ordered by length.
pub fn length_groups(lens: &[usize], overhead: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let n = order.len();
    // best[i]: least cost of passes covering the i shortest texts;
    // start[i]: where the last of those passes begins.
    let mut best = vec![0usize; n + 1];
    let mut start = vec![0usize; n + 1];
    for i in 1..=n {
        let longest = lens[order[i - 1]];
        let (cost, from) = (i.saturating_sub(MAX_GROUP)..i)
            .map(|j| (best[j] + overhead + (i - j) * longest, j))
            .min()
            .unwrap_or((0, 0));
        best[i] = cost;
        start[i] = from;
    }
    let mut groups = Vec::new();
    let mut end = n;
    while end > 0 {
        let from = start[end];
        groups.push(order[from..end].to_vec());
        end = from;
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_cost(lens: &[usize], groups: &[Vec<usize>], overhead: usize) -> usize {
        groups
            .iter()
            .map(|g| overhead + g.len() * g.iter().map(|&i| lens[i]).max().unwrap_or(0))
            .sum()
    }

    #[test]
    fn every_text_lands_in_exactly_one_group() {
        let lens = [12, 44, 9, 13, 51, 11, 40, 12, 3, 60];
        let groups = length_groups(&lens, PASS_OVERHEAD_TOKENS);
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
        assert!(groups.iter().all(|g| !g.is_empty()));
    }

    #[test]
    fn equal_lengths_stay_one_pass() {
        let groups = length_groups(&[14; 32], PASS_OVERHEAD_TOKENS);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), 32);
    }

    #[test]
    fn facts_and_episodes_of_a_worker_batch_run_apart() {
        // Four jobs: five short facts and two episodes each.
        let lens: Vec<usize> = (0..4).flat_map(|_| [11, 12, 10, 13, 12, 45, 52]).collect();
        let groups = length_groups(&lens, PASS_OVERHEAD_TOKENS);
        assert!(groups[0].iter().all(|&i| lens[i] <= 13), "{groups:?}");
        assert_eq!(groups[0].len(), 20, "all facts in one pass: {groups:?}");
        assert!(groups[1..].iter().flatten().all(|&i| lens[i] >= 45), "{groups:?}");
        let one_pass = [(0..lens.len()).collect::<Vec<_>>()];
        let (split, whole) = (
            padded_cost(&lens, &groups, PASS_OVERHEAD_TOKENS),
            padded_cost(&lens, &one_pass, PASS_OVERHEAD_TOKENS),
        );
        assert!(split * 2 < whole, "split {split} vs one pass {whole}");
    }

    #[test]
    fn a_small_difference_is_not_worth_another_pass() {
        let groups = length_groups(&[10, 11, 12, 13, 14], PASS_OVERHEAD_TOKENS);
        assert_eq!(groups.len(), 1, "{groups:?}");
    }

    #[test]
    fn the_split_never_costs_more_than_one_pass() {
        let mut seed = 7u64;
        for _ in 0..200 {
            let lens: Vec<usize> = (0..((seed % 40) + 1))
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (seed >> 33) as usize % 120 + 3
                })
                .collect();
            let groups = length_groups(&lens, PASS_OVERHEAD_TOKENS);
            let one_pass = [(0..lens.len()).collect::<Vec<_>>()];
            assert!(
                padded_cost(&lens, &groups, PASS_OVERHEAD_TOKENS)
                    <= padded_cost(&lens, &one_pass, PASS_OVERHEAD_TOKENS)
            );
        }
    }

    #[test]
    fn a_bulk_request_is_cut_into_bounded_groups() {
        let groups = length_groups(&[20; 1000], PASS_OVERHEAD_TOKENS);
        assert!(groups.iter().all(|g| g.len() <= MAX_GROUP));
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 1000);
    }

    #[test]
    fn no_texts_no_groups() {
        assert!(length_groups(&[], PASS_OVERHEAD_TOKENS).is_empty());
    }
}
