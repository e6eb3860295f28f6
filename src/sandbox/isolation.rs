//! Which isolation mechanism to use and how to launch a worker inside it.
//!
//! - `bwrap` (bubblewrap): new network, PID, IPC and UTS namespaces; read-only root; fresh
//!   tmpfs on /tmp, /var/tmp, /dev/shm (size-capped); /root and /home hidden (the Python
//!   installation is bound back read-only); the worker is PID 1 of its namespace, so tested
//!   code cannot signal it; run as root, checks drop to uid 65534.
//! - `unshare` (util-linux, root only): the same namespaces; the worker mounts the tmpfs
//!   and remounts everything else read-only itself.
//! - `none`: rlimits, a session per check, and killing every descendant; tested code could
//!   reach the network and write where the user can. Recorded as such in every verdict.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IsolationChoice {
    /// The strongest mechanism that works here.
    #[default]
    Auto,
    Bwrap,
    Unshare,
    None,
}

/// The interpreter, as it really is (pyenv shims and venv links resolved).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PythonInfo {
    pub executable: PathBuf,
    pub prefix: PathBuf,
    pub base_prefix: PathBuf,
    pub version: String,
}

/// Ask the interpreter where it lives.
pub fn probe_python(python: &Path) -> Result<PythonInfo> {
    let out = Command::new(python)
        .args(["-I", "-c", "import sys, os, json; print(json.dumps({'executable': os.path.realpath(sys.executable), 'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'version': sys.version.split()[0]}))"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run Python interpreter {}", python.display()))?;
    if !out.status.success() {
        bail!("Python interpreter {} failed: {}", python.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let mut info: PythonInfo = serde_json::from_str(line).with_context(|| format!("unexpected answer from {}: {text}", python.display()))?;
    // Call a venv's interpreter through its venv path so site-packages is found.
    let venv_python = info.prefix.join("bin").join("python");
    if info.prefix != info.base_prefix && venv_python.exists() {
        info.executable = venv_python;
    }
    Ok(info)
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kind: IsolationChoice,
    /// Wrapper program and its arguments; the Python command line follows.
    pub wrapper: Vec<OsString>,
    pub python: PathBuf,
    /// Human-readable description of what is in effect, recorded in every verdict.
    pub description: String,
    /// /tmp, /var/tmp, /dev/shm are private to the worker (wiped after each check).
    pub private_tmp: bool,
    /// The worker must set up its own mounts (unshare mode).
    pub mount_setup: bool,
    /// Uid/gid the check child drops to.
    pub drop_to: Option<(u32, u32)>,
    /// Where per-check temp dirs are made (inside the worker's view of the filesystem).
    pub workroot: PathBuf,
    /// Interpreter paths that must stay visible when the worker mounts its own tmpfs.
    pub keep_paths: Vec<PathBuf>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Can uid 65534 reach `path` (every ancestor searchable by others)?
fn world_reachable(path: &Path) -> bool {
    let mut p = path.to_path_buf();
    loop {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o001 == 0 => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
        if !p.pop() {
            return true;
        }
    }
}

/// The harness has a system-call table for this architecture (see `harness.py`).
pub fn seccomp_supported() -> bool {
    matches!(std::env::consts::ARCH, "x86_64" | "aarch64")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

/// The paths of the interpreter that must be visible inside the sandbox.
fn python_paths(info: &PythonInfo) -> Vec<PathBuf> {
    let mut v = vec![info.prefix.clone(), info.base_prefix.clone()];
    if let Ok(real) = std::fs::canonicalize(&info.executable) {
        if let Some(dir) = real.parent().and_then(Path::parent) {
            v.push(dir.to_path_buf());
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Directories the sandbox replaces with empty tmpfs; an interpreter living under one of
/// them is bound back read-only.
const MASKED: [&str; 5] = ["/tmp", "/var/tmp", "/dev/shm", "/root", "/home"];

/// The host directories a check sees (read-only); everything else is absent, except the
/// interpreter's own directories.
pub const SYSTEM_DIRS: [&str; 8] = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Private tmpfs mounts: the interpreter's ancestors below them need no `--dir`.
fn is_tmpfs_root(p: &Path) -> bool {
    ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|t| p == Path::new(t))
}

fn bwrap_launch(info: &PythonInfo, tmpfs_mb: u64) -> Option<Launch> {
    let bwrap = which("bwrap")?;
    let root = is_root();
    let mut a: Vec<OsString> = vec![bwrap.into()];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(OsString::from));
    push(&["--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--as-pid-1", "--new-session"]);
    // A minimal filesystem view: the system directories read-only, the interpreter and its
    // libraries, private size-capped temp dirs — and nothing else of the host (no /home,
    // /root, /run and its sockets, /srv, /opt, /mnt, work directories).
    push(&["--dev", "/dev", "--proc", "/proc"]);
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            Ok(target) => {
                let t = target.to_string_lossy().into_owned();
                push(&["--symlink", &t, dir]);
            }
            Err(_) if path.is_dir() => push(&["--ro-bind", dir, dir]),
            Err(_) => {}
        }
    }
    push(&["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]);
    let size = (tmpfs_mb * 1024 * 1024).to_string();
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        push(&["--size", &size, "--perms", "1777", "--tmpfs", dir]);
    }
    // The interpreter wherever it lives; directories bwrap creates on the way are not
    // searchable by other users unless we say so.
    let mut made: Vec<PathBuf> = Vec::new();
    for p in python_paths(info) {
        if SYSTEM_DIRS.iter().any(|d| p.starts_with(d)) && !MASKED.iter().any(|m| p.starts_with(m)) {
            continue;
        }
        for ancestor in p.ancestors().collect::<Vec<_>>().into_iter().rev() {
            let depth = ancestor.components().count();
            if depth > 1 && ancestor != p && !made.iter().any(|m| m == ancestor) && !is_tmpfs_root(ancestor) {
                made.push(ancestor.to_path_buf());
                let s = ancestor.to_string_lossy().into_owned();
                push(&["--perms", "0755", "--dir", &s]);
            }
        }
        let s = p.to_string_lossy().into_owned();
        push(&["--ro-bind", &s, &s]);
    }
    push(&["--clearenv", "--chdir", "/tmp"]);
    if root {
        push(&["--cap-drop", "ALL"]);
        for cap in ["CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"] {
            push(&["--cap-add", cap]);
        }
    }
    a.push("--".into());
    let drop_to = root.then_some((65534, 65534));
    let description = format!(
        "bwrap: net,pid,ipc,uts namespaces; minimal read-only filesystem (system dirs and the interpreter; no homes, /run, /opt, /srv, work dirs); private /tmp ({tmpfs_mb} MiB); {}",
        if root { "checks run as uid 65534" } else { "checks run as the invoking user in a user namespace" }
    );
    Some(Launch {
        kind: IsolationChoice::Bwrap,
        wrapper: a,
        python: info.executable.clone(),
        description,
        private_tmp: true,
        mount_setup: false,
        drop_to,
        workroot: "/tmp".into(),
        // Bound read-only by bwrap: the harness must not take them for a check's leftovers
        // (an interpreter under /tmp would make every check replace its worker).
        keep_paths: python_paths(info),
    })
}

fn unshare_launch(info: &PythonInfo) -> Option<Launch> {
    if !is_root() {
        return None;
    }
    let unshare = which("unshare")?;
    let wrapper = ["--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child", "--mount-proc", "--propagation", "private", "--"]
        .iter()
        .map(OsString::from);
    // The interpreter is bound back onto the tmpfs that hides the rest of the host, with
    // searchable directories on the way, so checks can always drop to their own uid.
    Some(Launch {
        kind: IsolationChoice::Unshare,
        wrapper: std::iter::once(unshare.into_os_string()).chain(wrapper).collect(),
        python: info.executable.clone(),
        description: "unshare: net,pid,ipc,uts,mount namespaces; minimal read-only filesystem (system dirs and the interpreter); private /tmp; checks run as their own uid".into(),
        private_tmp: true,
        mount_setup: true,
        drop_to: Some((65534, 65534)),
        workroot: "/tmp".into(),
        keep_paths: python_paths(info),
    })
}

/// `none`: no namespaces. As root, checks must drop to their own uid, which needs an
/// interpreter other users can read; without one the mode is refused rather than run
/// checks as uid 0.
fn none_launch(info: &PythonInfo) -> std::result::Result<Launch, String> {
    let root = is_root();
    let reachable = python_paths(info).iter().all(|p| world_reachable(p));
    if root && !reachable {
        return Err(format!(
            "none: as root the checks would run as uid 0, because the interpreter ({}) is not readable by other users; use bwrap or unshare, or an interpreter outside /root",
            info.executable.display()
        ));
    }
    Ok(Launch {
        kind: IsolationChoice::None,
        wrapper: Vec::new(),
        python: info.executable.clone(),
        description: format!(
            "none: rlimits and process cleanup only — network and the filesystem are reachable{}",
            if root { "; checks run as their own uid" } else { "" }
        ),
        private_tmp: false,
        mount_setup: false,
        drop_to: root.then_some((65534, 65534)),
        workroot: std::env::temp_dir(),
        keep_paths: Vec::new(),
    })
}

/// Does a trial worker start and run Python inside this launch?
pub fn trial(launch: &Launch) -> Result<()> {
    let mut cmd = command(launch);
    cmd.args(["-I", "-c", "import os; print('ok', os.getpid())"]).stdin(Stdio::null());
    let out = cmd.output().with_context(|| format!("cannot start {:?}", launch.kind))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.starts_with("ok") {
        bail!("{:?} does not work here: {}", launch.kind, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The command that starts the interpreter inside the isolation (arguments to Python follow).
pub fn command(launch: &Launch) -> Command {
    let mut cmd = match launch.wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&launch.python);
            c
        }
        None => Command::new(&launch.python),
    };
    cmd.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
    cmd
}

/// Pick the isolation: the requested one (an error if it does not work), or for `auto` the
/// strongest that passes a trial.
pub fn plan(choice: IsolationChoice, info: &PythonInfo, tmpfs_mb: u64) -> Result<Launch> {
    let none = || none_launch(info);
    let candidates: Vec<std::result::Result<Launch, String>> = match choice {
        IsolationChoice::Bwrap => vec![bwrap_launch(info, tmpfs_mb).ok_or_else(|| "bwrap: not installed".to_string())],
        IsolationChoice::Unshare => vec![unshare_launch(info).ok_or_else(|| "unshare: needs root and util-linux unshare".to_string())],
        IsolationChoice::None => vec![none()],
        IsolationChoice::Auto => {
            let mut v: Vec<std::result::Result<Launch, String>> =
                [bwrap_launch(info, tmpfs_mb), unshare_launch(info)].into_iter().flatten().map(Ok).collect();
            v.push(none());
            v
        }
    };
    let mut errors = Vec::new();
    for launch in candidates {
        let launch = match launch {
            Ok(l) => l,
            Err(why) => {
                errors.push(why);
                continue;
            }
        };
        match trial(&launch) {
            Ok(()) => {
                if launch.kind == IsolationChoice::None {
                    tracing::warn!("sandbox isolation: {} ({})", launch.description, errors.join("; "));
                }
                return Ok(launch);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!("isolation {choice:?} is not available here: {} (see `unitcoder doctor`)", errors.join("; "))
}

/// One line per mechanism: does it work here, and if not, what would fix it.
pub fn report(info: &PythonInfo) -> Vec<(String, bool, String)> {
    let mut rows = Vec::new();
    let root = is_root();
    match bwrap_launch(info, 64) {
        None => rows.push(("bubblewrap".into(), false, "not installed: apt-get install bubblewrap (or your distribution's package)".into())),
        Some(l) => match trial(&l) {
            Ok(()) => rows.push(("bubblewrap".into(), true, l.description)),
            Err(e) => rows.push((
                "bubblewrap".into(),
                false,
                format!("{e:#}; unprivileged use needs user namespaces (sysctl kernel.unprivileged_userns_clone=1)"),
            )),
        },
    }
    match unshare_launch(info) {
        None if !root => rows.push(("unshare".into(), false, "needs root (run as root, or use bubblewrap)".into())),
        None => rows.push(("unshare".into(), false, "unshare (util-linux) not found".into())),
        Some(l) => match trial(&l) {
            Ok(()) => rows.push(("unshare".into(), true, l.description)),
            Err(e) => rows.push(("unshare".into(), false, format!("{e:#}"))),
        },
    }
    match none_launch(info) {
        Ok(l) => rows.push(("none".into(), true, l.description)),
        Err(why) => rows.push(("none".into(), false, why)),
    }
    let userns = Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    rows.push((
        "user namespaces".into(),
        userns,
        if userns { "available".into() } else { "not available: bubblewrap needs them when not run as root".into() },
    ));
    rows.push((
        "uid drop for checks".into(),
        root,
        if root {
            "running as root: checks drop to uid 65534 (RLIMIT_NPROC binds)".into()
        } else {
            "not root: checks run as your uid; RLIMIT_NPROC binds per user".into()
        },
    ));
    rows.push((
        "seccomp filter".into(),
        seccomp_supported(),
        if seccomp_supported() {
            format!(
                "{}: keyrings, ptrace, process_vm_*, mounts, new namespaces, bpf, perf, module/kexec loading denied in every check",
                std::env::consts::ARCH
            )
        } else {
            format!("no system-call table for {}: checks run without a filter", std::env::consts::ARCH)
        },
    ));
    let cg2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    rows.push((
        "cgroup v2".into(),
        cg2,
        if cg2 {
            "present (not needed: PID namespaces bound process trees)".into()
        } else {
            "absent (not needed: PID namespaces bound process trees)".into()
        },
    ));
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let landlock = lsm.contains("landlock");
    rows.push((
        "landlock".into(),
        landlock,
        if landlock { "enabled in the kernel (not used yet: mount namespaces give read-only roots)".into() } else { "not enabled (not used)".into() },
    ));
    rows
}
