//! BLEU and NIST as computed by NIST `mteval-v13a-sig.pl` (the Perl the official E2E scorer runs):
//! its default tokenisation, smoothed cumulative BLEU-4 with the closest-reference brevity
//! penalty, and cumulative NIST-5 with information weights counted over all references.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

const BLEU_N: usize = 4;
const NIST_N: usize = 5;

struct TokRegexes {
    punct: Regex,
    dot_after: Regex,
    dot_before: Regex,
    dash: Regex,
}

fn tok_regexes() -> &'static TokRegexes {
    static RE: OnceLock<TokRegexes> = OnceLock::new();
    RE.get_or_init(|| TokRegexes {
        // The Perl class `[\{-\~\[-\` -\&\(-\+\:-\@\/]`, range for range.
        punct: Regex::new(r"([{-~\[-` -&(-+:-@/])").expect("valid regex"),
        dot_after: Regex::new(r"([^0-9])([.,])").expect("valid regex"),
        dot_before: Regex::new(r"([.,])([^0-9])").expect("valid regex"),
        dash: Regex::new(r"([0-9])(-)").expect("valid regex"),
    })
}

/// mteval's default (non-international) tokenisation, lower-casing ASCII only like `tr/A-Z/a-z/`.
pub fn tokenize(text: &str) -> Vec<String> {
    let re = tok_regexes();
    let mut s = text
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    s = format!(" {s} ");
    s.make_ascii_lowercase();
    // regex's replace_all is leftmost, non-overlapping, like Perl's s///g.
    let s = re.punct.replace_all(&s, " $1 ");
    let s = re.dot_after.replace_all(&s, "$1 $2 ");
    let s = re.dot_before.replace_all(&s, " $1 $2");
    let s = re.dash.replace_all(&s, "$1 $2 ");
    s.split_whitespace().map(str::to_string).collect()
}

/// Perl `Words2Ngrams` limited to orders `1..=max_n`, keyed by the space-joined n-gram.
fn ngram_counts(words: &[String], max_n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for start in 0..words.len() {
        let mut gram = String::new();
        for word in words.iter().skip(start).take(max_n) {
            if !gram.is_empty() {
                gram.push(' ');
            }
            gram.push_str(word);
            *counts.entry(gram.clone()).or_insert(0) += 1;
        }
    }
    counts
}

fn order(gram: &str) -> usize {
    gram.split(' ').count()
}

