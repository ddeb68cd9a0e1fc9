//! METEOR 1.5 (`-l en -norm`) with the exact and stem modules: Meteor's own English
//! normaliser, its beam-search aligner (beam 40, same tie-breaking, same quirks), and its
//! scoring with the English "rank" parameters. The synonym (WordNet) and paraphrase modules are
//! not implemented, so scores are slightly below the official ones (see the golden test).

use std::sync::OnceLock;

use regex::Regex;
use rust_stemmers::{Algorithm, Stemmer};

const ALPHA: f64 = 0.85;
const BETA: f64 = 0.2;
const GAMMA: f64 = 0.6;
const DELTA: f64 = 0.75;
/// Scoring weights of the exact and stem modules (English rank task: 1.0 0.6 0.8 0.6).
const MODULE_WEIGHTS: [f64; 2] = [1.0, 0.6];
/// Weights the aligner uses to rank partial alignments (Meteor's `setWeights`).
const ALIGN_WEIGHTS: [f64; 2] = [1.0, 0.5];
const BEAM_SIZE: usize = 40;

/// Meteor's `resources/function/english.words`.
const FUNCTION_WORDS: [&str; 93] = [
    "the", ",", ".", "to", "of", "and", "a", "in", "that", "for", "\"", "is", "on", "'s", "it",
    "with", "was", "as", "said", "at", "he", "by", "be", "from", "have", "has", "are", "his",
    "but", "an", "this", "not", "i", "will", "\u{2019}", "they", ")", "-rrb-", "(", "-lrb-", "who",
    "their", "had", "we", "which", "were", "been", "more", "or", "s", "its", "would", "about",
    "new", "one", "after", "you", ":", "also", "up", "when", "there", "than", "$", "all", "out",
    "her", "people", "she", "year", "two", "-", "can", "if", "last", "first", "\u{201C}", "over",
    "other", "\u{201D}", "into", "some", "what", "so", "--", "no", "time", "years", "could", "?",
    "'t", "\u{2014}", "'",
];

/// Meteor's `resources/nonbreaking/english.prefixes`; `true` marks `#NUMERIC_ONLY#`.
const NONBREAKING: [(&str, bool); 93] = [
    ("A", false),
    ("B", false),
    ("C", false),
    ("D", false),
    ("E", false),
    ("F", false),
    ("G", false),
    ("H", false),
    ("I", false),
    ("J", false),
    ("K", false),
    ("L", false),
    ("M", false),
    ("N", false),
    ("O", false),
    ("P", false),
    ("Q", false),
    ("R", false),
    ("S", false),
    ("T", false),
    ("U", false),
    ("V", false),
    ("W", false),
    ("X", false),
    ("Y", false),
    ("Z", false),
    ("Adj", false),
    ("Adm", false),
    ("Adv", false),
    ("Asst", false),
    ("Bart", false),
    ("Bldg", false),
    ("Brig", false),
    ("Bros", false),
    ("Capt", false),
    ("Cmdr", false),
    ("Col", false),
    ("Comdr", false),
    ("Con", false),
    ("Corp", false),
    ("Cpl", false),
    ("DR", false),
    ("Dr", false),
    ("Drs", false),
    ("Ens", false),
    ("Gen", false),
    ("Gov", false),
    ("Hon", false),
    ("Hr", false),
    ("Hosp", false),
    ("Insp", false),
    ("Lt", false),
    ("MM", false),
    ("MR", false),
    ("MRS", false),
    ("MS", false),
    ("Maj", false),
    ("Messrs", false),
    ("Mlle", false),
    ("Mme", false),
    ("Mr", false),
    ("Mrs", false),
    ("Ms", false),
    ("Msgr", false),
    ("Op", false),
    ("Ord", false),
    ("Pfc", false),
    ("Ph", false),
    ("Prof", false),
    ("Pvt", false),
    ("Rep", false),
    ("Reps", false),
    ("Res", false),
    ("Rev", false),
    ("Rt", false),
    ("Sen", false),
    ("Sens", false),
    ("Sfc", false),
    ("Sgt", false),
    ("Sr", false),
    ("St", false),
    ("Supt", false),
    ("Surg", false),
    ("v", false),
    ("vs", false),
    ("i.e", false),
    ("rev", false),
    ("e.g", false),
    ("No", true),
    ("Nos", false),
    ("Art", true),
    ("Nr", false),
    ("pp", true),
];

