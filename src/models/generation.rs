//! Decoding with [`GPT2LMHeadModel`]: greedy ([`GPT2LMHeadModel::generate`]) and beam search
//! ([`generate_beam`]), both following transformers 5.x's `generate` so that the same weights
//! pick the same tokens.
//!
//! Beam search copies `GenerationMixin._beam_search` rule for rule, because every rule changes
//! which tokens win:
//! - each step keeps the top `2 * num_beams` continuations over all beams of a prompt, ranked
//!   by summed log-probabilities (log-softmax, then the n-gram ban, then + the beam's score);
//! - a continuation that emits eos, or reaches `max_new_tokens`, is finished; only those ranked
//!   within the first `num_beams` may enter the finished pool, scored
//!   `sum_logprobs / generated_len ^ length_penalty`, where `generated_len` counts the new
//!   tokens only (eos included, prompt excluded): `cur_len + 1 - decoder_prompt_len` in
//!   transformers 5.24's `_update_finished_beams`;
//! - the best `num_beams` unfinished continuations run on;
//! - with `early_stopping = false` a prompt is done once every finished slot is filled and the
//!   best running score divided by the *current* generated length ^ `length_penalty` is no
//!   better than the worst finished score (`_check_early_stop_heuristic`); with `true`, once
//!   `num_beams` hypotheses are finished;
//! - "impossible" is transformers' −1e9 rather than −∞, so that ties and sums behave the same.
//!
//! Prompts of different lengths run together: left-padded, masked, with position ids counted
//! from each prompt's first token (transformers' `padding_side="left"`). The n-gram ban sees a
//! prompt's own tokens but never the padding (transformers would see pad ids when it batches
//! padded prompts; one prompt per call there is what this reproduces).

use std::cmp::Ordering;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::models::gpt2::{GPT2LMHeadModel, KvCache};

/// Greedy decoding settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Tokens to add at most.
    pub max_new_tokens: usize,
    /// A sequence that produced it is finished; `None` never stops early.
    pub eos_token_id: Option<usize>,
    /// Filler after a sequence finished; `None` uses `eos_token_id` (transformers' fallback).
    pub pad_token_id: Option<usize>,
    /// Reuse the keys and values of earlier positions instead of recomputing the prefix.
    pub use_cache: bool,
}

/// Fails when a prompt plus `max_new_tokens` would outgrow the position table (Burn's
/// embedding lookup would panic).
fn check_length(prompt_len: usize, max_new_tokens: usize, n_positions: usize) -> Result<()> {
    if prompt_len + max_new_tokens > n_positions {
        return Err(Error::config(
            "max_new_tokens",
            format!(
                "prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds n_positions = {n_positions}"
            ),
        ));
    }
    Ok(())
}

/// transformers' position ids under left padding: each token's index among its row's real
/// tokens; pads get 1 (they are masked, any valid id does).
fn positions_from_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    mask.clone()
        .cumsum(1)
        .sub_scalar(1)
        .mask_fill(mask.equal_elem(0), 1)
}

