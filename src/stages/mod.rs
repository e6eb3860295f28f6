//! One module per pipeline stage. Each reads like the corresponding step of the method.

pub mod extract;
pub mod sandbox_run;
pub mod gen_tests;