/// Meteor's `alpha` character ranges (Latin-1 letters, Cyrillic, ...), as a class body.
const ALPHA_CLASS: &str = "A-Za-zŠŽšžŸÀ-ÖØ-öø-žЀ-ӿԀ-ԧꙀ-ꙮ꙾-ꚗᴀ-ᵿ";

struct NormRegexes {
    sep_other: Regex,
    multi_dot: Regex,
    multi_dot2: Regex,
    commas: [Regex; 3],
    quote: Regex,
    quote2: Regex,
    rm_dash: Regex,
    cont: [Regex; 3],
    cont4: Regex,
    cont5: Regex,
    nbp1: Regex,
    white: Regex,
}

fn norm_regexes() -> &'static NormRegexes {
    static RE: OnceLock<NormRegexes> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("valid regex");
        let a = ALPHA_CLASS;
        let an = format!("0-9{a}");
        NormRegexes {
            sep_other: re(&format!(r"([^{an}\t\n\x0B\x0C\r .'`,\-‘’])")),
            multi_dot: re(r"\.(\.+)"),
            multi_dot2: re(r"DOTMULTI\.([^.])"),
            commas: [
                re(r"([^0-9]),([^0-9])"),
                re(r"([0-9]),([^0-9])"),
                re(r"([^0-9]),([0-9])"),
            ],
            quote: re(r"([`‘’])"),
            quote2: re(r"([“”]|'')"),
            rm_dash: re(&format!(r"([{an}.])-([{an}])")),
            cont: [
                re(&format!(r"([^{a}])'([^{a}])")),
                re(&format!(r"([^{a}0-9])'([{a}])")),
                re(&format!(r"([{a}])'([^{a}])")),
            ],
            cont4: re(&format!(r"([{a}])'([{a}])")),
            cont5: re(r"([0-9])'(s)"),
            nbp1: re(&format!("[{a}]")),
            white: re("[\u{0020}\u{00A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}\t\n\r\x0B\x0C]+"),
        }
    })
}

/// Meteor's `Normalizer.normalizeLine` for English keeping punctuation, then lower-casing.
pub fn normalize(line: &str) -> String {
    let re = norm_regexes();
    let mut s = format!(" {line} ");
    s = re.sep_other.replace_all(&s, " $1 ").into_owned();
    s = re.multi_dot.replace_all(&s, " DOTMULTI$1").into_owned();
    while s.contains("DOTMULTI.") {
        s = re.multi_dot2.replace_all(&s, "DOTDOTMULTI $1").into_owned();
        s = s.replace("DOTMULTI.", "DOTDOTMULTI");
    }
    for r in &re.commas {
        s = r.replace_all(&s, "$1 , $2").into_owned();
    }
    s = re.quote.replace_all(&s, "'").into_owned();
    s = re.quote2.replace_all(&s, " \" ").into_owned();
    s = s.replace('–', "-").replace("--", "-");
    s = re.rm_dash.replace_all(&s, "$1 $2").into_owned();
    for r in &re.cont {
        s = r.replace_all(&s, "$1 ' $2").into_owned();
    }
    s = re.cont4.replace_all(&s, "$1 '$2").into_owned();
    s = re.cont5.replace_all(&s, "$1 '$2").into_owned();
    s = split_nonbreaking(&s, re);
    while s.contains("DOTDOTMULTI") {
        s = s.replace("DOTDOTMULTI", "DOTMULTI.");
    }
    s = s.replace("DOTMULTI", ".");
    re.white.replace_all(&s, " ").trim().to_lowercase()
}

/// Java's `StringTokenizer` default delimiters.
fn java_tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t', '\n', '\r', '\x0C'])
        .filter(|t| !t.is_empty())
}

/// Splits a final period off words unless it belongs to a non-breaking prefix.
fn split_nonbreaking(s: &str, re: &NormRegexes) -> String {
    let words: Vec<&str> = java_tokens(s).collect();
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1);
        match w.strip_suffix('.') {
            Some(pre) if w.chars().count() > 1 => {
                let kind = NONBREAKING.iter().find(|(p, _)| *p == pre).map(|&(_, n)| n);
                let next_starts = |f: fn(&char) -> bool| {
                    next.is_some_and(|n| n.chars().next().as_ref().is_some_and(f))
                };
                // Java's `\p{Lower}` is ASCII-only.
                let keep = kind == Some(false)
                    || next_starts(char::is_ascii_lowercase)
                    || (kind == Some(true) && next_starts(char::is_ascii_digit));
                if pre.contains('.') && re.nbp1.is_match(pre) {
                    out.push_str(&w.replace('.', ""));
                } else if keep {
                    out.push_str(w);
                } else {
                    out.push_str(pre);
                    out.push_str(" .");
                }
            }
            _ => out.push_str(w),
        }
        out.push(' ');
    }
    out
}

