//! Checkpoints that survive a kill or a full disk, and the choice of what to keep and resume.
//!
//! burn-train's file recorder writes through a `BufWriter` whose final flush error is dropped, so
//! a full disk left a truncated `model-N.mpk` and the run reported a normal stop; a kill during
//! the write left a truncated file that `--resume` then panicked on. Here every file is encoded
//! in memory, written to `<name>.mpk.partial`, synced, and renamed over `<name>.mpk`: a file is
//! either the old or the new one, never half of one. A write error is recorded so the run can
//! fail with it instead of stopping quietly.
//!
//! The model, optimizer and scheduler of one epoch are three files written by three threads, so
//! the strategy keeps the last two epochs: a kill during epoch e's writes leaves epoch e − 1
//! whole, and [`resume_epoch`] picks the newest epoch whose three files all load.
//!
//! Those threads read the tensors while training goes on, and the next optimizer step updates
//! parameters and moments in place once nothing else holds them. On wgpu that race showed: an
//! epoch-1 checkpoint held one moment tensor of a later step in 2 of 5 runs on lavapipe, and the
//! runs resumed from it drifted. A [`WriteGate`] holds the next step until the epoch's three
//! records have been read to the host (8 of 8 runs then gave identical checkpoints); encoding
//! and writing the files still overlap training.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use burn::record::{FileRecorder, FullPrecisionSettings, Record, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::train::metrics::History;

/// The checkpoint directory inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The three files of an epoch, as burn-train names them.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// The optimizer's writes wait here for the checkpoint's reads: the checkpointing strategy
/// announces an epoch's three records when it asks for a save, the recorder takes one off per
/// record that reaches it (burn has read its tensors to the host by then), and the optimizer's
/// next step waits until none is left.
#[derive(Debug, Clone, Default)]
pub struct WriteGate {
    pending: Arc<(Mutex<usize>, Condvar)>,
}

/// Longer than any checkpoint read: past it the step goes on with a warning rather than hang
/// training on a checkpoint thread that died.
const GATE_TIMEOUT: Duration = Duration::from_secs(600);

impl WriteGate {
    /// `records` more records are on their way.
    pub fn expect(&self, records: usize) {
        let (count, _) = &*self.pending;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += records;
    }

    /// One record is on the host (one nobody announced is ignored).
    pub fn done(&self) {
        let (count, changed) = &*self.pending;
        let mut count = count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        changed.notify_all();
    }

    /// Blocks until every announced record is on the host, or `timeout` has passed (then false).
    pub fn wait_for(&self, timeout: Duration) -> bool {
        let (count, changed) = &*self.pending;
        let deadline = Instant::now() + timeout;
        let mut pending = count.lock().unwrap_or_else(|e| e.into_inner());
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = changed
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// [`WriteGate::wait_for`] with the default timeout, warning once it has passed.
    pub fn wait(&self) {
        if !self.wait_for(GATE_TIMEOUT) {
            eprintln!(
                "warning: a checkpoint was still not read after {} s; training goes on",
                GATE_TIMEOUT.as_secs()
            );
            let (count, _) = &*self.pending;
            *count.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        }
    }
}

/// MessagePack files (as burn's `NamedMpkFileRecorder`) written atomically.
#[derive(Debug, Clone, Default)]
pub struct AtomicRecorder {
    failure: Arc<Mutex<Option<String>>>,
    gate: WriteGate,
}

impl AtomicRecorder {
    /// The gate this recorder reports the records it receives to.
    pub fn gate(&self) -> WriteGate {
        self.gate.clone()
    }

