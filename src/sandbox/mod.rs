//! The sandbox: runs a program plus its `unittest` module in an isolated, resource-limited
//! Python child and returns a verdict that the tested code cannot fake.
//!
//! - `isolation`: which mechanism (bubblewrap, unshare, none) is available and how to
//!   launch a worker inside it;
//! - `pool`: warm fork-server workers (one Python process each, heavy modules pre-imported)
//!   that fork a fresh child per check;
//! - `harness.py`: the embedded Python side (fork server + test runner);
//! - `testcount`: counting `test*` methods with ruff, independently of the harness;
//! - `verdict`: turning what the worker saw into a status;
//! - `adequacy`: how strong the tests of a pass are (reruns, coverage, mutants);
//! - `asynchronous`: checks and call jobs from async steps; `args`: the shared flags.

pub mod adequacy;
pub mod args;
pub mod asynchronous;
pub mod calls;
pub mod cgroup;
pub mod isolation;
pub mod policy;
pub mod pool;
pub mod testcount;
pub mod verdict;

pub use adequacy::{Adequacy, AdequacySettings};
pub use args::{AdequacyArgs, SandboxArgs};
pub use asynchronous::blocking;
pub use isolation::IsolationChoice;
pub use pool::{Sandbox, SandboxSettings};
pub use verdict::{Failure, Status, Verdict};

/// The embedded harness source.
pub const HARNESS: &str = include_str!("harness.py");
