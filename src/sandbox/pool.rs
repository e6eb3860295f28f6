//! Warm workers: each is one Python fork server (the harness) inside the isolation, with
//! heavy modules imported once. A check is a fork of it, so a pandas test costs
//! milliseconds, not the half-second import. A worker that dies (or is killed by tested
//! code) is replaced; its check is reported as `killed`, never as a pass.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cgroup::{Hierarchy, MemoryCgroup};
use super::isolation::{self, IsolationChoice, Launch, PythonInfo};
use super::testcount::test_plan;
use super::verdict::{judge, Status, Verdict};
use super::HARNESS;

/// Sandbox settings (config section `[sandbox]`; flags override).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Interpreter for checks; empty = `$UNITCODER_PYTHON`, `.venv-sandbox/bin/python`, `python3`.
    pub python: String,
    pub isolation: IsolationChoice,
    /// Parallel workers; 0 = number of cores.
    pub workers: usize,
    /// Wall-clock limit per check, seconds.
    pub timeout: f64,
    /// Memory a check may allocate on top of the warm worker's address space, MiB.
    pub memory_mb: u64,
    /// Largest file a check may write, MiB.
    pub file_size_mb: u64,
    pub open_files: u64,
    /// Processes per check user (binds when checks drop to uid 65534 or you are not root).
    pub processes: u64,
    /// Size of the private /tmp, MiB.
    pub tmpfs_mb: u64,
    /// Modules each worker imports once, before forking checks (missing ones are skipped).
    pub preimport: Vec<String>,
    /// Captured output kept per check (head and tail), bytes.
    pub output_cap: usize,
    /// Traceback length kept per failure (head and tail), characters.
    pub traceback_cap: usize,
    /// Deny, in every check, the system calls no check needs (keyrings, ptrace, mounts, new
    /// namespaces, bpf, perf, module loading; see docs/sandbox.md).
    pub seccomp: bool,
    /// Limit each worker with a memory cgroup where one can be made (memfd, shared memory,
    /// tmpfs and children counted); see `sandbox::cgroup`.
    pub memory_cgroup: bool,
    /// Apply the static policy to programs and test modules before running them.
    pub policy: bool,
    /// Policy rules switched off (names in `sandbox::policy::RULES`).
    pub policy_allow: Vec<String>,
    /// The config file's directory: a `.venv-sandbox/` there is found from any cwd.
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            python: String::new(),
            isolation: IsolationChoice::Auto,
            workers: 0,
            timeout: 10.0,
            memory_mb: 1024,
            file_size_mb: 64,
            open_files: 256,
            processes: 64,
            tmpfs_mb: 256,
            preimport: ["numpy", "pandas", "matplotlib", "scipy", "sklearn"].map(String::from).to_vec(),
            output_cap: 8192,
            traceback_cap: 4000,
            seccomp: true,
            memory_cgroup: true,
            policy: true,
            policy_allow: Vec::new(),
            config_dir: None,
        }
    }
}

/// The per-user pointer to the sandbox environment that `scripts/setup-sandbox.sh` writes
/// (a text file holding the interpreter's absolute path: a symlink would lose the venv).
pub fn user_python_pointer() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("unitcoder/sandbox-python"))
}

impl SandboxSettings {
    /// The interpreter to use, by the documented order of preference.
    pub fn resolve_python(&self) -> PathBuf {
        self.find_python().0
    }

    /// The interpreter and where it was found: `[sandbox] python` / `--python`,
    /// `$UNITCODER_PYTHON`, `.venv-sandbox/` next to the config file, in the current
    /// directory, the per-user pointer, next to the executable's checkout; else `python3`.
    pub fn find_python(&self) -> (PathBuf, &'static str) {
        if !self.python.is_empty() {
            return (PathBuf::from(&self.python), "[sandbox] python / --python");
        }
        if let Some(p) = std::env::var_os("UNITCODER_PYTHON").filter(|p| !p.is_empty()) {
            return (PathBuf::from(p), "$UNITCODER_PYTHON");
        }
        let venv = |dir: &Path| dir.join(".venv-sandbox/bin/python");
        if let Some(p) = self.config_dir.as_deref().map(venv).filter(|p| p.exists()) {
            return (p, "the config file's directory");
        }
        if let Some(p) = std::env::current_dir().ok().map(|d| venv(&d)).filter(|p| p.exists()) {
            return (p, "the current directory");
        }
        let pointed = user_python_pointer().and_then(|f| std::fs::read_to_string(f).ok()).map(|t| PathBuf::from(t.trim()));
        if let Some(p) = pointed.filter(|p| p.is_absolute() && p.exists()) {
            return (p, "the per-user pointer written by scripts/setup-sandbox.sh");
        }
        // target/{debug,release}/unitcoder in a checkout where setup-sandbox.sh ran.
        let checkout = std::env::current_exe().ok().and_then(|e| e.parent()?.parent()?.parent().map(venv));
        if let Some(p) = checkout.filter(|p| p.exists()) {
            return (p, "the checkout the executable was built in");
        }
        (PathBuf::from("python3"), "PATH (no sandbox environment found)")
    }
}