    /// The first write error, if any write failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, path: &Path, err: impl std::fmt::Display) -> RecorderError {
        let msg = format!("writing {}: {err}", path.display());
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(msg.clone());
        }
        RecorderError::Unknown(msg)
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = (|| {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

impl<B: Backend> Recorder<B> for AtomicRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(
        &self,
        item: I,
        file: PathBuf,
    ) -> std::result::Result<(), RecorderError> {
        // `item` is host data: every device read of this record is done.
        self.gate.done();
        let path = file.with_extension(<Self as FileRecorder<B>>::file_extension());
        let bytes = rmp_serde::encode::to_vec_named(&item).map_err(|e| self.fail(&path, e))?;
        write_atomically(&path, &bytes).map_err(|e| self.fail(&path, e))
    }

    /// As `NamedMpkFileRecorder` reads, but every error names the file, and every tensor is
    /// checked against its shape first ([`tensor_check`]).
    fn load_item<I: DeserializeOwned>(
        &self,
        file: &mut PathBuf,
    ) -> std::result::Result<I, RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let path = file.as_path();
        let open = || {
            std::fs::File::open(path)
                .map(std::io::BufReader::new)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        RecorderError::FileNotFound(format!("{}: {e}", path.display()))
                    }
                    _ => RecorderError::Unknown(format!("{}: {e}", path.display())),
                })
        };
        let damaged = |e: rmp_serde::decode::Error| {
            RecorderError::DeserializeError(format!("{}: {e}", path.display()))
        };
        rmp_serde::decode::from_read::<_, tensor_check::Node>(open()?).map_err(damaged)?;
        rmp_serde::decode::from_read(open()?).map_err(damaged)
    }
}

/// A pass over a record file that checks every tensor (a map of `bytes`, `shape` and `dtype`)
/// holds exactly the bytes its shape needs, before burn builds it: ndarray only
/// `debug_assert`s this, so in a release build a damaged file whose shape promises more values
/// than it holds would be read out of bounds instead of failing.
mod tensor_check {
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    /// What the check keeps of a value.
    pub(super) enum Node {
        Bytes(usize),
        UInt(u64),
        /// A short string (a `dtype` name, a key).
        Str(String),
        /// A list of unsigned integers (a shape).
        Sizes(Vec<u64>),
        Other,
    }

    impl<'de> Deserialize<'de> for Node {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(NodeVisitor)
        }
    }

    /// Bytes per element of a `DType` as burn serialises it; `None` for the others, which are
    /// left to burn (bool and quantized tensors, not in the records written here).
    fn element_size(dtype: &str) -> Option<u64> {
        Some(match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "Flex32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" => 1,
            _ => return None,
        })
    }

    struct NodeVisitor;

    impl<'de> Visitor<'de> for NodeVisitor {
        type Value = Node;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a MessagePack value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
            Ok(Node::Other)
        }
        fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
            Ok(u64::try_from(v).map_or(Node::Other, Node::UInt))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
            Ok(Node::UInt(v))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
            Ok(Node::Other)
        }
        fn visit_str<E>(self, v: &str) -> Result<Node, E> {
            Ok(if v.len() <= 64 {
                Node::Str(v.to_string())
            } else {
                Node::Other
            })
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
            Ok(Node::Bytes(v.len()))
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Node, E> {
            Ok(Node::Bytes(v.len()))
        }
        fn visit_none<E>(self) -> Result<Node, E> {
            Ok(Node::Other)
        }
        fn visit_unit<E>(self) -> Result<Node, E> {
            Ok(Node::Other)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
            Node::deserialize(d)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
            Node::deserialize(d)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
            let mut sizes = Some(Vec::new());
            while let Some(node) = seq.next_element::<Node>()? {
                match (&mut sizes, node) {
                    (Some(s), Node::UInt(v)) => s.push(v),
                    _ => sizes = None,
                }
            }
            Ok(sizes.map_or(Node::Other, Node::Sizes))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
            let (mut bytes, mut shape, mut dtype) = (None, None, None);
            while let Some(key) = map.next_key::<Node>()? {
                match (key, map.next_value::<Node>()?) {
                    (Node::Str(k), Node::Bytes(n)) if k == "bytes" => bytes = Some(n),
                    (Node::Str(k), Node::Sizes(s)) if k == "shape" => shape = Some(s),
                    (Node::Str(k), Node::Str(t)) if k == "dtype" => dtype = Some(t),
                    _ => {}
                }
            }
            if let (Some(len), Some(shape), Some(dtype)) = (bytes, shape, dtype) {
                if let Some(size) = element_size(&dtype) {
                    let need = shape.iter().try_fold(size, |n, &d| n.checked_mul(d));
                    if need != Some(len as u64) {
                        return Err(de::Error::custom(format!(
                            "a {dtype} tensor of shape {shape:?} needs {} bytes but holds {len}",
                            need.map_or("more than 2^64".into(), |n| n.to_string())
                        )));
                    }
                }
            }
            Ok(Node::Other)
        }
    }
}

