//! Owning a run directory: one run at a time, and nothing left behind by a start that failed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Holds `run_dir/.lock` (with this process's id) until dropped, so a second run started on the
/// same directory refuses instead of interleaving its writes with the first. A lock left by a
/// process that no longer exists (a kill) is taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_dir`.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    if let Ok(pid) = owner.trim().parse::<u32>() {
                        if process_alive(pid) {
                            return Err(Error::Other(format!(
                                "{} is in use by another run (process {pid}); wait for it or \
                                 choose another --run-name",
                                run_dir.display()
                            )));
                        }
                    }
                    // Stale: its process is gone.
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Other(format!("could not take {}", path.display())))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists (Linux /proc; elsewhere every lock counts as held).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes a run directory this run created unless [`NewRunDir::keep`] is called: a start that
/// fails (bad data, bad model) leaves nothing to confuse the next attempt.
#[derive(Debug)]
pub struct NewRunDir {
    path: Option<PathBuf>,
}

impl NewRunDir {
    /// Creates `run_dir` (and parents); it is removed again on drop if this call created it.
    pub fn create(run_dir: &Path) -> Result<Self> {
        let created = !run_dir.exists();
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        Ok(Self {
            path: created.then(|| run_dir.to_path_buf()),
        })
    }

    /// The run started: keep the directory.
    pub fn keep(&mut self) {
        self.path = None;
    }
}

impl Drop for NewRunDir {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another run"), "{err}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let _again = RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // No process has id u32::MAX − 1 (Linux pids stay below 2²²).
        std::fs::write(dir.path().join(LOCK_FILE), format!("{}", u32::MAX - 1)).unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let owner = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(owner, std::process::id().to_string());
    }

    #[test]
    fn a_failed_start_removes_only_a_directory_it_created() {
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("runs/new");
        drop(NewRunDir::create(&fresh).unwrap());
        assert!(!fresh.exists());
        let mut kept = NewRunDir::create(&fresh).unwrap();
        kept.keep();
        drop(kept);
        assert!(fresh.is_dir());
        std::fs::write(fresh.join("metrics.jsonl"), "").unwrap();
        drop(NewRunDir::create(&fresh).unwrap());
        assert!(
            fresh.join("metrics.jsonl").exists(),
            "an existing directory is never removed"
        );
    }
}