impl<B: Backend> GPT2LMHeadModel<B> {
    /// Greedy decoding: appends the arg-max token until `max_new_tokens` or until every
    /// sequence produced `eos_token_id`; finished sequences are filled with the pad id.
    ///
    /// `attention_mask` marks left padding in `input_ids`; positions are counted from each
    /// sequence's first token, as transformers' `generate` does. With `use_cache` each step
    /// feeds one token and the cached keys/values; without it each step recomputes the whole
    /// prefix. Both give the same tokens. Fails, before any work, on an empty prompt or when the
    /// result would outgrow the position table.
    pub fn generate(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerateConfig,
    ) -> Result<Tensor<B, 2, Int>> {
        let [batch, prompt_len] = input_ids.dims();
        let device = input_ids.device();
        let n_positions = self.transformer.wpe.weight.dims()[0];
        if batch == 0 || prompt_len == 0 {
            return Err(Error::Other(format!(
                "generate: empty prompt batch [{batch}, {prompt_len}]"
            )));
        }
        check_length(prompt_len, config.max_new_tokens, n_positions)?;
        if let Some(m) = &attention_mask {
            if m.dims() != [batch, prompt_len] {
                return Err(Error::Other(format!(
                    "generate: attention_mask {:?} does not match input_ids [{batch}, {prompt_len}]",
                    m.dims()
                )));
            }
        }
        let mut mask = attention_mask
            .unwrap_or_else(|| Tensor::<B, 2, Int>::ones([batch, prompt_len], &device));
        let mut ids = input_ids;
        let mut cache = config.use_cache.then(|| KvCache::new(self.n_layer()));
        let mut finished = vec![false; batch];
        let pad = config.pad_token_id.or(config.eos_token_id).unwrap_or(0) as i64;
        for _ in 0..config.max_new_tokens {
            let total = ids.dims()[1];
            let positions = positions_from_mask(mask.clone());
            let (step_ids, step_positions) = match &cache {
                Some(c) if !c.is_empty() => (
                    ids.clone().slice([0..batch, total - 1..total]),
                    positions.slice([0..batch, total - 1..total]),
                ),
                _ => (ids.clone(), positions),
            };
            let (_, last) = self.hidden(
                step_ids,
                Some(mask.clone()),
                Some(step_positions),
                cache.as_mut(),
            );
            let [_, steps, d] = last.dims();
            let logits = self.lm_head(last.slice([0..batch, steps - 1..steps, 0..d]));
            let next: Vec<i64> = logits
                .reshape([batch, self.transformer.wte.weight.dims()[0]])
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .into_vec()
                .map_err(|e| Error::Other(format!("generate: reading the arg-max: {e:?}")))?;
            let next: Vec<i64> = next
                .into_iter()
                .zip(finished.iter_mut())
                .map(|(token, done)| {
                    if *done {
                        return pad;
                    }
                    if config.eos_token_id.is_some_and(|e| e as i64 == token) {
                        *done = true;
                    }
                    token
                })
                .collect();
            let next = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [batch, 1]), &device);
            ids = Tensor::cat(vec![ids, next], 1);
            mask = Tensor::cat(vec![mask, Tensor::ones([batch, 1], &device)], 1);
            if finished.iter().all(|f| *f) {
                break;
            }
        }
        Ok(ids)
    }
}

/// Beam search settings, named as in transformers' `GenerationConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSearchConfig {
    /// Hypotheses kept per prompt.
    pub num_beams: usize,
    /// Exponent of the generated length that divides a finished hypothesis' summed
    /// log-probabilities: above 0 favours longer outputs (scores are negative), below 0 shorter.
    pub length_penalty: f64,
    /// An n-gram of this size may occur only once in prompt + generated tokens; 0 turns the rule
    /// off.
    pub no_repeat_ngram_size: usize,
    /// Tokens to add at most.
    pub max_new_tokens: usize,
    /// A hypothesis that emits it is finished (and keeps it as its last token).
    pub eos_token_id: Option<u32>,
    /// `true`: a prompt is done once `num_beams` hypotheses finished. `false` (transformers'
    /// default): once the best running beam, normalised by the current length, cannot beat the
    /// worst finished hypothesis.
    pub early_stopping: bool,
}

impl BeamSearchConfig {
    /// transformers' defaults for the rest: length_penalty 1, no n-gram ban, no eos,
    /// early_stopping false.
    pub fn new(num_beams: usize, max_new_tokens: usize) -> Self {
        Self {
            num_beams,
            length_penalty: 1.0,
            no_repeat_ngram_size: 0,
            max_new_tokens,
            eos_token_id: None,
            early_stopping: false,
        }
    }
}

/// transformers' stand-in for an impossible score: finite, so sums and ties stay comparable.
const NEG_LARGE: f32 = -1.0e9;

/// `sum_logprobs / generated_len ^ length_penalty`, in f32 as transformers divides a float32
/// tensor by a Python float (the power itself is computed in double).
pub(crate) fn length_normalised(
    sum_logprobs: f32,
    generated_len: usize,
    length_penalty: f64,
) -> f32 {
    sum_logprobs / (generated_len as f64).powf(length_penalty) as f32
}

/// Tokens that would repeat an n-gram of `seq` (transformers' `NoRepeatNGramLogitsProcessor`):
/// each n-gram of `seq` whose first n − 1 tokens equal the last n − 1 of `seq` bans its last
/// token. `seq` is the whole sequence, prompt included.
pub(crate) fn banned_tokens(seq: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || seq.len() < n {
        return Vec::new();
    }
    let prefix = &seq[seq.len() + 1 - n..];
    seq.windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
}

