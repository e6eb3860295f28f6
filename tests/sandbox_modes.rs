//! The fallback isolation modes: where a mode works on this machine, the essentials hold;
//! where it does not, asking for it fails with a reason (never a silent downgrade).

mod common;

use unitcoder::sandbox::{IsolationChoice, Sandbox, SandboxSettings, Status};

const TESTS: &str = "import unittest\nclass TestCases(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";

fn start(mode: IsolationChoice) -> Option<Sandbox> {
    let settings = SandboxSettings { python: common::python(), isolation: mode, workers: 1, preimport: vec![], ..Default::default() };
    match Sandbox::start(settings) {
        Ok(sb) => Some(sb),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("not available") || msg.contains("does not work"), "unhelpful error: {msg}");
            eprintln!("{mode:?} not available here: {msg}");
            None
        }
    }
}

fn leftover(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(marker)).unwrap_or(false))
}

fn essentials(sb: &Sandbox, strict_fs: bool) {
    assert_eq!(sb.check("def add(a, b):\n    return a + b\n", TESTS).status, Status::Pass);
    assert_eq!(sb.check("def add(a, b):\n    return a - b\n", TESTS).status, Status::Fail);
    let marker = format!("ucmode{}{:?}", std::process::id(), sb.launch.kind);
    // Daemons are killed whatever the mode.
    let code = format!(
        "import subprocess\ndef add(a, b):\n    subprocess.Popen(['sh', '-c', 'sleep 300 # {marker}'], start_new_session=True)\n    return a + b\n"
    );
    let v = sb.check(&code, TESTS);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!leftover(&marker), "daemon survived in {:?}", sb.launch.kind);
    // Timeouts are precise and kill the tree.
    let t0 = std::time::Instant::now();
    let v = sb.check_with_timeout("def add(a, b):\n    while True:\n        pass\n", TESTS, 1.0);
    assert_eq!(v.status, Status::Timeout);
    assert!(t0.elapsed().as_secs_f64() < 1.5);
    // Killing the worker is never a pass, and the pool recovers.
    let v = sb.check("import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 0\n", TESTS);
    assert_ne!(v.status, Status::Pass);
    assert_eq!(sb.check("def add(a, b):\n    return a + b\n", TESTS).status, Status::Pass);
    if strict_fs {
        let path = format!("/tmp/{marker}");
        let v = sb.check(&format!("def add(a, b):\n    open('{path}', 'w').write('x')\n    return a + b\n"), TESTS);
        assert_eq!(v.status, Status::Pass, "{v:?}");
        assert!(!std::path::Path::new(&path).exists(), "write escaped in {:?}", sb.launch.kind);
        let v = sb.check("import socket\ndef add(a, b):\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return a + b\n", TESTS);
        assert_eq!(v.status, Status::Fail, "network reachable in {:?}", sb.launch.kind);
    }
}

#[test]
fn unshare_mode() {
    if let Some(sb) = start(IsolationChoice::Unshare) {
        assert!(sb.isolation().starts_with("unshare:"));
        essentials(&sb, true);
    }
}

#[test]
fn bwrap_mode() {
    if let Some(sb) = start(IsolationChoice::Bwrap) {
        assert!(sb.isolation().starts_with("bwrap:"));
        essentials(&sb, true);
    }
}

#[test]
fn none_mode_is_labelled_honestly() {
    let settings =
        SandboxSettings { python: common::python(), isolation: IsolationChoice::None, workers: 1, preimport: vec![], ..Default::default() };
    let sb = match Sandbox::start(settings) {
        Ok(sb) => sb,
        Err(e) => {
            // Refused only where it would run checks as uid 0: as root, with an interpreter
            // other users cannot read.
            let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
            assert!(root && format!("{e:#}").contains("would run as uid 0"), "{e:#}");
            return;
        }
    };
    assert!(sb.isolation().starts_with("none:"));
    assert!(sb.isolation().contains("network and the filesystem are reachable"));
    essentials(&sb, false);
}

#[test]
fn an_interpreter_under_tmp_stays_visible() {
    // A checkout (and its venv) under /tmp must not vanish behind the private /tmp.
    let dir = tempfile::Builder::new().prefix("ucvenv").tempdir_in("/tmp").unwrap();
    let venv = dir.path().join("venv");
    let ok = std::process::Command::new(common::python()).args(["-m", "venv", "--without-pip", venv.to_str().unwrap()]).status().unwrap().success();
    assert!(ok, "cannot create a venv");
    let site = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .unwrap();
    let site = String::from_utf8_lossy(&site.stdout).trim().to_string();
    std::fs::write(std::path::Path::new(&site).join("ucmark_module.py"), "VALUE = 42\n").unwrap();
    for mode in [IsolationChoice::Bwrap, IsolationChoice::Unshare] {
        // Only where the mode works with the ordinary interpreter; there it must also work
        // with the one under /tmp.
        if start(mode).is_none() {
            continue;
        }
        let settings = SandboxSettings {
            python: venv.join("bin/python").display().to_string(),
            isolation: mode,
            workers: 1,
            preimport: vec![],
            ..Default::default()
        };
        let sb = Sandbox::start(settings).unwrap_or_else(|e| panic!("{mode:?} fails with an interpreter under /tmp: {e:#}"));
        let v = sb.check("import ucmark_module\ndef add(a, b):\n    return a + b + ucmark_module.VALUE - 42\n", TESTS);
        assert_eq!(v.status, Status::Pass, "{mode:?}: {v:?}");
    }
}