/// What a worker said when it became ready.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub python: String,
    pub preimported: Vec<String>,
    pub missing: Vec<String>,
}

struct Job {
    id: u64,
    /// The job's fields for the harness (code, tests or inputs, timeout, ...).
    fields: Value,
    /// How long the supervisor waits for the worker's answer before replacing it.
    backstop: Duration,
    reply: Sender<Value>,
}

/// A pool of warm workers. `check` may be called from many threads at once.
pub struct Sandbox {
    jobs: Option<Sender<Job>>,
    /// One queue per worker, for jobs that must run in a given worker process (flake
    /// reruns: another process has another string-hash seed).
    directed: Vec<Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub settings: SandboxSettings,
    pub launch: Launch,
    pub python: PythonInfo,
    pub worker_info: WorkerInfo,
    next_id: AtomicU64,
    /// Per caller label (a stage's name, see `asynchronous::labelled`): jobs answered and
    /// the seconds callers waited for them, queue included, for the manifests.
    pub(crate) usage: std::sync::Mutex<std::collections::BTreeMap<&'static str, (u64, f64)>>,
}

impl Sandbox {
    pub fn start(mut settings: SandboxSettings) -> Result<Sandbox> {
        if settings.workers == 0 {
            settings.workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        }
        let (requested, found_via) = settings.find_python();
        let python = isolation::probe_python(&requested)?;
        let mut launch = isolation::plan(settings.isolation, &python, settings.tmpfs_mb)?;
        if settings.seccomp && isolation::seccomp_supported() {
            launch.description.push_str("; seccomp: keyrings, ptrace, mounts, namespaces, bpf, perf denied");
        }
        let hierarchy = if settings.memory_cgroup { Hierarchy::find() } else { None };
        if let Some(h) = &hierarchy {
            h.remove_stale();
        }
        match &hierarchy {
            Some(_) => {
                launch.description.push_str(&format!("; memory cgroup per worker ({} MiB a check, memfd/shm/children counted)", settings.memory_mb))
            }
            None => launch.description.push_str("; memory: per-process rlimit only (no writable memory cgroup)"),
        }
        tracing::info!(
            "sandbox: {} workers, Python {} ({}), isolation {}",
            settings.workers,
            python.version,
            python.executable.display(),
            launch.description
        );
        let (job_tx, job_rx) = bounded::<Job>(settings.workers * 2);
        let (ready_tx, ready_rx) = bounded::<Result<WorkerInfo>>(settings.workers);
        let mut threads = Vec::new();
        let mut directed = Vec::new();
        for w in 0..settings.workers {
            let (rx, launch, settings, ready) = (job_rx.clone(), launch.clone(), settings.clone(), ready_tx.clone());
            let (own_tx, own_rx) = bounded::<Job>(2);
            directed.push(own_tx);
            let hierarchy = hierarchy.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sandbox-{w}"))
                    .spawn(move || worker_loop(w, rx, own_rx, launch, settings, hierarchy, ready))
                    .context("cannot start sandbox worker thread")?,
            );
        }
        drop(ready_tx);
        let mut worker_info = None;
        for _ in 0..settings.workers {
            match ready_rx.recv() {
                Ok(Ok(info)) => worker_info = Some(info),
                Ok(Err(e)) => bail!("sandbox worker failed to start: {e:#}"),
                Err(_) => bail!("sandbox worker thread exited during start-up"),
            }
        }
        let worker_info = worker_info.unwrap_or_default();
        if !settings.preimport.is_empty() && worker_info.preimported.is_empty() {
            tracing::warn!(
                "sandbox: {} (found via {found_via}) imports none of the pre-import list ({}): every function using them will end as missing_package. \
                 Create the environment with scripts/setup-sandbox.sh, or set [sandbox] python / --python / $UNITCODER_PYTHON",
                python.executable.display(),
                settings.preimport.join(", ")
            );
        } else if !worker_info.missing.is_empty() {
            tracing::info!("sandbox: not pre-imported (not installed?): {}", worker_info.missing.join("; "));
        }
        Ok(Sandbox {
            jobs: Some(job_tx),
            directed,
            threads,
            settings,
            launch,
            python,
            worker_info,
            next_id: AtomicU64::new(1),
            usage: Default::default(),
        })
    }

    pub fn isolation(&self) -> &str {
        &self.launch.description
    }

    /// Run `code` with its unittest module `tests`; never panics, always returns a verdict.
    pub fn check(&self, code: &str, tests: &str) -> Verdict {
        self.check_with_timeout(code, tests, self.settings.timeout)
    }

    /// The static policy's verdict on one part of a check (`code` or `tests`), if enabled.
    pub fn policy_violation(&self, source: &str, part: &str) -> Option<super::policy::Violation> {
        self.settings.policy.then(|| super::policy::check(source, part, &self.settings.policy_allow)).flatten()
    }

    /// `check`, also watching whether each test makes `entry` run: when no test does, the
    /// verdict is `rejected` (`function_not_called`), and tests that did not are listed in
    /// `uncalled_tests`.
    pub fn check_calls(&self, code: &str, tests: &str, entry: Option<&str>) -> Verdict {
        let extra = match entry {
            Some(e) if !e.is_empty() => json!({"calls": e}),
            _ => json!({}),
        };
        self.run_check(code, tests, self.settings.timeout, extra, None).0
    }

    pub fn check_with_timeout(&self, code: &str, tests: &str, timeout: f64) -> Verdict {
        self.run_check(code, tests, timeout, json!({}), None).0
    }

    /// A check with extra harness fields (`coverage`), optionally on a given worker; the
    /// verdict and the worker's raw answer.
    pub(crate) fn run_check(&self, code: &str, tests: &str, timeout: f64, extra: Value, worker: Option<usize>) -> (Verdict, Option<Value>) {
        let isolation = self.isolation();
        let pair = || self.settings.policy.then(|| super::policy::check_pair(code, tests, &self.settings.policy_allow)).flatten();
        let violation = self.policy_violation(code, "code").or_else(|| self.policy_violation(tests, "tests")).or_else(pair);
        if let Some(v) = violation {
            let mut verdict = Verdict::new(Status::Rejected, 0, isolation, format!("rejected by the static policy: {} ({})", v.rule, v.detail));
            verdict.reason = Some(v.rule.to_string());
            verdict.location = Some(v.place);
            return (verdict, None);
        }
        let plan = match test_plan(tests) {
            Ok(plan) => plan,
            Err(e) => {
                let mut v = Verdict::new(Status::Error, 0, isolation, format!("the tests do not parse: {e}"));
                v.failures.push(super::Failure { test: "tests".into(), kind: "error".into(), message: e, traceback: String::new() });
                return (v, None);
            }
        };
        if plan.possible() == 0 {
            return (Verdict::new(Status::NoTests, 0, isolation, "the test module defines no test methods"), None);
        }
        let mut fields = json!({"code": code, "tests": tests, "timeout": timeout});
        if let (Some(f), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
            f.extend(extra.clone());
        }
        match self.submit_to(fields, Duration::from_secs_f64(timeout + 15.0), worker) {
            Ok(result) => {
                let mut verdict = judge(&result, &plan, isolation, self.settings.output_cap);
                verdict.worker = result.get("worker").and_then(Value::as_u64).map(|w| w as usize);
                (verdict, Some(result))
            }
            Err(message) => (Verdict::new(Status::SandboxError, plan.required.len(), isolation, message), None),
        }
    }

    /// Send one job to the next free worker and wait for its answer.
    pub(crate) fn submit(&self, fields: Value, backstop: Duration) -> std::result::Result<Value, String> {
        self.submit_to(fields, backstop, None)
    }

    /// `submit`, to worker `worker % workers` when given.
    pub(crate) fn submit_to(&self, fields: Value, backstop: Duration, worker: Option<usize>) -> std::result::Result<Value, String> {
        let (reply_tx, reply_rx) = bounded(1);
        let job = Job { id: self.next_id.fetch_add(1, Ordering::Relaxed), fields, backstop, reply: reply_tx };
        let queue = match worker {
            Some(w) if !self.directed.is_empty() => self.directed.get(w % self.directed.len()),
            _ => self.jobs.as_ref(),
        };
        let Some(jobs) = queue else { return Err("sandbox is shut down".into()) };
        let _pending = crate::logging::gauges::hold(&crate::logging::gauges::SANDBOX_PENDING, 1);
        if jobs.send(job).is_err() {
            return Err("sandbox workers are gone".into());
        }
        reply_rx.recv().map_err(|_| "sandbox worker exited without an answer".to_string())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.jobs.take();
        self.directed.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One running harness server.
struct Server {
    child: Child,
    stdin: ChildStdin,
    frames: Receiver<Value>,
    /// Dropped after the worker is killed (fields drop after `Drop::drop`).
    cgroup: Option<MemoryCgroup>,
}

impl Server {
    fn spawn(index: usize, launch: &Launch, settings: &SandboxSettings, hierarchy: Option<&Hierarchy>) -> Result<(Server, WorkerInfo)> {
        // Each worker's checks get their own uid: RLIMIT_NPROC counts per uid across the
        // whole machine, so a fork bomb in one check must not starve another worker's, and
        // checks of different workers cannot signal each other.
        let uid = launch.drop_to.map(|_| check_uid(index));
        let config = json!({
            "preimport": settings.preimport,
            "uid": uid,
            "gid": uid,
            "mount_setup": launch.mount_setup,
            "keep_paths": launch.keep_paths,
            "system_dirs": isolation::SYSTEM_DIRS,
            "private_tmp": launch.private_tmp,
            "workroot": launch.workroot,
            "tmpfs_mb": settings.tmpfs_mb,
            "output_cap": settings.output_cap,
            "traceback_cap": settings.traceback_cap,
            "seccomp": settings.seccomp && isolation::seccomp_supported(),
            "safe_calls": crate::python::literals::SAFE_CALLS,
            "safe_names": crate::python::literals::SAFE_NAMES,
        });
        let mut cmd = isolation::command(launch);
        cmd.args(["-I", "-B", "-c", HARNESS]).arg(config.to_string());
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let cgroup = hierarchy.map(|h| h.create(&format!("w{index}"))).transpose()?;
        if let Some(cg) = &cgroup {
            let target = cg.enter_handle();
            // SAFETY: the hook only makes async-signal-safe calls (see `enter_self`).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || target.enter_self());
            }
        }
        let mut child = cmd.spawn().context("cannot start sandbox worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let mut stdout = child.stdout.take().context("worker stdout")?;
        let mut stderr = child.stderr.take().context("worker stderr")?;
        let (tx, frames) = bounded::<Value>(1);
        std::thread::spawn(move || loop {
            let mut header = [0u8; 4];
            if stdout.read_exact(&mut header).is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            if stdout.read_exact(&mut body).is_err() {
                return;
            }
            let Ok(value) = serde_json::from_slice::<Value>(&body) else { return };
            if tx.send(value).is_err() {
                return;
            }
        });
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            let text = String::from_utf8_lossy(&buf);
            for line in text.lines().filter(|l| !l.trim().is_empty()).take(50) {
                tracing::debug!("sandbox worker stderr: {line}");
            }
        });
        let mut server = Server { child, stdin, frames, cgroup };
        let ready = server.frames.recv_timeout(Duration::from_secs(300));
        match ready {
            Ok(v) if v.get("ready").and_then(Value::as_bool) == Some(true) => {
                let info: WorkerInfo = WorkerInfo {
                    python: v.get("python").and_then(Value::as_str).unwrap_or("").to_string(),
                    preimported: serde_json::from_value(v.get("preimported").cloned().unwrap_or_default()).unwrap_or_default(),
                    missing: serde_json::from_value(v.get("missing").cloned().unwrap_or_default()).unwrap_or_default(),
                };
                if let Some(cg) = &server.cgroup {
                    // The warm worker is charged already; each check may add memory_mb.
                    let limit = cg.usage()? + settings.memory_mb * 1024 * 1024;
                    cg.set_limit(limit)?;
                }
                Ok((server, info))
            }
            _ => {
                server.kill();
                bail!("sandbox worker did not become ready (is {} a working Python?)", launch.python.display())
            }
        }
    }

    fn send(&mut self, value: &Value) -> std::io::Result<()> {
        let body = serde_json::to_vec(value)?;
        self.stdin.write_all(&(body.len() as u32).to_be_bytes())?;
        self.stdin.write_all(&body)?;
        self.stdin.flush()
    }

    fn kill(&mut self) {
        // The worker leads its process group; bwrap/unshare take their namespace down with them.
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on a process group we created.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Uid for the checks of worker `index`: a high range no real account uses, distinct per
/// supervisor process and worker.
fn check_uid(index: usize) -> u32 {
    3_000_000_000 + (std::process::id() % 1_000_000) * 256 + (index as u32 % 256)
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = blake3::hash(&t.to_le_bytes()).as_bytes()[..16].try_into().unwrap_or([7u8; 16]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn worker_loop(
    index: usize,
    jobs: Receiver<Job>,
    directed: Receiver<Job>,
    launch: Launch,
    settings: SandboxSettings,
    hierarchy: Option<Hierarchy>,
    ready: Sender<Result<WorkerInfo>>,
) {
    let mut server = match Server::spawn(index, &launch, &settings, hierarchy.as_ref()) {
        Ok((s, info)) => {
            let _ = ready.send(Ok(info));
            Some(s)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(ready);
    loop {
        let job = crossbeam_channel::select! {
            recv(directed) -> job => job,
            recv(jobs) -> job => job,
        };
        let Ok(job) = job else { break };
        if server.is_none() {
            match Server::spawn(index, &launch, &settings, hierarchy.as_ref()) {
                Ok((s, _)) => server = Some(s),
                Err(e) => {
                    let _ = job.reply.send(json!({"sandbox_error": format!("cannot restart worker {index}: {e:#}")}));
                    continue;
                }
            }
        }
        let Some(s) = server.as_mut() else { continue };
        let mut frame = job.fields;
        if let Some(f) = frame.as_object_mut() {
            f.insert("id".into(), json!(job.id.to_string()));
            f.insert("nonce".into(), json!(nonce()));
            f.insert("limits".into(), json!({"memory_mb": settings.memory_mb, "fsize_mb": settings.file_size_mb, "nofile": settings.open_files, "nproc": settings.processes}));
        }
        if s.send(&frame).is_err() {
            server = None;
            let _ = job.reply.send(json!({"sandbox_error": "worker pipe closed before the check started"}));
            continue;
        }
        let oom_before = s.cgroup.as_ref().map(MemoryCgroup::oom_kills);
        // The worker enforces the timeout itself; this is the backstop if it hangs.
        let answer = s.frames.recv_timeout(job.backstop);
        // The memory cgroup's OOM killer fired during this check: it went over its limit.
        let oom = oom_before.is_some_and(|before| s.cgroup.as_ref().is_some_and(|c| c.oom_kills() > before));
        match answer {
            Ok(mut result) if result.get("id").and_then(Value::as_str) == Some(job.id.to_string().as_str()) => {
                if oom {
                    result["cgroup_oom"] = json!(true);
                    server = None; // the OOM killer may have taken part of the worker
                }
                // The worker could not clean up after this check (files, IPC objects or
                // processes stayed): a fresh worker takes the next one.
                if result.get("restart").and_then(Value::as_bool) == Some(true) {
                    tracing::debug!("sandbox worker {index}: cleanup incomplete, replacing it");
                    server = None;
                }
                result["worker"] = json!(index);
                let _ = job.reply.send(result);
            }
            Ok(_) => {
                server = None;
                let _ = job.reply.send(json!({"sandbox_error": "worker answered for another check"}));
            }
            Err(RecvTimeoutError::Timeout) => {
                server = None;
                let _ = job.reply.send(json!({"sandbox_error": "worker did not answer in time"}));
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The worker died mid-check: the tested code killed it (only possible
                // without a PID namespace) or it crashed. Never a pass.
                server = None;
                let _ = job.reply.send(
                    json!({"reports": [], "exit": {"signal": 9}, "timed_out": false, "duration_ms": 0, "output": "", "worker_died": true, "cgroup_oom": oom}),
                );
            }
        }
    }
}