/// log-softmax of one row on the host (max-shifted as torch does; the sum in f64).
fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let log_sum = sum.ln() as f32;
    for x in row.iter_mut() {
        *x = *x - max - log_sum;
    }
}

/// Running beam `beam` extended by `token`, with its summed log-probability.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    beam: usize,
    token: u32,
}

/// Best first; ties go to the lower flat index (beam, token), a deterministic choice where
/// torch's `topk` leaves the order open.
fn by_score(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then((a.beam, a.token).cmp(&(b.beam, b.token)))
}

/// The `k` best continuations over all beams (`_get_top_k_continuations`), best first.
fn top_candidates(logp: &[Vec<f32>], scores: &[f32], k: usize) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = logp
        .iter()
        .zip(scores)
        .enumerate()
        .flat_map(|(beam, (row, &score))| {
            row.iter().enumerate().map(move |(token, &lp)| Candidate {
                score: lp + score,
                beam,
                token: token as u32,
            })
        })
        .collect();
    let k = k.min(all.len());
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, by_score);
        all.truncate(k);
    }
    all.sort_by(by_score);
    all
}

/// One slot of the finished pool; transformers starts all `num_beams` of them at −1e9,
/// unfinished, and these placeholders take part in its comparisons.
#[derive(Debug, Clone)]
struct Slot {
    score: f32,
    tokens: Vec<u32>,
    finished: bool,
}

/// The search state of one prompt.
#[derive(Debug, Clone)]
struct Beams {
    prompt: Vec<u32>,
    /// Generated tokens of each running beam.
    running: Vec<Vec<u32>>,
    /// Their summed log-probabilities, best first.
    scores: Vec<f32>,
    /// The finished pool, best first.
    slots: Vec<Slot>,
    /// No finished slot can change any more.
    done: bool,
}

impl Beams {
    fn new(prompt: Vec<u32>, num_beams: usize) -> Self {
        // All beams start as copies of the prompt; −1e9 on all but the first keeps their
        // identical continuations out of the first top-k (transformers' initialisation).
        let mut scores = vec![NEG_LARGE; num_beams];
        scores[0] = 0.0;
        let slot = Slot {
            score: NEG_LARGE,
            tokens: Vec::new(),
            finished: false,
        };
        Self {
            prompt,
            running: vec![Vec::new(); num_beams],
            scores,
            slots: vec![slot; num_beams],
            done: false,
        }
    }

    /// One step from the running beams' log-softmax rows; `generated_len` counts the new
    /// tokens including this step's. Returns the parent beam of each new running beam.
    fn step(
        &mut self,
        mut logp: Vec<Vec<f32>>,
        generated_len: usize,
        config: &BeamSearchConfig,
    ) -> Vec<usize> {
        for (row, generated) in logp.iter_mut().zip(&self.running) {
            let seq: Vec<u32> = self.prompt.iter().chain(generated).copied().collect();
            for token in banned_tokens(&seq, config.no_repeat_ngram_size) {
                row[token as usize] = f32::NEG_INFINITY;
            }
        }
        // 2 × num_beams (transformers: max(2, 1 + number of eos ids) × num_beams) so that
        // num_beams continuations are left even if each beam's best token is eos.
        let candidates = top_candidates(&logp, &self.scores, 2 * config.num_beams);
        let hits: Vec<bool> = candidates
            .iter()
            .map(|c| generated_len == config.max_new_tokens || config.eos_token_id == Some(c.token))
            .collect();
        self.update_finished(&candidates, &hits, generated_len, config);
        let parents = self.advance_running(&candidates, &hits, config.num_beams);
        self.check_done(generated_len, config);
        parents
    }

