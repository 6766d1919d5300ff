//! End-to-end tests of the whole suite over real gRPC and real PostgreSQL, in one test binary
//! (one link instead of one per file: faster builds, a fraction of the disk). `logs.rs` stays
//! its own binary because it installs a global tracing subscriber.

mod amazon;
mod attribution;
mod auth;
mod campaigns;
mod events;
mod faults;
mod gateway;
mod gateway_store;
mod hostile;
mod limits;
mod mint;
mod model;
mod orders;
mod outage;
mod plans;
mod replicas;
mod store_orders;
mod tls;
