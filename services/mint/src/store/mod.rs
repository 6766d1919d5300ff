//! CodeMintService's queries: plain SQL (tables in migrations/), scoped by brand. Functions take
//! a connection so callers decide what shares a transaction.

pub mod codes;
pub mod failures;
pub mod projection;
pub mod queue;
pub mod renames;

/// Wakes the minting queue and the store pusher (of every replica) when the transaction commits.
pub async fn notify_work(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<(), crate::error::Error> {
    use diesel_async::RunQueryDsl;
    tracking_db::prepared("select pg_notify(current_schema() || '_work', '')")
        .execute(conn)
        .await?;
    Ok(())
}

/// The channel [`notify_work`] notifies, for `tracking_events::listen`.
pub fn work_channel(schema: &str) -> String {
    format!("{schema}_work")
}
