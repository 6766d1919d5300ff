//! Database kit shared by every service: the connection pool, per-service schema migrations,
//! PostgreSQL discovery for local runs, the test-database factory, group commit, plain inserts
//! first (with a fallback for taken rows), prepared raw SQL, and checks of batch statements under
//! stale statistics.
//!
//! Each service owns one PostgreSQL schema (`plan`, `mint`, `gateway`, `attribution`). Its pool's
//! connections have `search_path` set to that schema, so queries and migrations name tables
//! unqualified and a service can never read another's tables by accident.

mod bootstrap;
pub mod conflicts;
pub mod group_commit;
mod migrate;
mod pool;
mod prepared;
pub mod request_keys;
pub mod stale_statistics;
mod testdb;
pub mod url;

pub use bootstrap::{BootstrapError, PrivateCluster, create_database, resolve_local_database};
pub use conflicts::{ByTaken, Conflicts, Taken};
pub use group_commit::{Batching, GroupCommit, Overloaded};
pub use migrate::{Migrations, migrate};
pub use pool::{Conn, Database, DbError, PoolOptions, classify, plan_each_execution};
pub use prepared::{Prepared, prepared};
pub use testdb::{SchemaSpec, TestDb, until_lock_wait};

/// Re-exported so services name one connection type.
pub use diesel_async::AsyncPgConnection;
