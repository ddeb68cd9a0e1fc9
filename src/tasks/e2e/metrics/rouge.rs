//! ROUGE-L as in pycocoevalcap (`rouge.py`): per instance, precision and recall are maximised
//! separately over the references before the F-measure with β = 1.2.

const BETA: f64 = 1.2;

/// Length of the longest common subsequence of two token sequences.
pub fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of one tokenised candidate against its tokenised references. Strings are split on
/// single spaces like Python's `str.split(" ")`, so an empty candidate is one empty token.
pub fn rouge_l(candidate: &str, refs: &[String]) -> f64 {
    let cand: Vec<&str> = candidate.split(' ').collect();
    let mut prec_max = 0.0f64;
    let mut rec_max = 0.0f64;
    for r in refs {
        let toks: Vec<&str> = r.split(' ').collect();
        let l = lcs(&toks, &cand) as f64;
        prec_max = prec_max.max(l / cand.len() as f64);
        rec_max = rec_max.max(l / toks.len() as f64);
    }
    if prec_max == 0.0 || rec_max == 0.0 {
        return 0.0;
    }
    ((1.0 + BETA * BETA) * prec_max * rec_max) / (rec_max + BETA * BETA * prec_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_small_case() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["a", "c", "x", "d"]), 3);
        assert_eq!(lcs(&[], &["a"]), 0);
    }

    #[test]
    fn rouge_l_closed_form() {
        // LCS 3: P = 3/4, R = 3/5.
        let score = rouge_l("a c x d", &["a b c d e".to_string()]);
        let (p, r) = (0.75, 0.6);
        let expected = (1.0 + 1.44) * p * r / (r + 1.44 * p);
        assert!((score - expected).abs() < 1e-15);
        assert_eq!(rouge_l("", &["a".to_string()]), 0.0);
    }
}
