//! What burn-train shows and records during a run: the loss, the task's own metrics over the
//! whole dev set, the learning rate and ‖BᵀB − I‖_F; `metrics.jsonl` written as it goes; and a
//! plain line renderer for runs without a terminal (CI, logs).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{
    Metric, MetricAttributes, MetricDefinition, MetricId, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::Interrupter;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::train::task::{Outcome, Task};

fn entry(value: f64, digits: usize) -> SerializedEntry {
    SerializedEntry::new(
        format!("{value:.digits$}"),
        NumericEntry::Value(value).serialize(),
    )
}

/// Mean loss, weighted by batch size.
#[derive(Debug, Clone)]
pub struct LossMetric<P> {
    sum: f64,
    count: usize,
    last: f64,
    _payload: PhantomData<fn(P)>,
}

impl<P> Default for LossMetric<P> {
    fn default() -> Self {
        Self {
            sum: 0.0,
            count: 0,
            last: 0.0,
            _payload: PhantomData,
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Metric for LossMetric<P> {
    type Input = Outcome<P>;

    fn name(&self) -> MetricName {
        Arc::new("loss".into())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }

    fn update(&mut self, item: &Outcome<P>, _: &MetricMetadata) -> SerializedEntry {
        let n = item.count.max(1);
        self.sum += item.loss * n as f64;
        self.count += n;
        self.last = item.loss;
        SerializedEntry::new(
            format!("{:.4}", item.loss),
            NumericEntry::Aggregated {
                aggregated_value: item.loss,
                count: n,
            }
            .serialize(),
        )
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl<P: Clone + Send + Sync + 'static> Numeric for LossMetric<P> {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.last)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Aggregated {
            aggregated_value: self.sum / self.count.max(1) as f64,
            count: self.count,
        }
    }
}

/// Name of the orthogonality metric in the dashboard and `metrics.jsonl`.
pub const ORTHOGONALITY: &str = "BtB-I";

/// ‖BᵀB − I‖_F averaged over adapters, per step.
#[derive(Debug, Clone)]
pub struct OrthogonalityMetric<P> {
    sum: f64,
    count: usize,
    last: f64,
    _payload: PhantomData<fn(P)>,
}

impl<P> Default for OrthogonalityMetric<P> {
    fn default() -> Self {
        Self {
            sum: 0.0,
            count: 0,
            last: 0.0,
            _payload: PhantomData,
        }
    }
}

impl<P: Clone + Send + Sync + 'static> Metric for OrthogonalityMetric<P> {
    type Input = Outcome<P>;

    fn name(&self) -> MetricName {
        Arc::new(ORTHOGONALITY.into())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }

    fn update(&mut self, item: &Outcome<P>, _: &MetricMetadata) -> SerializedEntry {
        let value = item.orthogonality.unwrap_or(f64::NAN);
        self.sum += value;
        self.count += 1;
        self.last = value;
        entry(value, 6)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl<P: Clone + Send + Sync + 'static> Numeric for OrthogonalityMetric<P> {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.last)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.sum / self.count.max(1) as f64)
    }
}

/// One of a task's dev metrics over everything seen this epoch.
///
/// Metrics such as correlations or SQuAD's F1 are not means of per-batch values, so every update
/// reports the metric of all outcomes so far; the last update of an epoch is the epoch's value,
/// and [`RunLogger`] aggregates such metrics by taking that last value.
pub struct TaskMetric<T: Task> {
    task: Arc<T>,
    metric: String,
    seen: Vec<T::Payload>,
    current: f64,
}

impl<T: Task> Clone for TaskMetric<T> {
    fn clone(&self) -> Self {
        Self {
            task: self.task.clone(),
            metric: self.metric.clone(),
            seen: self.seen.clone(),
            current: self.current,
        }
    }
}

impl<T: Task> TaskMetric<T> {
    /// Tracks `metric` of `task`.
    pub fn new(task: Arc<T>, metric: String) -> Self {
        Self {
            task,
            metric,
            seen: Vec::new(),
            current: f64::NAN,
        }
    }
}

impl<T: Task> Metric for TaskMetric<T> {
    type Input = Outcome<T::Payload>;