    /// `_update_finished_beams`: the candidates that just finished within the top `num_beams`
    /// compete with the pool on their length-normalised score; the rest get −1e9 added, as
    /// in transformers, and so lose to every real hypothesis.
    fn update_finished(
        &mut self,
        candidates: &[Candidate],
        hits: &[bool],
        generated_len: usize,
        config: &BeamSearchConfig,
    ) {
        let mut merged = std::mem::take(&mut self.slots);
        for (rank, (c, &hit)) in candidates.iter().zip(hits).enumerate() {
            let finished = hit && rank < config.num_beams;
            let mut score = length_normalised(c.score, generated_len, config.length_penalty);
            let mut tokens = Vec::new();
            if finished {
                tokens = self.running[c.beam].clone();
                tokens.push(c.token);
            } else {
                score += NEG_LARGE;
            }
            merged.push(Slot {
                score,
                tokens,
                finished,
            });
        }
        // Stable: on equal scores the older slot (earlier in transformers' concatenation) wins.
        merged.sort_by(|a, b| b.score.total_cmp(&a.score));
        merged.truncate(config.num_beams);
        self.slots = merged;
    }

    /// `_get_running_beams_for_next_iteration`: the best `num_beams` candidates, with −1e9 on
    /// those that just finished so that they are never extended.
    fn advance_running(
        &mut self,
        candidates: &[Candidate],
        hits: &[bool],
        num_beams: usize,
    ) -> Vec<usize> {
        let mut next: Vec<(f32, &Candidate)> = candidates
            .iter()
            .zip(hits)
            .map(|(c, &hit)| (if hit { c.score + NEG_LARGE } else { c.score }, c))
            .collect();
        next.sort_by(|a, b| b.0.total_cmp(&a.0));
        next.truncate(num_beams);
        let running = next
            .iter()
            .map(|(_, c)| {
                let mut tokens = self.running[c.beam].clone();
                tokens.push(c.token);
                tokens
            })
            .collect();
        self.running = running;
        self.scores = next.iter().map(|(s, _)| *s).collect();
        next.iter().map(|(_, c)| c.beam).collect()
    }

    /// `_check_early_stop_heuristic` (and `early_stopping = true`'s full pool). A slot still
    /// unfinished counts as −1e9, so the prompt stays open until the pool is full.
    fn check_done(&mut self, generated_len: usize, config: &BeamSearchConfig) {
        let best = length_normalised(self.scores[0], generated_len, config.length_penalty);
        let worst = self
            .slots
            .iter()
            .map(|s| s.score)
            .fold(f32::INFINITY, f32::min);
        let improvable = self
            .slots
            .iter()
            .any(|s| best > if s.finished { worst } else { NEG_LARGE });
        let full = self.slots.iter().all(|s| s.finished);
        self.done = !improvable || (config.early_stopping && full);
    }

    /// The best finished hypothesis (the running leader if none finished, which happens only
    /// when no step ran).
    fn best(self) -> Vec<u32> {
        match self.slots.into_iter().next() {
            Some(slot) if slot.finished => slot.tokens,
            _ => self.running.into_iter().next().unwrap_or_default(),
        }
    }
}

/// Rejects what would otherwise panic inside Burn or make no sense, before any work.
fn check_beam_request<B: Backend>(
    model: &GPT2LMHeadModel<B>,
    prompts: &[Vec<u32>],
    config: &BeamSearchConfig,
) -> Result<()> {
    if config.num_beams == 0 {
        return Err(Error::config("num_beams", "must be at least 1"));
    }
    if !config.length_penalty.is_finite() {
        return Err(Error::config(
            "length_penalty",
            format!("{} is not finite", config.length_penalty),
        ));
    }
    let [vocab, _] = model.transformer.wte.weight.dims();
    let n_positions = model.transformer.wpe.weight.dims()[0];
    for (i, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(Error::Other(format!("generate_beam: prompt {i} is empty")));
        }
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Other(format!(
                "generate_beam: prompt {i} holds token id {id}, outside the vocabulary of {vocab}"
            )));
        }
        check_length(prompt.len(), config.max_new_tokens, n_positions)?;
    }
    Ok(())
}

/// Log-softmax rows of the last position's logits: [rows][vocab] on the host.
fn last_log_probs<B: Backend>(
    model: &GPT2LMHeadModel<B>,
    last: Tensor<B, 3>,
) -> Result<Vec<Vec<f32>>> {
    let [rows, steps, d] = last.dims();
    let logits = model.lm_head(last.slice([0..rows, steps - 1..steps, 0..d]));
    let vocab = logits.dims()[2];
    let values: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| Error::Other(format!("generate_beam: reading the logits: {e:?}")))?;
    Ok(values
        .chunks(vocab)
        .map(|row| {
            let mut row = row.to_vec();
            log_softmax(&mut row);
            row
        })
        .collect())
}

