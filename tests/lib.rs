//! Integration tests: the built binary, real commands, a temp cache directory.

mod concurrency;
mod display;
mod edges;
mod faults;
mod fleet;
mod fleet_manage;
mod gc_events;
mod generated;
mod guards;
mod harness;
mod layout;
mod manage;
mod model;
mod prompts;
mod recipes;
mod redis_client;
mod redis_cluster;
mod redis_harness;
mod redis_tls;
mod run;
