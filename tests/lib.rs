//! Integration tests: the built binary, real commands, a temp cache directory.

mod clock_steps;
mod concurrency;
mod disk_full;
mod display;
mod edges;
mod faults;
mod fleet;
mod fleet_manage;
mod gc_events;
mod generated;
#[cfg(target_os = "linux")]
mod guards;
mod harness;
mod hints;
mod hostile;
mod layout;
mod manage;
mod model;
mod module_cycles;
mod prompts;
mod recipes;
mod redis_client;
mod redis_cluster;
mod redis_harness;
mod redis_tls;
mod run;
mod store_proxy;
mod tiers_model;