impl<B: Backend> FileRecorder<B> for AtomicRecorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

/// Epochs with a model file in `run_dir/checkpoint`.
pub fn saved_epochs(run_dir: &Path) -> BTreeSet<usize> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(CHECKPOINT_DIR)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("model-")?
                .strip_suffix(".mpk")?
                .parse::<usize>()
                .ok()
        })
        .collect()
}

/// Removes the checkpoints of `from` and every later epoch: after a non-finite loss in epoch
/// `from`, its checkpoint (written before the logger thread saw the loss) holds useless weights,
/// and a plain `--resume` would pick it. Returns the epochs removed.
pub fn discard_from(run_dir: &Path, from: usize) -> std::io::Result<Vec<usize>> {
    let doomed: Vec<usize> = saved_epochs(run_dir)
        .into_iter()
        .filter(|&e| e >= from)
        .collect();
    for &epoch in &doomed {
        for part in PARTS {
            let path = part_path(run_dir, part, epoch).with_extension("mpk");
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(doomed)
}

/// Path of part `part` (model, optim, scheduler) of `epoch`, without the extension.
pub fn part_path(run_dir: &Path, part: &str, epoch: usize) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR).join(format!("{part}-{epoch}"))
}

/// The epoch to resume: `wanted`, or else the newest saved one, after checking that its three
/// files load with the given record types. A damaged newest epoch is an error that names the
/// file and, when an older epoch is whole, how to resume from it instead.
pub fn resume_epoch<B: Backend, M: Record<B>, O: Record<B>, S: Record<B>>(
    run_dir: &Path,
    wanted: Option<usize>,
    device: &B::Device,
) -> Result<usize> {
    let saved = saved_epochs(run_dir);
    let epoch = match wanted {
        Some(e) if saved.contains(&e) => e,
        Some(e) => {
            return Err(Error::Other(format!(
                "--resume-from {e}: no checkpoint of epoch {e} in {}; saved epochs: {saved:?}",
                run_dir.join(CHECKPOINT_DIR).display()
            )))
        }
        None => *saved.last().ok_or_else(|| {
            Error::Other(format!(
                "--resume: no checkpoint in {}",
                run_dir.join(CHECKPOINT_DIR).display()
            ))
        })?,
    };
    let Err(damage) = check_epoch::<B, M, O, S>(run_dir, epoch, device) else {
        return Ok(epoch);
    };
    let older = saved
        .range(..epoch)
        .rev()
        .find(|&&e| check_epoch::<B, M, O, S>(run_dir, e, device).is_ok());
    let hint = match older {
        Some(e) => {
            format!("; epoch {e} is whole: continue from it with --resume --resume-from {e}")
        }
        None => "; no older checkpoint is whole: start the run again".into(),
    };
    Err(Error::Other(format!("{damage}{hint}")))
}

