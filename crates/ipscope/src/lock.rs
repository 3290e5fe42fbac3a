//! The output-directory lock: one run writes into an OUT at a time.
//!
//! `OUT/.ipscope.lock` holds the pid and host of the run that owns the directory. A second
//! run is refused while that process lives; a lock left by a process that no longer exists
//! on this host (killed, crashed, power cut) is stale and taken over.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File name of the lock inside the output directory.
pub const LOCK_FILE: &str = ".ipscope.lock";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` exists on this machine (`None` when that cannot be told).
fn process_alive(pid: u32) -> Option<bool> {
    if Path::new("/proc/self").exists() {
        Some(Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
    }
}

impl OutputLock {
    /// Takes the lock of `out_dir` (which must exist).
    pub fn acquire(out_dir: &Path) -> Result<OutputLock> {
        let path = out_dir.join(LOCK_FILE);
        let me = format!(
            "pid={}\nhost={}\nstarted={}\n",
            std::process::id(),
            host_name(),
            chrono::Utc::now().to_rfc3339()
        );
        for _ in 0..3 {
            match create_with(&path, me.as_bytes()) {
                Ok(()) => return Ok(OutputLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let field = |k: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(k))
                            .map(str::trim)
                            .unwrap_or("")
                            .to_string()
                    };
                    let (pid, host) = (field("pid="), field("host="));
                    let same_host = host == host_name();
                    let stale = (same_host
                        && pid
                            .parse::<u32>()
                            .ok()
                            .and_then(process_alive)
                            .is_some_and(|alive| !alive))
                        || (text.trim().is_empty() && older_than(&path, EMPTY_LOCK_GRACE));
                    if !stale {
                        return Err(Error::Invalid(format!(
                            "{}: another ipscope run (pid {pid} on host {host}) is writing into this directory; \
                             wait for it, or delete {} if that run no longer exists",
                            out_dir.display(),
                            path.display()
                        )));
                    }
                    // The owner is gone: take the lock over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Invalid(format!(
            "{}: could not take the output lock",
            path.display()
        )))
    }
}

/// How long an empty lock file may be a run's lock still being written (where the lock is
/// made by creating the file and then writing it, below); older, its run is gone.
const EMPTY_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `path` was last modified more than `age` ago.
fn older_than(path: &Path, age: std::time::Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

/// Creates `path` holding `bytes`, failing with `AlreadyExists` if it exists. The content is
/// written to a file of this process first and linked to `path` whole, so a run killed at
/// any instant never leaves a lock without its owner (an empty lock would refuse every
/// later run until deleted by hand). Where the file system has no hard links the file is
/// created and then written; an empty lock found later is judged by its age.
fn create_with(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_file_name(format!("{LOCK_FILE}.{}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()));
    let linked = written.and_then(|_| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
            f.write_all(bytes).and_then(|_| f.sync_all())
        }
        other => other,
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_path(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    #[test]
    fn a_lock_holds_its_owner_and_leaves_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = OutputLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(lock_path(dir.path())).unwrap();
        assert!(
            text.contains(&format!("pid={}\n", std::process::id())),
            "{text}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(LOCK_FILE)]);
        let second = OutputLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(second.contains("another ipscope run"), "{second}");
        drop(lock);
        assert!(!lock_path(dir.path()).exists());
    }

    #[test]
    fn an_empty_lock_is_taken_over_once_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path());
        let f = std::fs::File::create(&path).unwrap();
        // A fresh empty lock may be a run that has not written its lock yet.
        let e = OutputLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another ipscope run"), "{e}");
        // Left empty for a minute: its run was killed before writing it.
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        drop(f);
        let lock = OutputLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("pid={}\n", std::process::id())),
            "{text}"
        );
        drop(lock);
    }
}