/// Per-order n-gram counts of a segment: `len - n + 1`, or 0.
fn order_counts(len: usize, max_n: usize) -> Vec<f64> {
    (0..=max_n)
        .map(|n| {
            if n >= 1 && n <= len {
                (len - n + 1) as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// Clipped matches of the output against the per-n-gram maximum over the references.
fn clipped_matches<'a>(
    out: &'a HashMap<String, usize>,
    refs: &[HashMap<String, usize>],
) -> Vec<(&'a str, usize)> {
    let mut matched = Vec::new();
    for (gram, &count) in out {
        let max_ref = refs.iter().filter_map(|r| r.get(gram)).max();
        if let Some(&m) = max_ref {
            matched.push((gram.as_str(), count.min(m)));
        }
    }
    matched
}

/// mteval's `brevity_penalty_closest`: empty references are skipped, ties go to the shorter.
fn closest_ref_len(ref_lens: &[usize], out_len: usize) -> usize {
    let Some((&first, rest)) = ref_lens.split_first() else {
        return 0;
    };
    let mut current = first;
    for &r in rest {
        if r == 0 {
            continue;
        }
        let dr = out_len.abs_diff(r);
        let dc = out_len.abs_diff(current);
        if dr < dc || (dr == dc && current > r) {
            current = r;
        }
    }
    current
}

/// Corpus BLEU-4 with mteval 13a's smoothing; `refs[i]` are the tokenised references of output `i`.
pub fn bleu(refs: &[Vec<Vec<String>>], outs: &[Vec<String>]) -> f64 {
    let mut matches = [0.0f64; BLEU_N + 1];
    let mut totals = [0.0f64; BLEU_N + 1];
    let mut ref_length = 0.0;
    for (seg_refs, out) in refs.iter().zip(outs) {
        let out_counts = ngram_counts(out, BLEU_N);
        let ref_counts: Vec<_> = seg_refs.iter().map(|r| ngram_counts(r, BLEU_N)).collect();
        for (gram, m) in clipped_matches(&out_counts, &ref_counts) {
            matches[order(gram)] += m as f64;
        }
        for (n, c) in order_counts(out.len(), BLEU_N).into_iter().enumerate() {
            totals[n] += c;
        }
        let lens: Vec<usize> = seg_refs.iter().map(Vec::len).collect();
        ref_length += closest_ref_len(&lens, out.len()) as f64;
    }
    bleu_from_stats(ref_length, &matches, &totals)
}

fn bleu_from_stats(ref_length: f64, matches: &[f64], totals: &[f64]) -> f64 {
    let exp_len_score = if totals[1] > 0.0 {
        (1.0 - ref_length / totals[1]).min(0.0).exp()
    } else {
        0.0
    };
    let mut smooth = 1.0;
    let mut score = 0.0;
    for n in 1..=BLEU_N {
        score += if totals[n] == 0.0 {
            0.0
        } else if matches[n] == 0.0 {
            smooth *= 2.0;
            (1.0 / (smooth * totals[n])).ln()
        } else {
            (matches[n] / totals[n]).ln()
        };
    }
    (score / BLEU_N as f64).exp() * exp_len_score
}

/// `compute_ngram_info`: information weight of every reference n-gram (orders up to 5).
fn ngram_info(refs: &[Vec<Vec<String>>]) -> HashMap<String, f64> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total_words = 0usize;
    for r in refs.iter().flatten() {
        total_words += r.len();
        for (gram, c) in ngram_counts(r, NIST_N) {
            *counts.entry(gram).or_insert(0) += c;
        }
    }
    let mut info = HashMap::with_capacity(counts.len());
    for (gram, &count) in &counts {
        let prefix = gram.rfind(' ').map_or("", |i| &gram[..i]);
        // Perl tests the prefix string for truth, so a prefix "0" falls back to the word total.
        let denom = if prefix.is_empty() || prefix == "0" {
            total_words as f64
        } else {
            counts[prefix] as f64
        };
        info.insert(gram.clone(), -(count as f64 / denom).ln() / 2f64.ln());
    }
    info
}

/// Corpus NIST-5 as mteval computes it, including its length penalty from the mean number of
/// non-empty references per segment.
pub fn nist(refs: &[Vec<Vec<String>>], outs: &[Vec<String>]) -> f64 {
    let info = ngram_info(refs);
    let mut tst_info = [0.0f64; NIST_N + 1];
    let mut tst_count = [0.0f64; NIST_N + 1];
    let mut ref_words = 0.0;
    let mut nonempty_refs = 0usize;
    for (seg_refs, out) in refs.iter().zip(outs) {
        let out_counts = ngram_counts(out, NIST_N);
        let ref_counts: Vec<_> = seg_refs.iter().map(|r| ngram_counts(r, NIST_N)).collect();
        for (gram, m) in clipped_matches(&out_counts, &ref_counts) {
            tst_info[order(gram)] += info[gram] * m as f64;
        }
        for (n, c) in order_counts(out.len(), NIST_N).into_iter().enumerate() {
            tst_count[n] += c;
        }
        ref_words += seg_refs.iter().map(|r| r.len() as f64).sum::<f64>();
        nonempty_refs += seg_refs.iter().filter(|r| !r.is_empty()).count();
    }
    let mut score = 0.0;
    for n in 1..=NIST_N {
        score += tst_info[n] / tst_count[n].max(1.0);
    }
    let refs_per_seg = nonempty_refs as f64 / outs.len().max(1) as f64;
    score * nist_length_penalty(tst_count[1] / (ref_words / refs_per_seg))
}

fn nist_length_penalty(ratio: f64) -> f64 {
    if ratio >= 1.0 {
        return 1.0;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return 0.0;
    }
    let beta = -(0.5f64).ln() / 1.5f64.ln() / 1.5f64.ln();
    (-beta * ratio.ln() * ratio.ln()).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn tokenizer_follows_mteval_rules() {
        assert_eq!(
            toks("It's family-friendly."),
            ["it's", "family-friendly", "."]
        );
        assert_eq!(
            toks("3.5 1,000 5. e.g."),
            ["3.5", "1,000", "5", ".", "e", ".", "g", "."]
        );
        assert_eq!(toks("20-25 £20"), ["20", "-", "25", "£20"]);
        assert_eq!(toks("Café (x)"), ["café", "(", "x", ")"]);
        assert_eq!(toks("ÉA"), ["Éa"]);
        assert_eq!(toks("a &amp; b"), ["a", "&", "b"]);
    }

    #[test]
    fn closest_reference_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(&[11, 8, 6, 7], 7), 7);
        assert_eq!(closest_ref_len(&[8, 6], 7), 6);
        assert_eq!(closest_ref_len(&[8, 0], 7), 8);
    }

    #[test]
    fn bleu_closed_form() {
        // out "a b c d e", ref "a b c d f g": matches 4,3,2,1 of 5,4,3,2; BP exp(1 - 6/5).
        let refs = vec![vec![toks("a b c d f g")]];
        let outs = vec![toks("a b c d e")];
        let expected = ((4.0f64 / 5.0 * 3.0 / 4.0 * 2.0 / 3.0 * 1.0 / 2.0).ln() / 4.0).exp()
            * (1.0f64 - 6.0 / 5.0).exp();
        assert!((bleu(&refs, &outs) - expected).abs() < 1e-15);
    }

    #[test]
    fn bleu_smooths_zero_matches() {
        // 2 unigram matches of 3, 1 bigram of 2, none of 1 trigram: 1/(2*1); no 4-grams: log 1.
        let refs = vec![vec![toks("a b x")]];
        let outs = vec![toks("a b c")];
        let expected = ((2.0f64 / 3.0 * 1.0 / 2.0 * 0.5).ln() / 4.0).exp();
        assert!((bleu(&refs, &outs) - expected).abs() < 1e-15);
    }

    #[test]
    fn nist_single_word_closed_form() {
        // One reference "a b", output "a": info(a) = log2(2/1) = 1; ratio 1/2.
        let refs = vec![vec![toks("a b")]];
        let outs = vec![toks("a")];
        let expected = 1.0 * nist_length_penalty(0.5);
        assert!((nist(&refs, &outs) - expected).abs() < 1e-15);
        assert!((nist_length_penalty(1.5f64.recip()) - 0.5).abs() < 1e-12);
    }
}
