//! A memory cgroup per worker: the limit that rlimits cannot give. `RLIMIT_AS` is per
//! process and does not see memfd files, System V or POSIX shared memory, tmpfs pages or a
//! check's forked children; a cgroup charges all of them to the worker, so a check can use
//! at most `memory_mb` on top of the warm worker, whatever it allocates them with. The
//! kernel's OOM killer enforces it inside the cgroup only.
//!
//! cgroup v2 (a `memory` controller in our own cgroup's `cgroup.controllers`) or v1 (a
//! mounted `memory` hierarchy) — whichever is there and writable; without either, the
//! sandbox runs with rlimits only and says so.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where new memory cgroups can be made: our own cgroup's directory.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    base: PathBuf,
    version: Version,
}

/// One worker's cgroup; removed when dropped (after its processes are gone).
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    procs: CString,
}

impl Hierarchy {
    /// The writable memory hierarchy of this process, if any.
    pub fn find() -> Option<Hierarchy> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mounts: Vec<(String, String, String)> = mountinfo
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let point = left.split_whitespace().nth(4)?.to_string();
                let mut r = right.split_whitespace();
                let fstype = r.next()?.to_string();
                let options = r.nth(1).unwrap_or("").to_string();
                Some((point, fstype, options))
            })
            .collect();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let path = path.trim_start_matches('/');
            let candidate = if controllers.split(',').any(|c| c == "memory") {
                mounts
                    .iter()
                    .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == "memory"))
                    .map(|(p, _, _)| (Path::new(p).join(path), Version::V1))
            } else if controllers.is_empty() {
                mounts.iter().find(|(_, t, _)| t == "cgroup2").map(|(p, _, _)| (Path::new(p).join(path), Version::V2)).filter(|(dir, _)| {
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
                })
            } else {
                None
            };
            if let Some((base, version)) = candidate {
                if writable(&base) {
                    return Some(Hierarchy { base, version });
                }
            }
        }
        None
    }

    /// Remove cgroups left by unitcoder processes that are gone (a killed run, a test
    /// binary whose sandbox was never dropped); only empty ones can be removed.
    pub fn remove_stale(&self) {
        for entry in std::fs::read_dir(&self.base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("unitcoder-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }

    /// A fresh cgroup for one worker.
    pub fn create(&self, label: &str) -> Result<MemoryCgroup> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("unitcoder-{}-{label}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let dir = self.base.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create memory cgroup {}", dir.display()))?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).context("cgroup path")?;
        Ok(MemoryCgroup { dir, version: self.version, procs })
    }

    pub fn describe(&self) -> String {
        format!("memory cgroup {} ({})", self.base.display(), if self.version == Version::V1 { "v1" } else { "v2" })
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("unitcoder-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

/// What the `pre_exec` hook needs: the `cgroup.procs` path, owned (moved into the hook).
pub struct EnterHandle {
    procs: CString,
}

impl MemoryCgroup {
    pub fn enter_handle(&self) -> EnterHandle {
        EnterHandle { procs: self.procs.clone() }
    }
}

impl EnterHandle {
    /// For `pre_exec`: move the calling (just forked) process into this cgroup. Only
    /// async-signal-safe calls: no allocation between fork and exec.
    pub fn enter_self(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 12];
        // SAFETY: getpid, open, write and close are async-signal-safe; `procs` is a valid
        // NUL-terminated path owned by self.
        unsafe {
            let mut pid = libc::getpid() as u32;
            let mut i = buf.len();
            loop {
                i -= 1;
                buf[i] = b'0' + (pid % 10) as u8;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
            libc::close(fd);
            if written < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl MemoryCgroup {
    /// Memory charged now (the warm worker), bytes.
    pub fn usage(&self) -> Result<u64> {
        let file = if self.version == Version::V1 { "memory.usage_in_bytes" } else { "memory.current" };
        read_number(&self.dir.join(file))
    }

    pub fn set_limit(&self, bytes: u64) -> Result<()> {
        let file = if self.version == Version::V1 { "memory.limit_in_bytes" } else { "memory.max" };
        std::fs::write(self.dir.join(file), bytes.to_string()).with_context(|| format!("cannot set {file}"))?;
        if self.version == Version::V2 {
            let _ = std::fs::write(self.dir.join("memory.swap.max"), "0");
        }
        Ok(())
    }

    /// OOM kills in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.version == Version::V1 { ("memory.oom_control", "oom_kill") } else { ("memory.events", "oom_kill") };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let mut parts = l.split_whitespace();
                    (parts.next() == Some(key)).then(|| parts.next().and_then(|v| v.parse().ok()).unwrap_or(0))
                })
            })
            .unwrap_or(0)
    }
}

fn read_number(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim().parse().with_context(|| format!("{}: not a number", path.display()))
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The worker was killed just before; its processes may take a moment to leave.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::debug!("memory cgroup {} not removed", self.dir.display());
    }
}