/// Loads the three files of `epoch`, reporting the first that is missing or damaged.
fn check_epoch<B: Backend, M: Record<B>, O: Record<B>, S: Record<B>>(
    run_dir: &Path,
    epoch: usize,
    device: &B::Device,
) -> Result<()> {
    let recorder = AtomicRecorder::default();
    let load = |part: &str, read: &dyn Fn() -> std::result::Result<(), RecorderError>| {
        let path = part_path(run_dir, part, epoch).with_extension("mpk");
        // `load_item` checks the tensors against their shapes; should burn still panic while
        // it builds the record from a damaged file, that is damage too, not a crash.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|_| {
                Err(RecorderError::Unknown(
                    "burn could not build the record from it".into(),
                ))
            });
        result.map_err(|e| {
            let what = if !path.exists() {
                "is missing"
            } else if !path.is_file() {
                "is not a file"
            } else {
                "is damaged"
            };
            Error::Other(format!(
                "checkpoint {} {what} ({})",
                path.display(),
                reason(&e, &path)
            ))
        })
    };
    let path = |part| part_path(run_dir, part, epoch);
    load("model", &|| {
        Recorder::<B>::load::<M>(&recorder, path("model"), device).map(drop)
    })?;
    load("optim", &|| {
        Recorder::<B>::load::<O>(&recorder, path("optim"), device).map(drop)
    })?;
    load("scheduler", &|| {
        Recorder::<B>::load::<S>(&recorder, path("scheduler"), device).map(drop)
    })
}