    fn name(&self) -> MetricName {
        Arc::new(self.metric.clone())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes::default().into()
    }

    fn update(&mut self, item: &Outcome<T::Payload>, _: &MetricMetadata) -> SerializedEntry {
        self.seen.push(item.payload.clone());
        self.current = self.task.live_metric(&self.metric, &self.seen);
        entry(self.current, 4)
    }

    fn clear(&mut self) {
        self.seen.clear();
        self.current = f64::NAN;
    }
}

impl<T: Task> Numeric for TaskMetric<T> {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }
}

/// Per-epoch values of every metric, by split, as the run saw them.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (epoch, metric name) → value, training split.
    pub train: Vec<HashMap<String, f64>>,
    /// (epoch, metric name) → value, validation split.
    pub valid: Vec<HashMap<String, f64>>,
}

impl History {
    /// Validation value of `metric` per epoch (index 0 = epoch 1), NaN where missing.
    pub fn valid_series(&self, metric: &str) -> Vec<f64> {
        self.valid
            .iter()
            .map(|m| m.get(metric).copied().unwrap_or(f64::NAN))
            .collect()
    }
}

/// Per-epoch storage of numeric entries; the cumulative (task) metrics keep only their last value.
#[derive(Default)]
struct EpochStore {
    /// (split, epoch, name) → entries.
    entries: HashMap<(String, usize, String), Vec<NumericEntry>>,
}

/// burn-train metric logger writing `metrics.jsonl`: one line per training step (loss, lr,
/// ‖BᵀB − I‖_F) and one per epoch and split (the epoch's values, including the task metrics).
pub struct RunLogger {
    out: BufWriter<File>,
    definitions: HashMap<MetricId, MetricDefinition>,
    cumulative: Vec<String>,
    store: EpochStore,
    iteration: HashMap<(String, usize), usize>,
    global_step: usize,
    history: Arc<Mutex<History>>,
    stop: Option<(usize, Interrupter)>,
    /// Stops training at the first non-finite training loss and records its global step.
    loss_watch: Option<(Interrupter, Arc<Mutex<Option<usize>>>)>,
    /// burn-train's event store numbers the first epoch it logs per split as 1 in every launch,
    /// and later ones from the true epoch of the previous summary: after resuming at epoch k, the
    /// first logged epoch is k + 1 in truth. Splits whose first summary came are listed here.
    epoch_offset: usize,
    summarised: std::collections::HashSet<String>,
    /// Training items per optimizer step: burn-train reports each device's micro-batch apart.
    items_per_step: usize,
}

/// The `metrics.jsonl` key of a metric: burn-train's "Learning Rate" is written `lr`.
fn json_key(name: &str) -> String {
    match name {
        "Learning Rate" => "lr".into(),
        other => other.into(),
    }
}

fn split_name(split: &Split) -> String {
    match split {
        Split::Train => "train".into(),
        Split::Valid => "valid".into(),
        Split::Test(tag) => tag
            .as_deref()
            .map_or_else(|| "test".into(), |t| format!("test-{t}")),
    }
}

