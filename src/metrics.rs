//! GLUE evaluation metrics, matching scikit-learn and scipy on the values reported in papers.
//!
//! Conventions for degenerate inputs, chosen so evaluation never panics and checkpoint selection
//! always has a number to compare:
//! - Empty inputs or inputs of different lengths are an error ([`Error::Other`]): there is no
//!   meaningful score, and a silently reported 0 would hide a broken evaluation loop.
//! - Matthews correlation is 0 when its denominator is 0 (a constant prediction or a constant
//!   gold column), as in scikit-learn.
//! - Pearson and Spearman are 0 when either input is constant. scipy returns NaN there; 0 states
//!   the same thing (no linear/monotone association is measurable) without poisoning averages
//!   and `max` comparisons over checkpoints. Non-finite inputs (a diverged model) do give NaN.
//! - F1 is 0 when there are no true and no predicted positives (scikit-learn's
//!   `zero_division=0`).

use std::collections::HashMap;
use std::fmt;

use crate::data::glue::{GlueTask, Label};
use crate::error::{Error, Result};

/// A metric reported for a GLUE task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Accuracy,
    /// F1 of the positive class (class 1: `equivalent`, `duplicate`).
    F1,
    /// Matthews correlation coefficient.
    Matthews,
    Pearson,
    Spearman,
}

impl Metric {
    /// Name as used by HF `evaluate`'s `glue` metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "matthews_correlation",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearmanr",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The metrics of one task on one evaluation split.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScores {
    pub task: GlueTask,
    /// Every metric of [`GlueTask::metrics`], in that order.
    pub values: Vec<(Metric, f64)>,
    /// The metric used to rank runs: [`GlueTask::primary_metric`].
    pub primary: Metric,
}

impl TaskScores {
    /// Value of `metric`, if the task reports it.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }

    /// Value of the primary metric.
    pub fn primary_value(&self) -> f64 {
        self.get(self.primary).unwrap_or(f64::NAN)
    }
}

impl fmt::Display for TaskScores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.task)?;
        for (m, v) in &self.values {
            write!(f, " {m}={v:.4}")?;
        }
        Ok(())
    }
}

fn check_lengths(metric: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(Error::Other(format!(
            "metric `{metric}`: {a} predictions but {b} labels"
        )));
    }
    if a == 0 {
        return Err(Error::Other(format!("metric `{metric}`: empty input")));
    }
    Ok(())
}

/// Fraction of predictions equal to the label.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    check_lengths("accuracy", predictions.len(), labels.len())?;
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// F1 of class 1 against all other classes.
pub fn f1_binary(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    check_lengths("f1", predictions.len(), labels.len())?;
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &l) in predictions.iter().zip(labels) {
        match (p == 1, l == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denom = 2 * tp + fp + fn_;
    Ok(if denom == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denom as f64
    })
}

/// Matthews correlation coefficient, multiclass form (Gorodkin's R_K, as scikit-learn).
pub fn matthews_corrcoef(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    check_lengths("matthews_correlation", predictions.len(), labels.len())?;
    // Per class: (times it is the label, times it is predicted).
    let mut counts: HashMap<usize, (f64, f64)> = HashMap::new();
    let mut correct = 0.0;
    for (&p, &l) in predictions.iter().zip(labels) {
        counts.entry(l).or_default().0 += 1.0;
        counts.entry(p).or_default().1 += 1.0;
        if p == l {
            correct += 1.0;
        }
    }
    let s = labels.len() as f64;
    let t_dot_p: f64 = counts.values().map(|(t, p)| t * p).sum();
    let t_sq: f64 = counts.values().map(|(t, _)| t * t).sum();
    let p_sq: f64 = counts.values().map(|(_, p)| p * p).sum();
    let cov_tp = correct * s - t_dot_p;
    let cov_pp = s * s - p_sq;
    let cov_tt = s * s - t_sq;
    let denom = cov_tt * cov_pp;
    Ok(if denom == 0.0 {
        0.0
    } else {
        cov_tp / denom.sqrt()
    })
}

/// Pearson correlation coefficient; 0 when either input is constant (see the module docs).
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths("pearson", x.len(), y.len())?;
    Ok(pearson_unchecked(x, y))
}

fn pearson_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    // Rounding can push |r| a hair above 1 for perfectly correlated inputs.
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// 1-based ranks with ties given the average of the ranks they span (scipy's `rankdata`
/// default), which Spearman's coefficient needs to match scipy on tied STS-B scores.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold equal values: ranks i+1..=j, averaging to (i+1+j)/2.
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        i = j;
    }
    ranks
}

/// Spearman rank correlation (Pearson on average ranks); 0 when either input is constant,
/// NaN when an input holds NaN.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths("spearmanr", x.len(), y.len())?;
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return Ok(f64::NAN);
    }
    Ok(pearson_unchecked(&average_ranks(x), &average_ranks(y)))
}

