//! Integration tests: the built binary, real commands, a temp cache directory.

mod concurrency;
mod faults;
mod harness;
mod run;