/// A one-word match: `start` in the reference (line 2), `match_start` in the hypothesis.
#[derive(Clone, Copy, Debug)]
struct Match {
    start: usize,
    match_start: usize,
    module: usize,
}

#[derive(Clone)]
struct Partial {
    matches: Vec<Option<Match>>,
    score1: i32,
    score2: i32,
    chunks: i32,
    idx: usize,
    last_match_end: Option<usize>,
    distance: i32,
    used1: Vec<bool>,
    used2: Vec<bool>,
}

impl Partial {
    fn is_used(&self, m: &Match) -> bool {
        self.used2[m.start] || self.used1[m.match_start]
    }

    /// Adds a match's weighted counts the way Java's `int += double` does: truncating.
    fn add_match(&mut self, m: &Match) {
        let w = ALIGN_WEIGHTS[m.module];
        self.score1 = (f64::from(self.score1) + w) as i32;
        self.score2 = (f64::from(self.score2) + w) as i32;
        if self.last_match_end.is_some_and(|e| e != m.match_start) {
            self.chunks += 1;
        }
        self.idx = m.start + 1;
        self.last_match_end = Some(m.match_start + 1);
    }
}

/// `PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks, then less distance.
fn compare(x: &Partial, y: &Partial) -> std::cmp::Ordering {
    (y.score1 + y.score2)
        .cmp(&(x.score1 + x.score2))
        .then(x.chunks.cmp(&y.chunks))
        .then(x.distance.cmp(&y.distance))
}

/// Candidate matches per reference position, exact before stem, hypothesis order within each.
fn candidate_matches(hyp: &[String], reference: &[String], stemmer: &Stemmer) -> Vec<Vec<Match>> {
    let mut cands = vec![Vec::new(); reference.len()];
    let identical = hyp == reference;
    for (j, r) in reference.iter().enumerate() {
        for (i, h) in hyp.iter().enumerate() {
            if h == r {
                cands[j].push(Match {
                    start: j,
                    match_start: i,
                    module: 0,
                });
            }
        }
    }
    if !identical {
        let hs: Vec<String> = hyp.iter().map(|w| stemmer.stem(w).into_owned()).collect();
        let rs: Vec<String> = reference
            .iter()
            .map(|w| stemmer.stem(w).into_owned())
            .collect();
        for (j, r) in reference.iter().enumerate() {
            for (i, h) in hyp.iter().enumerate() {
                if hs[i] == rs[j] && h != r {
                    cands[j].push(Match {
                        start: j,
                        match_start: i,
                        module: 1,
                    });
                }
            }
        }
    }
    cands
}

/// Fixes every match that is the only candidate for both of its words.
fn initial_path(cands: &[Vec<Match>], n_hyp: usize) -> Partial {
    let mut cov1 = vec![0usize; n_hyp];
    let mut cov2 = vec![0usize; cands.len()];
    for m in cands.iter().flatten() {
        cov1[m.match_start] += 1;
        cov2[m.start] += 1;
    }
    let mut p = Partial {
        matches: vec![None; cands.len()],
        score1: 0,
        score2: 0,
        chunks: 0,
        idx: 0,
        last_match_end: None,
        distance: 0,
        used1: vec![false; n_hyp],
        used2: vec![false; cands.len()],
    };
    for (j, c) in cands.iter().enumerate() {
        if let [m] = c.as_slice() {
            if cov2[j] == 1 && cov1[m.match_start] == 1 {
                p.matches[j] = Some(*m);
                p.used2[j] = true;
                p.used1[m.match_start] = true;
            }
        }
    }
    p
}