/// Runs the left-padded prompts (one row each) through the model, filling `cache`.
fn prefill<B: Backend>(
    model: &GPT2LMHeadModel<B>,
    prompts: &[Vec<u32>],
    width: usize,
    cache: &mut KvCache<B>,
) -> Result<Vec<Vec<f32>>> {
    let device = model.transformer.wte.weight.device();
    let rows = prompts.len();
    let (mut ids, mut mask) = (
        Vec::with_capacity(rows * width),
        Vec::with_capacity(rows * width),
    );
    for prompt in prompts {
        let pad = width - prompt.len();
        // The pad id is never seen: its keys are masked and its outputs are dropped.
        ids.extend(std::iter::repeat_n(0, pad).chain(prompt.iter().map(|&t| t as i64)));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, prompt.len())));
    }
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, width]), &device);
    let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [rows, width]), &device);
    let positions = positions_from_mask(mask.clone());
    let (_, last) = model.hidden(ids, Some(mask), Some(positions), Some(cache));
    last_log_probs(model, last)
}

/// Feeds the last token of every running beam of the `active` prompts (in cache-row order) and
/// returns their log-probability rows. `generated_len` counts the tokens generated so far.
fn decode_step<B: Backend>(
    model: &GPT2LMHeadModel<B>,
    beams: &[Beams],
    active: &[usize],
    width: usize,
    generated_len: usize,
    cache: &mut KvCache<B>,
) -> Result<Vec<Vec<f32>>> {
    let device = model.transformer.wte.weight.device();
    let total = width + generated_len;
    let (mut ids, mut positions, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for b in active.iter().map(|&p| &beams[p]) {
        let pad = width - b.prompt.len();
        for tokens in &b.running {
            ids.push(*tokens.last().expect("a step ran") as i64);
            positions.push((b.prompt.len() + generated_len - 1) as i64);
            mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, total - pad)));
        }
    }
    let rows = ids.len();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &device);
    let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [rows, 1]), &device);
    let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [rows, total]), &device);
    let (_, last) = model.hidden(ids, Some(mask), Some(positions), Some(cache));
    last_log_probs(model, last)
}

