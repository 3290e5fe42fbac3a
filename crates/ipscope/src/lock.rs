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
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                    return Ok(OutputLock { path });
                }
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
                    let stale = same_host
                        && pid
                            .parse::<u32>()
                            .ok()
                            .and_then(process_alive)
                            .is_some_and(|alive| !alive);
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

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
