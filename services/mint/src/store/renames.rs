//! Edits of codes being made at their store (`code_renames`; the flow is in `edits.rs`).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{Code, CodeStatus};
use crate::error::Error;

/// An edit being made at the store: what the code had before it, and the hold of the round that
/// makes it (what that round records applies only while the hold is still its own).
#[derive(QueryableByName, Debug, Clone)]
pub struct Rename {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = Text)]
    pub previous_code: String,
    #[diesel(sql_type = Text)]
    pub previous_affiliate_url: String,
    #[diesel(sql_type = Text)]
    previous_status: String,
    #[diesel(sql_type = Timestamptz)]
    pub held_until: DateTime<Utc>,
}

impl Rename {
    pub fn previous_status(&self) -> CodeStatus {
        CodeStatus::parse(&self.previous_status).unwrap_or(CodeStatus::Pending)
    }
}

const COLUMNS: &str =
    "brand_id, code_id, previous_code, previous_affiliate_url, previous_status, held_until";

/// Starts an edit of `before` (as it was before the caller's transaction renamed it), held for
/// `held_secs`; the renamed code waits for the edit, out of the pusher's scans. `None` when an
/// edit of the code is already being made.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    before: &Code,
    held_secs: i64,
) -> Result<Option<Rename>, Error> {
    let sql = format!(
        "with started as ( \
           insert into code_renames ({COLUMNS}) \
           values ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::bigint)) \
           on conflict (brand_id, code_id) do nothing returning {COLUMNS}), \
         parked as ( \
           update codes set next_push_at = 'infinity' \
           where brand_id = $1 and id = $2 and exists (select 1 from started)) \
         select {COLUMNS} from started"
    );
    let rows: Vec<Rename> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(before.brand_id)
        .bind::<BigInt, _>(before.id)
        .bind::<Text, _>(before.code.as_deref().unwrap_or_default())
        .bind::<Text, _>(&before.affiliate_url)
        .bind::<Text, _>(before.status.as_str())
        .bind::<BigInt, _>(held_secs)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next())
}

/// Whether an edit of code `code_id` is being made at its store.
pub async fn in_progress(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    code_id: i64,
) -> Result<bool, Error> {
    let rows =
        tracking_db::prepared("select 1 from code_renames where brand_id = $1 and code_id = $2")
            .bind::<BigInt, _>(brand_id)
            .bind::<BigInt, _>(code_id)
            .execute(conn)
            .await?;
    Ok(rows > 0)
}

/// Edits whose hold has run out (the process making them stopped before the store answered),
/// oldest first, skipping those another round has locked, held again for `held_secs`.
pub async fn take_abandoned(
    conn: &mut AsyncPgConnection,
    limit: i64,
    held_secs: i64,
) -> Result<Vec<Rename>, Error> {
    let sql = format!(
        "update code_renames set held_until = now() + make_interval(secs => $2::bigint) \
         where ctid = any(array(select ctid from code_renames where held_until <= now() \
           order by held_until limit $1 for update skip locked)) \
         returning {COLUMNS}"
    );
    Ok(tracking_db::prepared(sql)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(held_secs)
        .load(conn)
        .await?)
}

/// Ends `rename`, if it is still held by the round that took it (not taken over since, its hold
/// run out): whether it was.
pub async fn end(conn: &mut AsyncPgConnection, rename: &Rename) -> Result<bool, Error> {
    let ended = tracking_db::prepared(
        "delete from code_renames where brand_id = $1 and code_id = $2 and held_until = $3",
    )
    .bind::<BigInt, _>(rename.brand_id)
    .bind::<BigInt, _>(rename.code_id)
    .bind::<Timestamptz, _>(rename.held_until)
    .execute(conn)
    .await?;
    Ok(ended == 1)
}
