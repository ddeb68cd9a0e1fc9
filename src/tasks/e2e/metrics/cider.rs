//! CIDEr-D as in pycocoevalcap (`cider_scorer.py`): tf-idf n-gram vectors (n = 1..4) with
//! document frequencies from the references of the scored corpus, clipped cosine similarity,
//! and a Gaussian length penalty (σ = 6) on the difference of the bigram counts, × 10.

use std::collections::{HashMap, HashSet};

const N: usize = 4;
const SIGMA: f64 = 6.0;

type Counts = HashMap<Vec<String>, usize>;

fn precook(sentence: &str) -> Counts {
    let words: Vec<String> = sentence.split_whitespace().map(str::to_string).collect();
    let mut counts = Counts::new();
    for n in 1..=N {
        for gram in words.windows(n) {
            *counts.entry(gram.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

struct Vector {
    vec: Vec<HashMap<Vec<String>, f64>>,
    norm: Vec<f64>,
    /// Number of bigrams: coco-caption counts `length` only for n == 2 entries.
    length: f64,
}

fn counts_to_vec(counts: &Counts, df: &HashMap<Vec<String>, f64>, log_n: f64) -> Vector {
    let mut vec = vec![HashMap::new(); N];
    let mut norm = vec![0.0; N];
    let mut length = 0.0;
    for (gram, &tf) in counts {
        let n = gram.len() - 1;
        let d = df.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
        let v = tf as f64 * (log_n - d);
        vec[n].insert(gram.clone(), v);
        norm[n] += v * v;
        if n == 1 {
            length += tf as f64;
        }
    }
    Vector {
        vec,
        norm: norm.into_iter().map(f64::sqrt).collect(),
        length,
    }
}

fn sim(hyp: &Vector, reference: &Vector) -> [f64; N] {
    let delta = hyp.length - reference.length;
    let mut val = [0.0; N];
    for (n, out) in val.iter_mut().enumerate() {
        for (gram, &v) in &hyp.vec[n] {
            let r = reference.vec[n].get(gram).copied().unwrap_or(0.0);
            *out += v.min(r) * r;
        }
        if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
            *out /= hyp.norm[n] * reference.norm[n];
        }
        *out *= (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
    }
    val
}

/// Per-instance CIDEr-D scores of tokenised candidates against tokenised references.
pub fn cider_segments(refs: &[Vec<String>], cands: &[String]) -> Vec<f64> {
    let crefs: Vec<Vec<Counts>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| precook(r)).collect())
        .collect();
    let mut df: HashMap<Vec<String>, f64> = HashMap::new();
    for rs in &crefs {
        let grams: HashSet<&Vec<String>> = rs.iter().flat_map(|c| c.keys()).collect();
        for g in grams {
            *df.entry(g.clone()).or_insert(0.0) += 1.0;
        }
    }
    let log_n = (crefs.len() as f64).ln();
    crefs
        .iter()
        .zip(cands)
        .map(|(rs, cand)| {
            let hyp = counts_to_vec(&precook(cand), &df, log_n);
            let mut score = [0.0; N];
            for r in rs {
                let s = sim(&hyp, &counts_to_vec(r, &df, log_n));
                for n in 0..N {
                    score[n] += s[n];
                }
            }
            let mean = score.iter().sum::<f64>() / N as f64;
            mean / rs.len() as f64 * 10.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_instance_corpus_scores_zero() {
        let s = cider_segments(&[vec!["a b c".to_string()]], &["a b c".to_string()]);
        assert_eq!(s, vec![0.0]);
    }

    #[test]
    fn identical_unigram_only_closed_form() {
        // Two instances with disjoint one-word references: idf = ln 2 for every word; the
        // candidate equal to its reference has cosine 1 for unigrams and no higher-order grams.
        let refs = vec![vec!["a".to_string()], vec!["b".to_string()]];
        let s = cider_segments(&refs, &["a".to_string(), "c".to_string()]);
        assert!((s[0] - 10.0 / 4.0).abs() < 1e-12);
        assert_eq!(s[1], 0.0);
    }
}
