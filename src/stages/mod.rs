//! One module per pipeline stage. Each reads like the corresponding step of the method.

pub mod case2code;
pub mod consensus;
pub mod export;
pub mod extract;
pub mod fix;
pub mod gen_tests;
pub mod problems;
pub mod refine;
pub mod revise;
pub mod run;
pub mod sandbox_run;
pub mod stats;