/// Meteor's `Aligner.resolve`: a beam search over reference positions. Kept quirk: the
/// distance of a newly taken match is added to the path that skips it, not to the new path.
fn resolve(cands: &[Vec<Match>], start: Partial) -> Partial {
    let mut next = vec![start];
    for current in 0..=cands.len() {
        let mut paths = std::mem::take(&mut next);
        paths.sort_by(compare);
        for mut path in paths.into_iter().take(BEAM_SIZE) {
            if current == cands.len() {
                if path.last_match_end.is_some() {
                    path.chunks += 1;
                }
                next.push(path);
                continue;
            }
            if path.used2[current] {
                if current < path.idx {
                    next.push(path);
                } else if let Some(m) = path.matches[path.idx] {
                    path.add_match(&m);
                    path.distance += m.start.abs_diff(m.match_start) as i32;
                    next.push(path);
                }
                continue;
            }
            for m in &cands[current] {
                if path.is_used(m) {
                    continue;
                }
                let mut np = path.clone();
                np.used2[m.start] = true;
                np.used1[m.match_start] = true;
                np.matches[current] = Some(*m);
                np.add_match(m);
                path.distance += m.start.abs_diff(m.match_start) as i32;
                next.push(np);
            }
            if path.last_match_end.take().is_some() {
                path.chunks += 1;
            }
            path.idx += 1;
            next.push(path);
        }
    }
    next.sort_by(compare);
    next.swap_remove(0)
}

/// Sufficient statistics of one hypothesis–reference pair (Meteor's `MeteorStats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub test_len: f64,
    pub ref_len: f64,
    pub test_fn: f64,
    pub ref_fn: f64,
    /// Per module: [test content, ref content, test function, ref function] matches.
    pub stage: [[f64; 4]; 2],
    pub chunks: f64,
    pub test_word_matches: f64,
    pub ref_word_matches: f64,
}

impl Stats {
    fn total_matches(&self) -> (f64, f64) {
        let t = self.stage.iter().map(|s| s[0] + s[2]).sum();
        let r = self.stage.iter().map(|s| s[1] + s[3]).sum();
        (t, r)
    }

    /// A perfect one-chunk alignment, whose chunk count Meteor leaves out of aggregates.
    fn is_perfect(&self) -> bool {
        let (t, r) = self.total_matches();
        t == self.test_len && r == self.ref_len && self.chunks == 1.0
    }

    /// `MeteorStats.addStats`.
    pub fn add(&mut self, o: &Stats) {
        self.test_len += o.test_len;
        self.ref_len += o.ref_len;
        self.test_fn += o.test_fn;
        self.ref_fn += o.ref_fn;
        for (a, b) in self.stage.iter_mut().zip(&o.stage) {
            for k in 0..4 {
                a[k] += b[k];
            }
        }
        if !o.is_perfect() {
            self.chunks += o.chunks;
        }
        self.test_word_matches += o.test_word_matches;
        self.ref_word_matches += o.ref_word_matches;
    }

    /// `MeteorScorer.computeMetrics`.
    pub fn score(&self) -> f64 {
        let mut test_w = 0.0;
        let mut ref_w = 0.0;
        let test_len_w = DELTA * (self.test_len - self.test_fn) + (1.0 - DELTA) * self.test_fn;
        let ref_len_w = DELTA * (self.ref_len - self.ref_fn) + (1.0 - DELTA) * self.ref_fn;
        for (s, w) in self.stage.iter().zip(MODULE_WEIGHTS) {
            test_w += s[0] * w * DELTA;
        }
        for (s, w) in self.stage.iter().zip(MODULE_WEIGHTS) {
            ref_w += s[1] * w * DELTA;
        }
        for (s, w) in self.stage.iter().zip(MODULE_WEIGHTS) {
            test_w += s[2] * w * (1.0 - DELTA);
        }
        for (s, w) in self.stage.iter().zip(MODULE_WEIGHTS) {
            ref_w += s[3] * w * (1.0 - DELTA);
        }
        let precision = test_w / test_len_w;
        let recall = ref_w / ref_len_w;
        let f_mean = 1.0 / (((1.0 - ALPHA) / precision) + (ALPHA / recall));
        let frag = if self.is_perfect() {
            0.0
        } else {
            self.chunks / ((self.test_word_matches + self.ref_word_matches) / 2.0)
        };
        let score = f_mean * (1.0 - GAMMA * frag.powf(BETA));
        if score.is_nan() {
            0.0
        } else {
            score.max(0.0)
        }
    }
}