/// Beam search as transformers' `generate(num_beams, length_penalty, no_repeat_ngram_size,
/// early_stopping, max_new_tokens, do_sample=False)` (see the module notes for the rules).
///
/// All prompts run in one batch of `prompts.len() × num_beams` rows through the KV cache, which
/// is reordered (and stripped of finished prompts) with [`KvCache::select_rows`] after each
/// step. Returns, per prompt, the generated tokens of the best finished hypothesis, without the
/// prompt and ending with eos when it finished on one. Fails, before any work, on an empty
/// prompt, an id outside the vocabulary, `num_beams` 0, or a prompt that would outgrow the
/// position table.
pub fn generate_beam<B: Backend>(
    model: &GPT2LMHeadModel<B>,
    prompts: &[Vec<u32>],
    config: &BeamSearchConfig,
) -> Result<Vec<Vec<u32>>> {
    check_beam_request(model, prompts, config)?;
    if prompts.is_empty() || config.max_new_tokens == 0 {
        return Ok(vec![Vec::new(); prompts.len()]);
    }
    let num_beams = config.num_beams;
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut beams: Vec<Beams> = prompts
        .iter()
        .map(|p| Beams::new(p.clone(), num_beams))
        .collect();
    let mut cache = KvCache::new(model.n_layer());
    // The prefill has one row per prompt: its beams are still identical copies.
    let mut logp = prefill(model, prompts, width, &mut cache)?;
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for generated_len in 1..=config.max_new_tokens {
        let rows_per_prompt = if generated_len == 1 { 1 } else { num_beams };
        let row = |slot: usize, beam: usize| slot * rows_per_prompt + beam.min(rows_per_prompt - 1);
        let (mut keep, mut still_active) = (Vec::new(), Vec::new());
        for (slot, &p) in active.iter().enumerate() {
            let rows = (0..num_beams).map(|b| logp[row(slot, b)].clone()).collect();
            let parents = beams[p].step(rows, generated_len, config);
            if !beams[p].done {
                still_active.push(p);
                keep.extend(parents.into_iter().map(|b| row(slot, b) as i64));
            }
        }
        if generated_len == config.max_new_tokens || still_active.is_empty() {
            break;
        }
        let device = model.transformer.wte.weight.device();
        let n = keep.len();
        cache.select_rows(Tensor::from_data(TensorData::new(keep, [n]), &device));
        active = still_active;
        logp = decode_step(model, &beams, &active, width, generated_len, &mut cache)?;
    }
    Ok(beams.into_iter().map(Beams::best).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::fixtures::Fixture;
    use crate::models::gpt2::GPT2Config;
    use std::collections::HashMap;

    type Nd = crate::backend::Cpu;

    /// transformers' older dictionary form of the ban (`_get_ngrams` + `_get_generated_ngrams`),
    /// the reference for the window form above.
    fn banned_by_dictionary(seq: &[u32], n: usize) -> Vec<u32> {
        if seq.len() < n {
            return Vec::new();
        }
        let mut seen: HashMap<&[u32], Vec<u32>> = HashMap::new();
        for w in seq.windows(n) {
            seen.entry(&w[..n - 1]).or_default().push(w[n - 1]);
        }
        seen.get(&seq[seq.len() + 1 - n..])
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn no_repeat_ngram_bans_tokens_that_complete_a_seen_ngram() {
        // the prompt's own n-grams count: [7 8 9] was in the prompt, so 9 cannot follow 7 8
        assert_eq!(banned_tokens(&[7, 8, 9, 1, 7, 8], 3), vec![9]);
        // every occurrence bans its successor; the suffix itself bans nothing (no successor yet)
        assert_eq!(banned_tokens(&[5, 1, 5, 2, 5], 2), vec![1, 2]);
        assert_eq!(banned_tokens(&[4, 4, 4], 2), vec![4, 4]);
        // size 1 bans every token seen; shorter sequences and size 0 ban nothing
        assert_eq!(banned_tokens(&[3, 1, 3], 1), vec![3, 1, 3]);
        assert!(banned_tokens(&[1, 2, 3], 4).is_empty());
        assert!(banned_tokens(&[1, 1, 1, 1], 0).is_empty());
        // agrees with the dictionary form on pseudo-random sequences over a small alphabet
        let mut state = 12345u64;
        for len in 0..40 {
            let seq: Vec<u32> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 3) as u32
                })
                .collect();
            for n in 1..5 {
                let mut got = banned_tokens(&seq, n);
                let mut want = banned_by_dictionary(&seq, n);
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "{seq:?} n={n}");
            }
        }
    }

    #[test]
    fn length_penalty_divides_by_the_generated_length_only() {
        let close = |a: f32, b: f64| assert!((a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        close(length_normalised(-6.0, 3, 0.9), -6.0 / 3f64.powf(0.9));
        close(length_normalised(-6.0, 3, 0.0), -6.0);
        close(length_normalised(-6.0, 4, 2.0), -6.0 / 16.0);
        close(length_normalised(-6.0, 4, -1.0), -24.0);
    }

    /// Hand-made log-probs over tokens {0, 1, eos = 2}: after the prompt, eos costs 1.0 and
    /// token 0 costs 0.5; after token 0, eos costs 0.7. So "eos" sums to −1.0 over 1 token and
    /// "0 eos" to −1.2 over 2: the penalty decides which is best.
    fn hand_made_search(length_penalty: f64) -> Vec<u32> {
        let config = BeamSearchConfig {
            length_penalty,
            eos_token_id: Some(2),
            ..BeamSearchConfig::new(2, 3)
        };
        let rows = |generated: &[u32]| -> Vec<f32> {
            match generated {
                [] => vec![-0.5, -2.0, -1.0],
                [0] => vec![-3.0, -3.0, -0.7],
                _ => vec![-4.0, -4.0, -4.0],
            }
        };
        let mut beams = Beams::new(vec![9], 2);
        for generated_len in 1..=config.max_new_tokens {
            let logp = beams.running.iter().map(|g| rows(g)).collect();
            beams.step(logp, generated_len, &config);
            if beams.done {
                break;
            }
        }
        beams.best()
    }

    #[test]
    fn length_penalty_ranks_finished_hypotheses() {
        // −1.0/1 vs −1.2/2^p: the shorter wins without a penalty, the longer with p = 1 or 2
        assert_eq!(hand_made_search(0.0), vec![2]);
        assert_eq!(hand_made_search(1.0), vec![0, 2]);
        assert_eq!(hand_made_search(2.0), vec![0, 2]);
    }

    fn tiny_model() -> GPT2LMHeadModel<Nd> {
        let config = GPT2Config::from_json(
            r#"{"model_type": "gpt2", "vocab_size": 30, "n_positions": 16, "n_embd": 8,
                "n_layer": 1, "n_head": 2}"#,
        )
        .unwrap();
        GPT2LMHeadModel::new(&config, &Default::default())
    }

    #[test]
    fn bad_beam_requests_are_errors() {
        let model = tiny_model();
        let config = BeamSearchConfig::new(3, 4);
        let err = |prompts: &[Vec<u32>], config: &BeamSearchConfig| {
            generate_beam(&model, prompts, config)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[vec![1, 2], vec![]], &config).contains("prompt 1 is empty"));
        assert!(err(&[vec![1, 30]], &config).contains("outside the vocabulary"));
        assert!(err(&[vec![1; 13]], &config).contains("n_positions"));
        assert!(err(&[vec![1]], &BeamSearchConfig::new(0, 4)).contains("num_beams"));
        // the longest prompt that fits, and no prompts at all, are fine
        assert_eq!(
            generate_beam(&model, &[vec![1; 12]], &config).unwrap()[0].len(),
            4
        );
        assert!(generate_beam(&model, &[], &config).unwrap().is_empty());
    }

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        num_beams: usize,
        length_penalty: f64,
        no_repeat_ngram_size: usize,
        max_new_tokens: usize,
        eos_token_id: u32,
        early_stopping: bool,
        prompts: Vec<usize>,
    }

    fn ids(fixture: &Fixture, key: &str) -> Vec<u32> {
        fixture.i64(key).0.into_iter().map(|t| t as u32).collect()
    }

    #[test]
    fn beam_search_matches_transformers() {
        let Some(fixture) = Fixture::load("beam") else {
            return;
        };
        let gpt2 = fixture.dir.with_file_name("gpt2");
        let (model, _) =
            GPT2LMHeadModel::<Nd>::from_pretrained(&gpt2, &Default::default()).unwrap();
        let json = std::fs::read_to_string(fixture.dir.join("cases.json")).unwrap();
        let cases: Vec<Case> = serde_json::from_value(
            serde_json::from_str::<serde_json::Value>(&json).unwrap()["cases"].clone(),
        )
        .unwrap();
        assert_eq!(cases.len(), 3);
        for case in &cases {
            let config = BeamSearchConfig {
                num_beams: case.num_beams,
                length_penalty: case.length_penalty,
                no_repeat_ngram_size: case.no_repeat_ngram_size,
                max_new_tokens: case.max_new_tokens,
                eos_token_id: Some(case.eos_token_id),
                early_stopping: case.early_stopping,
            };
            let prompts: Vec<Vec<u32>> = case
                .prompts
                .iter()
                .map(|i| ids(&fixture, &format!("prompt.{i}")))
                .collect();
            let expected: Vec<Vec<u32>> = case
                .prompts
                .iter()
                .map(|i| ids(&fixture, &format!("{}.output.{i}", case.name)))
                .collect();
            // all prompts in one left-padded batch, then each alone
            let batched = generate_beam(&model, &prompts, &config).unwrap();
            assert_eq!(batched, expected, "{} (batched)", case.name);
            for (prompt, want) in prompts.iter().zip(&expected) {
                let alone = generate_beam(&model, std::slice::from_ref(prompt), &config).unwrap();
                assert_eq!(&alone[0], want, "{} prompt {prompt:?}", case.name);
            }
        }
    }

    #[test]
    fn one_beam_without_eos_is_greedy() {
        let Some(fixture) = Fixture::load("gpt2") else {
            return;
        };
        let device = Default::default();
        let (model, _) = GPT2LMHeadModel::<Nd>::from_pretrained(&fixture.dir, &device).unwrap();
        let prompt = ids(&fixture, "generate_input_ids");
        let greedy = ids(&fixture, "generate_output_ids")[prompt.len()..].to_vec();
        let config = BeamSearchConfig::new(1, greedy.len());
        assert_eq!(
            generate_beam(&model, &[prompt], &config).unwrap(),
            vec![greedy]
        );
    }
}