/// The decoder's own words from a recorder error, short. Burn wraps them in `Debug` forms and,
/// for any tensor that fails to decode, appends advice about its 0.14 format change, which is
/// misleading for a truncated or overwritten file.
fn reason(e: &RecorderError, path: &Path) -> String {
    let (RecorderError::FileNotFound(text)
    | RecorderError::DeserializeError(text)
    | RecorderError::Unknown(text)) = e;
    let mut text = text.replace(&format!("{}: ", path.display()), "");
    for noise in [
        "\\nThe internal data format has changed",
        "\nThe internal data format",
    ] {
        if let Some(at) = text.find(noise) {
            text.truncate(at);
        }
    }
    let mut text = text.replace("Unable to load record.\n", "");
    // `Error: DeserializeError("…")`, burn's `Debug` of our own error: keep the message.
    text = text.trim_start_matches("Error: ").to_string();
    for variant in ["DeserializeError(\"", "Unknown(\"", "FileNotFound(\""] {
        if let Some(inner) = text.strip_prefix(variant) {
            let inner = inner.strip_suffix("\")").unwrap_or(inner);
            text = inner.replace("\\\"", "\"");
        }
    }
    let text = text.replace('\n', "; ");
    const MAX_CHARS: usize = 200;
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Keeps the last two epochs (a kill while epoch e is written leaves e − 1 whole) and the best
/// one so far by the primary dev metric, deleting every other checkpoint: model checkpoints hold
/// the frozen backbone too, so one per epoch would cost gigabytes for DeBERTa-base.
///
/// The best epoch is judged from [`History`], which the metric logger fills on its own thread; at
/// epoch e the values of epochs < e are surely there, so a checkpoint is only deleted once a
/// later, complete epoch has beaten it.
pub struct KeepLastAndBest {
    /// Epochs on disk.
    pub saved: BTreeSet<usize>,
    /// The run's epoch summaries.
    pub history: Arc<Mutex<History>>,
    /// The metric that selects the best epoch.
    pub metric: String,
    /// Told of the three records each save asks for.
    pub gate: WriteGate,
}

impl KeepLastAndBest {
    fn best_before(&self, epoch: usize) -> Option<usize> {
        let history = self.history.lock().ok()?;
        best_epoch(&history.valid_series(&self.metric)[..(epoch - 1).min(history.valid.len())])
    }
}

/// 1-based index of the maximum (first on ties), ignoring NaN.
pub fn best_epoch(series: &[f64]) -> Option<usize> {
    series
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .fold(None, |best: Option<(usize, f64)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i + 1)
}

impl CheckpointingStrategy for KeepLastAndBest {
    fn checkpointing(&mut self, epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        self.announced_actions(epoch)
    }
}

impl KeepLastAndBest {
    /// [`KeepLastAndBest::actions`], with the records of each save announced to the gate: here,
    /// on the training thread, before burn-train hands the records to its writer threads.
    fn announced_actions(&mut self, epoch: usize) -> Vec<CheckpointingAction> {
        let actions = self.actions(epoch);
        let saves = actions
            .iter()
            .filter(|a| matches!(a, CheckpointingAction::Save))
            .count();
        self.gate.expect(saves * PARTS.len());
        actions
    }

    /// Save `epoch`; delete what is neither the previous epoch, the best, nor unjudged.
    fn actions(&mut self, epoch: usize) -> Vec<CheckpointingAction> {
        let mut actions = vec![CheckpointingAction::Save];
        let best = self.best_before(epoch);
        let known = self.history.lock().map(|h| h.valid.len()).unwrap_or(0);
        let drop: Vec<usize> = self
            .saved
            .iter()
            .copied()
            // Keep: the previous epoch, the best so far, and anything not yet judged.
            .filter(|&e| Some(e) != best && e + 1 < epoch && e <= known.min(epoch - 1))
            .collect();
        for e in drop {
            self.saved.remove(&e);
            actions.push(CheckpointingAction::Delete(e));
        }
        self.saved.insert(epoch);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inner;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};

    type Rec = <Linear<Inner> as Module<Inner>>::Record;

    fn save_epoch(run_dir: &Path, epoch: usize, linear: &Linear<Inner>) {
        let recorder = AtomicRecorder::default();
        for part in PARTS {
            Recorder::<Inner>::record(
                &recorder,
                linear.clone().into_record(),
                part_path(run_dir, part, epoch),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_kill_during_a_write_leaves_the_old_file_and_resume_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(CHECKPOINT_DIR)).unwrap();
        let device = crate::backend::device();
        let linear = LinearConfig::new(3, 2).init::<Inner>(&device);
        save_epoch(dir.path(), 1, &linear);
        save_epoch(dir.path(), 2, &linear);
        let resume = |wanted| resume_epoch::<Inner, Rec, Rec, Rec>(dir.path(), wanted, &device);
        assert_eq!(resume(None).unwrap(), 2);

        // A kill between "write the temporary file" and "rename": the old file stays whole and
        // the partial one is not a checkpoint.
        let model2 = part_path(dir.path(), "model", 2).with_extension("mpk");
        let before = std::fs::read(&model2).unwrap();
        std::fs::write(
            model2.with_extension("mpk.partial"),
            &before[..before.len() / 2],
        )
        .unwrap();
        assert_eq!(std::fs::read(&model2).unwrap(), before);
        assert_eq!(resume(None).unwrap(), 2);

        // A damaged newest file (as a crash inside burn's own writer left): a clear error that
        // names it and offers the whole older epoch.
        std::fs::write(&model2, &before[..before.len() / 2]).unwrap();
        let err = resume(None).unwrap_err().to_string();
        assert!(
            err.contains("model-2.mpk") && err.contains("damaged"),
            "{err}"
        );
        assert!(err.contains("--resume-from 1"), "{err}");
        assert_eq!(resume(Some(1)).unwrap(), 1);
        // Garbage and a missing part are reported the same way.
        std::fs::write(&model2, b"not a checkpoint").unwrap();
        assert!(resume(None)
            .unwrap_err()
            .to_string()
            .contains("model-2.mpk"));
        std::fs::remove_file(part_path(dir.path(), "optim", 1).with_extension("mpk")).unwrap();
        let err = resume(None).unwrap_err().to_string();
        assert!(err.contains("no older checkpoint is whole"), "{err}");
        assert!(resume(Some(1))
            .unwrap_err()
            .to_string()
            .contains("optim-1.mpk is missing"));
        assert!(resume(Some(7))
            .unwrap_err()
            .to_string()
            .contains("no checkpoint of epoch 7"));
    }

    #[test]
    fn write_errors_are_recorded_not_swallowed() {
        let recorder = AtomicRecorder::default();
        let device = crate::backend::device();
        let linear = LinearConfig::new(3, 2).init::<Inner>(&device);
        // A directory that does not exist stands in for a full or read-only disk.
        let missing = Path::new("/nonexistent-manifold-lora-dir/model-1");
        assert!(
            Recorder::<Inner>::record(&recorder, linear.into_record(), missing.into()).is_err()
        );
        assert!(recorder.failure().unwrap().contains("model-1.mpk"));
    }

    #[test]
    fn the_gate_waits_for_every_announced_record_written_or_failed() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = AtomicRecorder::default();
        let mut strategy = KeepLastAndBest {
            saved: BTreeSet::new(),
            history: Arc::new(Mutex::new(History::default())),
            metric: "accuracy".into(),
            gate: recorder.gate(),
        };
        let gate = recorder.gate();
        assert!(gate.wait_for(Duration::ZERO), "nothing announced: open");
        assert_eq!(
            strategy.announced_actions(1),
            vec![CheckpointingAction::Save]
        );
        assert!(
            !gate.wait_for(Duration::from_millis(20)),
            "three records announced, none seen"
        );

        let device = crate::backend::device();
        let linear = LinearConfig::new(3, 2).init::<Inner>(&device);
        let writer = {
            let recorder = recorder.clone();
            let linear = linear.clone();
            let run_dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for part in ["model", "optim"] {
                    let path = part_path(&run_dir, part, 1);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    Recorder::<Inner>::record(&recorder, linear.clone().into_record(), path)
                        .unwrap();
                }
            })
        };
        writer.join().unwrap();
        assert!(
            !gate.wait_for(Duration::from_millis(20)),
            "one record still to come"
        );
        // A failed write counts too: its tensors were read, and the step must not wait forever.
        let missing = Path::new("/nonexistent-manifold-lora-dir/scheduler-1");
        assert!(
            Recorder::<Inner>::record(&recorder, linear.into_record(), missing.into()).is_err()
        );
        assert!(gate.wait_for(Duration::ZERO));

        // A waiter blocked on the gate is released by the last record, from another thread.
        gate.expect(1);
        let release = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                gate.done();
            })
        };
        assert!(gate.wait_for(Duration::from_secs(30)));
        release.join().unwrap();
        // Records nobody announced do not open the gate for the next checkpoint in advance.
        gate.done();
        gate.expect(1);
        assert!(!gate.wait_for(Duration::from_millis(20)));
    }

    #[test]
    fn discard_from_removes_that_epoch_and_later_ones_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(CHECKPOINT_DIR)).unwrap();
        for epoch in 1..=3 {
            for part in PARTS {
                let path = part_path(dir.path(), part, epoch).with_extension("mpk");
                std::fs::write(path, b"x").unwrap();
            }
        }
        assert_eq!(discard_from(dir.path(), 2).unwrap(), vec![2, 3]);
        assert_eq!(saved_epochs(dir.path()), BTreeSet::from([1]));
        for part in PARTS {
            assert!(part_path(dir.path(), part, 1)
                .with_extension("mpk")
                .is_file());
            assert!(!part_path(dir.path(), part, 2)
                .with_extension("mpk")
                .exists());
        }
        assert!(discard_from(dir.path(), 5).unwrap().is_empty());
    }

    #[test]
    fn the_previous_epoch_is_kept_until_the_next_is_written() {
        let history = Arc::new(Mutex::new(History::default()));
        let mut strategy = KeepLastAndBest {
            saved: BTreeSet::new(),
            history: history.clone(),
            metric: "accuracy".into(),
            gate: WriteGate::default(),
        };
        let valid = |acc: f64| {
            let mut h = history.lock().unwrap();
            h.valid
                .push([("accuracy".to_string(), acc)].into_iter().collect());
        };
        assert_eq!(strategy.actions(1), vec![CheckpointingAction::Save]);
        valid(0.9);
        assert_eq!(strategy.actions(2), vec![CheckpointingAction::Save]);
        valid(0.5);
        // Epoch 1 is the best: kept. Epoch 2 is the previous one: kept.
        assert_eq!(strategy.actions(3), vec![CheckpointingAction::Save]);
        valid(0.6);
        // Epoch 2 is neither best nor previous once epoch 4 is written.
        assert_eq!(
            strategy.actions(4),
            vec![CheckpointingAction::Save, CheckpointingAction::Delete(2)]
        );
    }
}
