//! Embedded migrations, run per service into that service's own schema.

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::pool::DbError;
use crate::url::with_search_path;

/// One crate's migrations: embedded in the binary, plus where their SQL lives in the source tree
/// (the test-database factory hashes it to know when its template is stale).
pub struct Migrations {
    pub embedded: EmbeddedMigrations,
    pub source_dir: &'static str,
}

/// Several migration sets applied as one, in order (shared kit tables first, then the service's).
struct Chain<'a>(&'a [&'a Migrations]);

impl MigrationSource<Pg> for Chain<'_> {
    /// Every set's migrations; a version twice is an error (diesel keys pending migrations by
    /// version, so one of the two would be skipped without a word).
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        let mut all: Vec<Box<dyn Migration<Pg>>> = Vec::new();
        let mut versions = std::collections::HashSet::new();
        for set in self.0 {
            for migration in MigrationSource::<Pg>::migrations(&set.embedded)? {
                let version = migration.name().version().to_string();
                if !versions.insert(version.clone()) {
                    return Err(format!("two migrations have the version {version}").into());
                }
                all.push(migration);
            }
        }
        Ok(all)
    }
}

/// Creates `schema` if missing and applies the pending migrations of `sets` inside it, under an
/// advisory lock so replicas starting together migrate once.
pub async fn migrate(
    base_url: &str,
    schema: &'static str,
    sets: &'static [&'static Migrations],
) -> Result<(), DbError> {
    if !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_') || schema.is_empty() {
        return Err(DbError::Other(format!("invalid schema name {schema:?}")));
    }
    let url = with_search_path(base_url, schema, false);
    tokio::task::spawn_blocking(move || run_blocking(&url, schema, sets))
        .await
        .map_err(|err| DbError::Other(format!("migration task failed: {err}")))?
}

fn run_blocking(url: &str, schema: &str, sets: &[&Migrations]) -> Result<(), DbError> {
    use diesel::{Connection, RunQueryDsl};

    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(url)
        .map_err(|err| DbError::Unavailable(err.to_string()))?;
    // An operator's `statement_timeout` or `lock_timeout` in `DATABASE_URL` is for the services'
    // calls: waiting for another replica's migrations, or a long one, must not fail the start.
    diesel::sql_query("set statement_timeout = 0").execute(&mut conn)?;
    diesel::sql_query("set lock_timeout = 0").execute(&mut conn)?;
    let lock = format!("select pg_advisory_lock(hashtext('tracking-migrate-{schema}'))");
    diesel::sql_query(lock).execute(&mut conn)?;
    let result = (|| {
        diesel::sql_query(format!("create schema if not exists {schema}")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(Chain(sets))
            .map_err(|err| DbError::Other(format!("migrating schema {schema}: {err}")))?;
        if !applied.is_empty() {
            tracing::info!(schema, count = applied.len(), "migrations applied");
        }
        Ok(())
    })();
    let unlock = format!("select pg_advisory_unlock(hashtext('tracking-migrate-{schema}'))");
    diesel::sql_query(unlock).execute(&mut conn)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_sharing_a_version_are_refused() {
        let shared = &crate::request_keys::MIGRATIONS;
        assert!(Chain(&[shared]).migrations().is_ok());
        let twice = Chain(&[shared, shared]).migrations().map(|all| all.len());
        assert!(
            twice
                .as_ref()
                .is_err_and(|e| e.to_string().starts_with("two migrations have the version")),
            "{twice:?}"
        );
    }
}