impl RunLogger {
    /// Appends to `path` (so a resumed run continues its file). `cumulative` names the metrics
    /// whose epoch value is their last entry; `first_step` is the global step to continue from.
    pub fn new(
        path: &Path,
        cumulative: Vec<String>,
        first_step: usize,
        history: Arc<Mutex<History>>,
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            out: BufWriter::new(file),
            definitions: HashMap::new(),
            cumulative,
            store: EpochStore::default(),
            iteration: HashMap::new(),
            global_step: first_step,
            history,
            stop: None,
            loss_watch: None,
            epoch_offset: 0,
            summarised: Default::default(),
            items_per_step: 1,
        })
    }

    /// Declares that each step reports one training item per device: their lines share a step
    /// number and an iteration (each with its device's micro-batch loss).
    pub fn devices(mut self, n: usize) -> Self {
        self.items_per_step = n.max(1);
        self
    }

    /// Declares that the run resumes after `epoch` (see the field's documentation).
    pub fn resumed_after(mut self, epoch: usize) -> Self {
        self.epoch_offset = epoch;
        self
    }

    /// Stops training (through `interrupter`) once epoch `epoch` is validated, as if the process
    /// were killed during the next epoch: used to test and demonstrate resuming.
    pub fn stop_after(mut self, epoch: usize, interrupter: Interrupter) -> Self {
        self.stop = Some((epoch, interrupter));
        self
    }

    /// Stops training (through `interrupter`) at the first training step whose loss is NaN or
    /// infinite, writing that step into `step`: such weights are useless, and every later
    /// checkpoint would hold them.
    pub fn stop_on_non_finite_loss(
        mut self,
        interrupter: Interrupter,
        step: Arc<Mutex<Option<usize>>>,
    ) -> Self {
        self.loss_watch = Some((interrupter, step));
        self
    }

    fn check_loss(&self, line: &Map<String, Value>) {
        let Some((interrupter, step)) = &self.loss_watch else {
            return;
        };
        let finite = line
            .get("loss")
            .and_then(Value::as_f64)
            .is_some_and(f64::is_finite);
        if line.contains_key("loss") && !finite {
            if let Ok(mut step) = step.lock() {
                step.get_or_insert(self.global_step);
            }
            interrupter.stop(Some("non-finite training loss"));
        }
    }

    fn write(&mut self, value: Value) {
        // A full disk must not kill a long run: the line is lost, the run continues.
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }

    fn epoch_value(&self, split: &str, epoch: usize, name: &str) -> Option<f64> {
        let entries = self
            .store
            .entries
            .get(&(split.to_string(), epoch, name.to_string()))?;
        if self.cumulative.iter().any(|c| c == name) {
            return entries.last().map(NumericEntry::current);
        }
        let (sum, count) = entries.iter().fold((0.0, 0usize), |(s, c), e| match e {
            NumericEntry::Value(v) => (s + v, c + 1),
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => (s + aggregated_value * *count as f64, c + count),
        });
        (count > 0).then(|| sum / count as f64)
    }
}