/// Scores class predictions of a classification task with the task's metrics.
pub fn compute_classes(
    task: GlueTask,
    predictions: &[usize],
    labels: &[usize],
) -> Result<TaskScores> {
    if task.is_regression() {
        return Err(Error::Other(format!(
            "{task} is a regression task: score it with compute_scores"
        )));
    }
    let n = task.num_labels();
    if let Some(bad) = predictions.iter().chain(labels).find(|&&c| c >= n) {
        return Err(Error::Other(format!(
            "{task}: class {bad} is out of range for {n} labels"
        )));
    }
    let values = task
        .metrics()
        .iter()
        .map(|&m| {
            let v = match m {
                Metric::Accuracy => accuracy(predictions, labels)?,
                Metric::F1 => f1_binary(predictions, labels)?,
                Metric::Matthews => matthews_corrcoef(predictions, labels)?,
                Metric::Pearson | Metric::Spearman => unreachable!("classification task"),
            };
            Ok((m, v))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskScores {
        task,
        values,
        primary: task.primary_metric(),
    })
}

/// Scores real-valued predictions of a regression task (STS-B) with the task's metrics.
pub fn compute_scores(task: GlueTask, predictions: &[f64], labels: &[f64]) -> Result<TaskScores> {
    if !task.is_regression() {
        return Err(Error::Other(format!(
            "{task} is a classification task: score it with compute_classes"
        )));
    }
    let values = task
        .metrics()
        .iter()
        .map(|&m| {
            let v = match m {
                Metric::Pearson => pearson(predictions, labels)?,
                Metric::Spearman => spearman(predictions, labels)?,
                _ => unreachable!("regression task"),
            };
            Ok((m, v))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskScores {
        task,
        values,
        primary: task.primary_metric(),
    })
}

/// Scores predictions against gold labels as read from a GLUE file; both must be of the task's
/// kind ([`Label::Class`] for classification, [`Label::Score`] for STS-B).
pub fn compute(task: GlueTask, predictions: &[Label], labels: &[Label]) -> Result<TaskScores> {
    let kind_err = |what: &str, i: usize, l: &Label| {
        Error::Other(format!(
            "{task}: {what} {i} is {l:?}, not of the task's kind"
        ))
    };
    if task.is_regression() {
        let to_scores = |xs: &[Label], what: &str| {
            xs.iter()
                .enumerate()
                .map(|(i, l)| l.score().map(f64::from).ok_or_else(|| kind_err(what, i, l)))
                .collect::<Result<Vec<f64>>>()
        };
        compute_scores(
            task,
            &to_scores(predictions, "prediction")?,
            &to_scores(labels, "label")?,
        )
    } else {
        let to_classes = |xs: &[Label], what: &str| {
            xs.iter()
                .enumerate()
                .map(|(i, l)| l.class().ok_or_else(|| kind_err(what, i, l)))
                .collect::<Result<Vec<usize>>>()
        };
        compute_classes(
            task,
            &to_classes(predictions, "prediction")?,
            &to_classes(labels, "label")?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;
    const LABELS: [usize; 10] = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1];
    const PREDS: [usize; 10] = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0];
    const STS_GOLD: [f64; 8] = [0.0, 1.2, 2.5, 2.5, 3.8, 5.0, 4.2, 1.0];
    const STS_PRED: [f64; 8] = [0.3, 1.0, 2.9, 2.1, 3.5, 4.6, 4.4, 1.9];

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < TOL, "{a} vs {b}");
    }

    #[test]
    fn classification_goldens_from_scikit_learn() {
        close(accuracy(&PREDS, &LABELS).unwrap(), 0.7);
        close(f1_binary(&PREDS, &LABELS).unwrap(), 0.7272727272727273);
        close(
            matthews_corrcoef(&PREDS, &LABELS).unwrap(),
            0.408248290463863,
        );
        close(matthews_corrcoef(&[1; 10], &LABELS).unwrap(), 0.0);
        // Symmetric in its arguments and ±1 at the extremes.
        close(
            matthews_corrcoef(&LABELS, &PREDS).unwrap(),
            0.408248290463863,
        );
        close(matthews_corrcoef(&LABELS, &LABELS).unwrap(), 1.0);
        let flipped: Vec<usize> = LABELS.iter().map(|l| 1 - l).collect();
        close(matthews_corrcoef(&flipped, &LABELS).unwrap(), -1.0);
    }

    #[test]
    fn multiclass_matthews_matches_scikit_learn() {
        // sklearn.metrics.matthews_corrcoef(y_true=[0,1,2,0,1,2], y_pred=[0,2,1,0,0,2]):
        // 3 correct of 6, t = (2,2,2), p = (3,1,2): (3·6 − 12) / √((36 − 14)(36 − 12)) = 6/√528.
        close(
            matthews_corrcoef(&[0, 2, 1, 0, 0, 2], &[0, 1, 2, 0, 1, 2]).unwrap(),
            0.26111648393354675,
        );
    }

    #[test]
    fn correlation_goldens_from_scipy() {
        close(pearson(&STS_PRED, &STS_GOLD).unwrap(), 0.9660107420991785);
        close(spearman(&STS_PRED, &STS_GOLD).unwrap(), 0.9700772721497397);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 2.5, 2.5, 0.0]),
            vec![5.0, 2.0, 3.5, 3.5, 1.0]
        );
        // Spearman is invariant under a monotone transform; Pearson is not.
        let cubed: Vec<f64> = STS_PRED.iter().map(|x| x * x * x).collect();
        close(spearman(&cubed, &STS_GOLD).unwrap(), 0.9700772721497397);
        assert!((pearson(&cubed, &STS_GOLD).unwrap() - 0.9660107420991785).abs() > 1e-3);
    }

    #[test]
    fn degenerate_inputs_follow_the_documented_conventions() {
        assert!(accuracy(&[], &[]).is_err());
        assert!(pearson(&[], &[]).is_err());
        assert!(spearman(&[1.0], &[1.0, 2.0]).is_err());
        let err = f1_binary(&[1, 0], &[1]).unwrap_err().to_string();
        assert!(
            err.contains("2 predictions") && err.contains("1 labels"),
            "{err}"
        );
        assert_eq!(pearson(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0]).unwrap(), 0.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[7.0; 3]).unwrap(), 0.0);
        assert!(pearson(&[f64::NAN, 1.0, 2.0], &[1.0, 2.0, 3.0])
            .unwrap()
            .is_nan());
        assert!(spearman(&[f64::NAN, 1.0, 2.0], &[1.0, 2.0, 3.0])
            .unwrap()
            .is_nan());
        assert_eq!(f1_binary(&[0, 0], &[0, 0]).unwrap(), 0.0);
        assert_eq!(matthews_corrcoef(&[0, 0, 0], &[0, 0, 0]).unwrap(), 0.0);
    }

    #[test]
    fn per_task_scores() {
        let cls = |xs: &[usize]| xs.iter().map(|&c| Label::Class(c)).collect::<Vec<_>>();
        let mrpc = compute(GlueTask::Mrpc, &cls(&PREDS), &cls(&LABELS)).unwrap();
        assert_eq!(mrpc.primary, Metric::Accuracy);
        close(mrpc.primary_value(), 0.7);
        close(mrpc.get(Metric::F1).unwrap(), 0.7272727272727273);
        assert_eq!(mrpc.get(Metric::Matthews), None);
        assert_eq!(mrpc.to_string(), "mrpc: accuracy=0.7000 f1=0.7273");

        let cola = compute(GlueTask::Cola, &cls(&PREDS), &cls(&LABELS)).unwrap();
        assert_eq!(cola.values.len(), 1);
        close(cola.primary_value(), 0.408248290463863);

        let rte = compute_classes(GlueTask::Rte, &PREDS, &LABELS).unwrap();
        assert_eq!(rte.values, vec![(Metric::Accuracy, 0.7)]);

        let sc = |xs: &[f64]| {
            xs.iter()
                .map(|&s| Label::Score(s as f32))
                .collect::<Vec<_>>()
        };
        let sts = compute(GlueTask::Stsb, &sc(&STS_PRED), &sc(&STS_GOLD)).unwrap();
        assert_eq!(sts.primary, Metric::Pearson);
        // Through f32 labels, so only to f32 precision.
        assert!((sts.primary_value() - 0.9660107420991785).abs() < 1e-6);
        assert!((sts.get(Metric::Spearman).unwrap() - 0.9700772721497397).abs() < 1e-6);
        close(
            compute_scores(GlueTask::Stsb, &STS_PRED, &STS_GOLD)
                .unwrap()
                .primary_value(),
            0.9660107420991785,
        );

        // Kind and range mismatches are errors, not panics.
        assert!(compute(GlueTask::Stsb, &cls(&PREDS), &cls(&LABELS)).is_err());
        assert!(compute(GlueTask::Rte, &sc(&STS_PRED), &sc(&STS_GOLD)).is_err());
        assert!(compute_classes(GlueTask::Rte, &[2], &[1]).is_err());
        assert!(compute_classes(GlueTask::Mnli, &[2], &[1]).is_ok());
        assert!(compute_scores(GlueTask::Cola, &[1.0], &[1.0]).is_err());
        assert!(compute_classes(GlueTask::Wnli, &[], &[]).is_err());
    }
}