fn stemmer() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// Statistics of one normalised hypothesis against one normalised reference.
fn pair_stats(hyp: &[String], reference: &[String]) -> Stats {
    let cands = candidate_matches(hyp, reference, stemmer());
    let best = resolve(&cands, initial_path(&cands, hyp.len()));
    let is_fn1: Vec<bool> = hyp
        .iter()
        .map(|w| FUNCTION_WORDS.contains(&w.to_lowercase().as_str()))
        .collect();
    let is_fn2: Vec<bool> = reference
        .iter()
        .map(|w| FUNCTION_WORDS.contains(&w.to_lowercase().as_str()))
        .collect();
    let mut st = Stats {
        test_len: hyp.len() as f64,
        ref_len: reference.len() as f64,
        test_fn: is_fn1.iter().filter(|&&f| f).count() as f64,
        ref_fn: is_fn2.iter().filter(|&&f| f).count() as f64,
        ..Stats::default()
    };
    for m in best.matches.iter().flatten() {
        let s = &mut st.stage[m.module];
        s[if is_fn1[m.match_start] { 2 } else { 0 }] += 1.0;
        s[if is_fn2[m.start] { 3 } else { 1 }] += 1.0;
    }
    st.chunks = count_chunks(&best.matches) as f64;
    let (t, r) = st.total_matches();
    st.test_word_matches = t;
    st.ref_word_matches = r;
    st
}

/// `getCountAndChunks`: a chunk breaks wherever consecutive reference matches are not
/// consecutive in the hypothesis.
fn count_chunks(matches: &[Option<Match>]) -> usize {
    let mut chunks = 0;
    let mut last_end: Option<usize> = None;
    for m in matches {
        match m {
            None => {
                if last_end.take().is_some() {
                    chunks += 1;
                }
            }
            Some(m) => {
                if last_end.is_some_and(|e| e != m.match_start) {
                    chunks += 1;
                }
                last_end = Some(m.match_start + 1);
            }
        }
    }
    chunks + usize::from(last_end.is_some())
}

/// Statistics of a PTB-tokenised hypothesis against its best-scoring reference (first on ties).
pub fn segment_stats(hyp: &str, refs: &[String]) -> Stats {
    let hyp = normalize(hyp);
    let hyp: Vec<String> = java_tokens(&hyp).map(str::to_string).collect();
    let mut best: Option<(f64, Stats)> = None;
    for r in refs {
        let r = normalize(r);
        let r: Vec<String> = java_tokens(&r).map(str::to_string).collect();
        let st = pair_stats(&hyp, &r);
        let sc = st.score();
        if best.as_ref().is_none_or(|(b, _)| sc > *b) {
            best = Some((sc, st));
        }
    }
    best.map(|(_, s)| s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn normaliser_splits_like_meteor() {
        assert_eq!(normalize("it 's family-friendly"), "it ' s family friendly");
        assert_eq!(normalize("is n't # 20"), "is n 't # 20");
        assert_eq!(normalize("1,000 a,b e.g. x"), "1,000 a , b eg x");
        assert_eq!(normalize("end."), "end .");
    }

    #[test]
    fn perfect_match_scores_fmean() {
        let st = pair_stats(&words("the cat sat"), &words("the cat sat"));
        assert_eq!(st.chunks, 1.0);
        assert!(st.is_perfect());
        assert!((st.score() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stem_match_and_chunks_closed_form() {
        // "cats sat" vs "sat cat": one stem match (cats~cat), one exact (sat), two chunks.
        let st = pair_stats(&words("cats sat"), &words("sat cat"));
        assert_eq!(st.stage[0][0], 1.0);
        assert_eq!(st.stage[1][0], 1.0);
        assert_eq!(st.chunks, 2.0);
        let p = (DELTA * 1.0 + DELTA * 0.6) / (DELTA * 2.0);
        let f = 1.0 / ((1.0 - ALPHA) / p + ALPHA / p);
        let expected = f * (1.0 - GAMMA * (2.0f64 / 2.0).powf(BETA));
        assert!((st.score() - expected).abs() < 1e-12);
    }

    #[test]
    fn empty_hypothesis_scores_zero_but_counts_reference() {
        let st = segment_stats("", &["a b".to_string()]);
        assert_eq!(st.score(), 0.0);
        assert_eq!(st.ref_len, 2.0);
    }
}