impl MetricLogger for RunLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let split = split_name(split);
        let epoch = if self.summarised.contains(&split) {
            epoch
        } else {
            epoch + self.epoch_offset
        };
        let mut line = Map::new();
        for numeric in &update.entries_numeric {
            let Some(def) = self.definitions.get(&numeric.entry.metric_id) else {
                continue;
            };
            let name = def.name.clone();
            let value = NumericEntry::deserialize(&numeric.entry.serialized_entry.serialized)
                .unwrap_or_else(|_| numeric.numeric_entry.clone());
            line.insert(json_key(&name), json!(value.current()));
            self.store
                .entries
                .entry((split.clone(), epoch, name))
                .or_default()
                .push(value);
        }
        let iteration = self.iteration.entry((split.clone(), epoch)).or_insert(0);
        *iteration += 1;
        if split == "train" {
            let per_step = self.items_per_step;
            if (*iteration - 1).is_multiple_of(per_step) {
                self.global_step += 1;
            }
            line.insert("split".into(), json!(split));
            line.insert("epoch".into(), json!(epoch));
            line.insert("iteration".into(), json!(iteration.div_ceil(per_step)));
            line.insert("step".into(), json!(self.global_step));
            self.check_loss(&line);
            self.write(Value::Object(line));
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> std::result::Result<Vec<NumericEntry>, String> {
        let split = split_name(split);
        Ok(self
            .epoch_value(&split, epoch, name)
            .map(|v| vec![NumericEntry::Value(v)])
            .unwrap_or_default())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.definitions
            .insert(definition.metric_id.clone(), definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let split = split_name(&summary.split);
        let epoch = summary.epoch_number;
        self.summarised.insert(split.clone());
        let names: Vec<String> = self
            .store
            .entries
            .keys()
            .filter(|(s, e, _)| *s == split && *e == epoch)
            .map(|(_, _, n)| n.clone())
            .collect();
        let mut values = HashMap::new();
        let mut line = Map::new();
        line.insert("split".into(), json!(format!("{split}_epoch")));
        line.insert("epoch".into(), json!(epoch));
        for name in names {
            if let Some(v) = self.epoch_value(&split, epoch, &name) {
                line.insert(json_key(&name), json!(v));
                values.insert(name, v);
            }
        }
        self.write(Value::Object(line));
        let mut history = self.history.lock().expect("history lock");
        let series = if split == "train" {
            &mut history.train
        } else {
            &mut history.valid
        };
        if series.len() < epoch {
            series.resize(epoch, HashMap::new());
        }
        series[epoch - 1] = values;
        if let Some((stop_epoch, interrupter)) = &self.stop {
            if split == "valid" && epoch >= *stop_epoch {
                interrupter.stop(Some(STOP_AFTER_EPOCH));
            }
        }
    }
}

/// The interrupter's reason when `stop_after` stops a run.
pub const STOP_AFTER_EPOCH: &str = "stop_after_epoch reached";

/// A renderer for logs: one line every `every` training iterations and at each epoch's end.
pub struct LineRenderer {
    every: usize,
    latest_train: Vec<(String, String)>,
    latest_valid: Vec<(String, String)>,
    definitions: HashMap<MetricId, String>,
}

impl LineRenderer {
    /// Prints every `every` iterations.
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            latest_train: Vec::new(),
            latest_valid: Vec::new(),
            definitions: HashMap::new(),
        }
    }

    fn remember(&self, latest: &mut Vec<(String, String)>, state: MetricState) {
        let (entry, formatted) = match &state {
            MetricState::Generic(e) => (e, e.serialized_entry.formatted.clone()),
            MetricState::Numeric(e, _) => (e, e.serialized_entry.formatted.clone()),
        };
        let name = self
            .definitions
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_else(|| "?".into());
        match latest.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = formatted,
            None => latest.push((name, formatted)),
        }
    }

    fn line(values: &[(String, String)]) -> String {
        values
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        let mut latest = std::mem::take(&mut self.latest_train);
        self.remember(&mut latest, state);
        self.latest_train = latest;
    }

    fn update_valid(&mut self, state: MetricState) {
        let mut latest = std::mem::take(&mut self.latest_valid);
        self.remember(&mut latest, state);
        self.latest_valid = latest;
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let Some(iteration) = item.iteration else {
            return;
        };
        let done = item
            .progress
            .as_ref()
            .is_some_and(|p| p.items_processed >= p.items_total);
        if iteration % self.every == 0 || done {
            println!(
                "train epoch {}/{} iter {iteration} | {}",
                item.global_progress.items_processed,
                item.global_progress.items_total,
                Self::line(&self.latest_train)
            );
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let done = item
            .progress
            .as_ref()
            .is_some_and(|p| p.items_processed >= p.items_total);
        if done {
            println!(
                "valid epoch {}/{} | {}",
                item.global_progress.items_processed,
                item.global_progress.items_total,
                Self::line(&self.latest_valid)
            );
        }
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}

    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.definitions
            .insert(definition.metric_id, definition.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::glue::{GlueTask, Label};
    use crate::metrics::Metric as GlueMetric;
    use crate::tasks::glue::{Glue, GluePayload};
    use burn::data::dataloader::Progress;

    fn outcome(preds: &[usize], gold: &[usize], loss: f64) -> Outcome<GluePayload> {
        Outcome {
            loss,
            count: gold.len(),
            orthogonality: Some(0.5),
            payload: GluePayload {
                predictions: preds.iter().map(|&p| Label::Class(p)).collect(),
                targets: gold.iter().map(|&g| Label::Class(g)).collect(),
            },
        }
    }

    fn task_metric(task: GlueTask, metric: GlueMetric) -> TaskMetric<Glue> {
        TaskMetric::new(Arc::new(Glue::new(task)), metric.name().into())
    }

    fn metadata() -> MetricMetadata {
        MetricMetadata {
            progress: Progress::new(1, 1),
            global_progress: Progress::new(1, 1),
            iteration: Some(1),
            lr: None,
        }
    }

    #[test]
    fn task_metric_is_computed_over_the_whole_epoch() {
        // The shared golden: labels [1,0,1,1,0,1,0,0,1,1], preds [1,0,0,1,0,1,1,0,1,0] → MCC 0.408…
        let mut mcc = task_metric(GlueTask::Cola, GlueMetric::Matthews);
        mcc.update(
            &outcome(&[1, 0, 0, 1, 0], &[1, 0, 1, 1, 0], 0.1),
            &metadata(),
        );
        mcc.update(
            &outcome(&[1, 1, 0, 1, 0], &[1, 0, 0, 1, 1], 0.1),
            &metadata(),
        );
        assert!((mcc.value().current() - 0.408248290463863).abs() < 1e-12);
        mcc.clear();
        assert!(mcc.value().current().is_nan());
    }

    #[test]
    fn loss_is_weighted_by_batch_size() {
        let mut loss = LossMetric::<GluePayload>::default();
        loss.update(&outcome(&[0, 0, 0], &[0, 0, 0], 1.0), &metadata());
        loss.update(&outcome(&[0], &[0], 5.0), &metadata());
        assert!((loss.running_value().current() - 2.0).abs() < 1e-12);
        assert_eq!(loss.value().current(), 5.0);
    }

    #[test]
    fn logger_takes_the_last_value_of_cumulative_metrics_and_means_of_others() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(Mutex::new(History::default()));
        let mut logger = RunLogger::new(
            &dir.path().join("metrics.jsonl"),
            vec!["accuracy".into()],
            0,
            history.clone(),
        )
        .unwrap();
        let acc_id = MetricId::new(Arc::new("a".into()));
        let loss_id = MetricId::new(Arc::new("l".into()));
        let mut acc_metric = task_metric(GlueTask::Rte, GlueMetric::Accuracy);
        let mut loss_metric = LossMetric::<GluePayload>::default();
        logger.log_metric_definition(MetricDefinition::new(acc_id.clone(), &acc_metric));
        logger.log_metric_definition(MetricDefinition::new(loss_id.clone(), &loss_metric));
        for (preds, gold, loss) in [(vec![1, 1], vec![1, 0], 2.0), (vec![0, 0], vec![0, 0], 4.0)] {
            let item = outcome(&preds, &gold, loss);
            let a = acc_metric.update(&item, &metadata());
            let l = loss_metric.update(&item, &metadata());
            let update = |id: &MetricId, e: SerializedEntry, n: NumericEntry| {
                burn::train::metric::store::NumericMetricUpdate {
                    entry: burn::train::metric::MetricEntry::new(id.clone(), e),
                    numeric_entry: n.clone(),
                    running_entry: n,
                }
            };
            logger.log(
                MetricsUpdate::new(
                    vec![],
                    vec![
                        update(&acc_id, a, acc_metric.value()),
                        update(&loss_id, l, loss_metric.value()),
                    ],
                ),
                1,
                &Split::Valid,
            );
        }
        logger.log_epoch_summary(EpochSummary::new(1, Split::Valid));
        let h = history.lock().unwrap();
        assert_eq!(h.valid_series("accuracy"), vec![0.75]);
        assert_eq!(h.valid_series("loss"), vec![3.0]);
        assert_eq!(
            logger
                .read_numeric("accuracy", 1, &Split::Valid)
                .unwrap()
                .len(),
            1
        );
        drop(h);
        drop(logger);
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["split"], "valid_epoch");
        assert_eq!(last["accuracy"], 0.75);
    }
}
