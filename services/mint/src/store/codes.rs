//! Codes: reservation in batches (the database's unique indexes decide), reads, and the changes
//! the pusher and the brand make.
//!
//! Statements that take many codes by key pass the keys as the columns of an `unnest` joined on
//! the index (the brand repeated per key), or look each one up in a `lateral` subquery, never as
//! `brand_id = $1 and id = any($2)`. A brand's first big campaign grows faster than autovacuum
//! analyzes the table (it stays under the 10 % threshold in a table of millions), and with
//! statistics that have never seen the brand the planner expects a handful of rows for it: it
//! reads the brand's whole range and filters it, or hashes every pending code, instead of
//! probing the keys (tests/stale_statistics.rs). A key join has no brand constant to misjudge.
//! A single lookup by a key other than the primary key (a creator's live code, a code's text)
//! joins a one-element `unnest` for the same reason: with the brand as a constant, the primary
//! key, bound by the brand alone, looked as cheap as the index of the whole key.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Binary, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;
use tracking_api::mint::v1::MANUAL;
use tracking_db::{ByTaken, DbError, Taken};
use tracking_events::NewEvent;

use crate::domain::{Code, CodeChange, CodeStatus};
use crate::error::Error;

pub const COLUMNS: &str = "brand_id, id, campaign_id, creator_id, plan_id, integration_id, \
    provider, code, status, store_error, slug, destination_url, affiliate_url, expires_at, \
    history, created_at, updated_at";

#[derive(QueryableByName)]
pub struct CodeRow {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    creator_id: i64,
    #[diesel(sql_type = BigInt)]
    plan_id: i64,
    #[diesel(sql_type = BigInt)]
    integration_id: i64,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Nullable<Text>)]
    code: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    store_error: String,
    #[diesel(sql_type = Text)]
    slug: String,
    #[diesel(sql_type = Text)]
    destination_url: String,
    #[diesel(sql_type = Text)]
    affiliate_url: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Jsonb)]
    history: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

impl TryFrom<CodeRow> for Code {
    type Error = Error;
    fn try_from(row: CodeRow) -> Result<Code, Error> {
        let bad = |what: &str| Error::Internal(format!("code {}: bad {what}", row.id));
        Ok(Code {
            brand_id: row.brand_id,
            id: row.id,
            campaign_id: row.campaign_id,
            creator_id: row.creator_id,
            plan_id: row.plan_id,
            integration_id: row.integration_id,
            provider: Provider::from_str_name(&row.provider).ok_or_else(|| bad("provider"))?,
            code: row.code.clone(),
            status: CodeStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            store_error: row.store_error.clone(),
            slug: row.slug.clone(),
            destination_url: row.destination_url.clone(),
            affiliate_url: row.affiliate_url.clone(),
            expires_at: row.expires_at,
            history: serde_json::from_value(row.history.clone()).map_err(|_| bad("history"))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn to_codes(rows: Vec<CodeRow>) -> Result<Vec<Code>, Error> {
    rows.into_iter().map(Code::try_from).collect()
}

/// New code ids, drawn ahead of [`reserve`], and the database's time for their codes.
pub struct Drawn {
    /// One per key, in order; `None` for a key whose creator had a live code.
    pub ids: Vec<Option<i64>>,
    pub at: DateTime<Utc>,
}

/// A new code id for each `(brand, campaign, creator)` key, except, with `skip_live`, those
/// whose creator has a live code (a repeated `MintCode` leaves no gap), drawn ahead of
/// [`reserve`] (a code's
/// event, written by the same statement, carries its id), and the database's time (the codes'
/// creation time, on the clock of their later changes). An id left unused is a gap, as after a
/// rolled-back insert. Takes the connection shared, to go out with a mint batch's reads.
///
/// Each key is probed on its own (a `lateral … limit 1`): as an `exists`, the planner hashed the
/// whole table for a batch of a few hundred keys while the table was small.
///
/// The sequence writes WAL every 32 values, and a transaction that did waits for the disk at
/// commit: every other batch's reads would. These ids are only ever stored by a later statement,
/// whose own commit flushes the WAL up to it, this record included, so this one need not wait.
pub async fn draw_ids(
    mut conn: &AsyncPgConnection,
    keys: &[(i64, i64, i64)],
    skip_live: bool,
) -> Result<Drawn, Error> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<i64>,
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    let rows: Vec<Row> = tracking_db::prepared(
        "select case when live.id is null then nextval('codes_id_seq') end as id, now() as at \
         from (select set_config('synchronous_commit', 'off', true)) async_commit \
         cross join unnest($1::bigint[], $2::bigint[], $3::bigint[]) with ordinality \
           as k(key_brand, key_campaign, key_creator, n) \
         left join lateral (select c.id from codes c where $4 and c.brand_id = k.key_brand \
             and c.campaign_id = k.key_campaign and c.creator_id = k.key_creator \
             and not c.disabled limit 1) live on true \
         order by k.n",
    )
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .bind::<diesel::sql_types::Bool, _>(skip_live)
    .load(&mut conn)
    .await?;
    Ok(Drawn {
        at: <[Row]>::first(&rows).map_or_else(Utc::now, |row| row.at),
        ids: rows.into_iter().map(|row| row.id).collect(),
    })
}

/// Inserts `codes` (their ids from [`draw_ids`]) with their `events`, in one statement that is
/// its own transaction (one round trip); a code that is taken (its text at the integration, or a
/// live code of its creator) is skipped or fails the statement ([`Taken`], for
/// [`tracking_db::Conflicts`]). The failures on record for the creators whose `clear_failure` is
/// set are forgotten once their code is in. Pending codes with a text are held for this
/// process's pusher for `held_secs` ([`hold`]; 0 leaves them due at once, for any scan).
///
/// Only creators on their campaign's roster get a code, and only of the plan their campaign is
/// linked to: the statement holds the campaigns' rosters until it commits and reads the roster
/// and the campaigns after the hold (`roster_open_for_plans`, in the migrations), so a removal
/// or a relink being applied meanwhile ([`crate::store::projection::hold_rosters`]) either
/// waits for these codes (and then disables them) or is seen (and they are refused,
/// [`Reserved::off_roster`], [`Reserved::relinked`]). A batch that read the roster only before could insert its code
/// after the removal looked for one. No row is written for it: a lock on each roster entry
/// cost the machine 5-20 % more a code (docs/BENCHMARKS.md). So it is for a change of the link
/// terms the codes' links were made from (`links_keys`, each code's plan's
/// [`crate::domain::Plan::links_key`] as the batch read it): the projection holds the plan's
/// campaigns' rosters while it gives their codes the new links, so these codes are either
/// written before (and given them) or refused ([`Reserved::stale_links`]).
///
/// The main query reads what the delete returns, so the delete is done before the events are
/// appended (an expression the main query does not read runs after it): the outbox lock is not
/// held while the delete waits on a failure another transaction is recording.
pub async fn reserve(
    conn: &mut AsyncPgConnection,
    codes: &[Code],
    events: &[NewEvent],
    clear_failure: &[bool],
    links_keys: &[&str],
    taken: Taken,
    held_secs: i64,
) -> Result<Reserved, DbError> {
    #[derive(QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Bool)]
        inserted: bool,
        #[diesel(sql_type = Bool)]
        relinked: bool,
        #[diesel(sql_type = Bool)]
        stale: bool,
    }
    if codes.is_empty() {
        return Ok(Reserved::default());
    }
    let clearing = clear_failure.iter().any(|clear| *clear);
    // Without and with the delete of the creators' failures.
    static SQL: LazyLock<[ByTaken; 2]> = LazyLock::new(|| {
        [
            ByTaken::new(|taken| reserving(false, taken)),
            ByTaken::new(|taken| reserving(true, taken)),
        ]
    });
    let col = |f: fn(&Code) -> i64| codes.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&Code) -> &str| codes.iter().map(f).collect::<Vec<&str>>();
    let statement = tracking_db::prepared(SQL[usize::from(clearing)].get(taken));
    // Deleting failures joins them to the codes inserted: planned at each execution, since a
    // mint batch's connection plans once (a join planned while `mint_failures` was empty could
    // read the whole table ever after). Few batches have failures to clear.
    let statement = if clearing {
        statement.planned_each_time()
    } else {
        statement
    };
    let outcomes: Vec<Outcome> = statement
        .bind::<Array<BigInt>, _>(col(|c| c.brand_id))
        .bind::<Array<BigInt>, _>(col(|c| c.id))
        .bind::<Array<BigInt>, _>(col(|c| c.campaign_id))
        .bind::<Array<BigInt>, _>(col(|c| c.creator_id))
        .bind::<Array<BigInt>, _>(col(|c| c.plan_id))
        .bind::<Array<BigInt>, _>(col(|c| c.integration_id))
        .bind::<Array<Text>, _>(text(|c| c.provider.as_str_name()))
        .bind::<Array<Nullable<Text>>, _>(
            codes.iter().map(|c| c.code.as_deref()).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(text(|c| c.status.as_str()))
        .bind::<Array<Text>, _>(text(|c| &c.slug))
        .bind::<Array<Text>, _>(text(|c| &c.destination_url))
        .bind::<Array<Text>, _>(text(|c| &c.affiliate_url))
        .bind::<Array<Nullable<Timestamptz>>, _>(
            codes.iter().map(|c| c.expires_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(codes.iter().map(|c| c.created_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.kind).collect::<Vec<_>>())
        .bind::<Array<Binary>, _>(
            events
                .iter()
                .map(|e| e.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(clear_failure)
        .bind::<BigInt, _>(held_secs)
        .bind::<Array<Text>, _>(links_keys)
        .load(conn)
        .await?;
    let mut reserved = Reserved::default();
    for outcome in outcomes {
        let into = if outcome.inserted {
            &mut reserved.inserted
        } else if outcome.relinked {
            &mut reserved.relinked
        } else if outcome.stale {
            &mut reserved.stale_links
        } else {
            &mut reserved.off_roster
        };
        into.insert(outcome.id);
    }
    Ok(reserved)
}

/// What [`reserve`] did with each code, by id; a code in neither set was taken.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub inserted: HashSet<i64>,
    /// Codes of creators no longer on their campaign's roster (removed, or never added).
    pub off_roster: HashSet<i64>,
    /// Codes of a plan their campaign is no longer linked to (relinked since the batch read it).
    pub relinked: HashSet<i64>,
    /// Codes whose links were made from plan terms changed since (`links_keys`).
    pub stale_links: HashSet<i64>,
}

/// [`reserve`]'s statement; `clearing`, with the delete of the creators' failures.
fn reserving(clearing: bool, taken: Taken) -> String {
    let (cleared, done) = if clearing {
        (
            "cleared as ( \
               delete from mint_failures f using minted m where m.clear_failure \
                 and f.brand_id = m.brand_id and f.campaign_id = m.campaign_id \
                 and f.creator_id = m.creator_id returning 1), ",
            " cross join (select count(*) from cleared) done",
        )
    } else {
        ("", "")
    };
    let skip = taken.on_conflict();
    format!(
        "with input as ( \
           select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
             $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], \
             $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[], \
             $15::text[], $16::bytea[], $17::bool[]) with ordinality \
             as i(brand_id, id, campaign_id, creator_id, plan_id, integration_id, provider, \
               code, status, slug, destination_url, affiliate_url, expires_at, created_at, \
               kind, payload, clear_failure, n)), \
         on_roster as materialized ( \
           select pos as n, relinked, stale from roster_open_for_plans($1::bigint[], \
             $3::bigint[], $4::bigint[], $5::bigint[], $19::text[])), \
         inserted as ( \
           insert into codes (brand_id, id, campaign_id, creator_id, plan_id, \
             integration_id, provider, code, status, slug, destination_url, affiliate_url, \
             expires_at, created_at, updated_at, next_push_at) \
           select brand_id, id, campaign_id, creator_id, plan_id, integration_id, provider, \
             code, status, slug, destination_url, affiliate_url, expires_at, created_at, \
             created_at, now() + case when code is not null and status = 'pending' \
               then make_interval(secs => $18::bigint) else interval '0' end \
           from input where n in (select n from on_roster where not relinked and not stale) \
           order by n \
           {skip} returning brand_id, id), \
         minted as ( \
           select i.* from input i join inserted s on s.brand_id = i.brand_id and s.id = i.id), \
         {cleared}{} \
         select id, true as inserted, false as relinked, false as stale from minted{done} \
         union all select i.id, false, coalesce(o.relinked, false), coalesce(o.stale, false) \
           from input i left join on_roster o on o.n = i.n \
           where o.n is null or o.relinked or o.stale",
        tracking_events::appending("minted")
    )
}

/// The live (not disabled) codes of these `(brand, campaign, creator)` keys, each key probed on
/// its own (`codes_live_creator` holds one per key), so that a mint batch's generic plan is
/// right at any table size. Takes the connection shared, so that a mint batch sends it together
/// with its other reads (pipelined).
pub async fn live_for(
    mut conn: &AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<Vec<Code>, Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select c.* \
         from (select distinct * from unnest($1::bigint[], $2::bigint[], $3::bigint[])) \
           as k(key_brand, key_campaign, key_creator) \
         cross join lateral (select {COLUMNS} from codes where brand_id = k.key_brand \
           and campaign_id = k.key_campaign and creator_id = k.key_creator \
           and not disabled limit 1) c"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
        .load(&mut conn)
        .await?;
    to_codes(rows)
}

/// A code's text held at an integration, and by whom.
#[derive(QueryableByName)]
pub struct Holder {
    /// Lower-cased.
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    /// Not disabled: a disabled code keeps its text for good all the same.
    #[diesel(sql_type = Bool)]
    pub live: bool,
}

/// Which of `codes` are already held at the integration (case-insensitively).
pub async fn holders(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    codes: &[String],
) -> Result<Vec<Holder>, Error> {
    let lower: Vec<String> = codes.iter().map(|c| c.to_lowercase()).collect();
    Ok(tracking_db::prepared(
        "select k.code, h.campaign_id, h.creator_id, h.status <> 'disabled' as live \
         from unnest($1::bigint[], $2::bigint[], $3::text[]) as k(key_brand, key_integration, code) \
         cross join lateral (select campaign_id, creator_id, status from codes \
           where brand_id = k.key_brand and integration_id = k.key_integration \
             and lower(code) = k.code limit 1) h",
    )
    .bind::<Array<BigInt>, _>(vec![brand_id; lower.len()])
    .bind::<Array<BigInt>, _>(vec![integration_id; lower.len()])
    .bind::<Array<Text>, _>(lower)
    .load(conn)
    .await?)
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    for_update: bool,
) -> Result<Option<Code>, Error> {
    let lock = if for_update { " for update" } else { "" };
    let sql = format!("select {COLUMNS} from codes where brand_id = $1 and id = $2{lock}");
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(id)
        .load(conn)
        .await?;
    Ok(to_codes(rows)?.into_iter().next())
}

pub async fn resolve(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    code: &str,
) -> Result<Option<Code>, Error> {
    let sql = format!(
        "select {COLUMNS} from unnest(array[$1::bigint], array[$2::bigint], array[lower($3)]) \
           as k(key_brand, key_integration, key_code) \
         join codes on brand_id = k.key_brand and integration_id = k.key_integration \
           and lower(code) = k.key_code"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(integration_id)
        .bind::<Text, _>(code)
        .load(conn)
        .await?;
    Ok(to_codes(rows)?.into_iter().next())
}

/// A campaign's codes by id, optionally one creator's or one status. Live and disabled codes are
/// read in id order from their ranges of the `codes_by_campaign` index, pending ones from the push
/// queue's (`code_pushes`, by campaign; each code probed by key, as a join could read the brand's
/// codes from the start), and merged: a page costs the same however many codes the
/// brand's other campaigns hold, and one of pending or disabled codes however many active codes
/// the campaign has. A page of active codes skips the few pending ones among the live.
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_id: Option<i64>,
    status: Option<CodeStatus>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Code>, Error> {
    let by_campaign = |disabled: &str, status: &str| {
        format!(
            "(select {COLUMNS} from codes where brand_id = $1 and campaign_id = $2 \
             and {disabled} and ($4::text is null or $4 = '{status}') \
             and status = coalesce($4, status) \
             and ($3::bigint is null or creator_id = $3) and id > $5 order by id limit $6)"
        )
    };
    let sql = format!(
        "select * from ({} union all {} union all \
           (select c.* from code_pushes q \
            cross join lateral (select {COLUMNS} from codes where brand_id = q.brand_id \
              and id = q.code_id and ($3::bigint is null or creator_id = $3) limit 1) c \
            where $4 = 'pending' and q.brand_id = $1 and q.campaign_id = $2 \
              and q.code_id > $5 order by q.code_id limit $6)) c \
         order by id limit $6",
        by_campaign("not disabled", CodeStatus::Active.as_str()),
        by_campaign("disabled", CodeStatus::Disabled.as_str()),
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(campaign_id)
        .bind::<Nullable<BigInt>, _>(creator_id)
        .bind::<Nullable<Text>, _>(status.map(CodeStatus::as_str))
        .bind::<BigInt, _>(after.unwrap_or(0))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Replaces the code's text (suffix after a store collision, or a manual edit), recording the
/// change. Returns `None` when another code of the integration already has the new text.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    code: &Code,
    to: &str,
    affiliate_url: &str,
    reason: &str,
    status: CodeStatus,
) -> Result<Option<Code>, Error> {
    let change = CodeChange {
        from: code.code.clone().unwrap_or_default(),
        to: to.to_owned(),
        reason: reason.to_owned(),
        at: Utc::now(),
        released_at: None,
    };
    let change = serde_json::to_value([change]).map_err(|e| Error::Internal(e.to_string()))?;
    let query = tracking_db::prepared(retext_sql("history || $7"))
        .bind::<BigInt, _>(code.brand_id)
        .bind::<BigInt, _>(code.id)
        .bind::<Text, _>(to.to_owned())
        .bind::<Text, _>(affiliate_url.to_owned())
        .bind::<Text, _>(status.as_str())
        .bind::<BigInt, _>(code.integration_id)
        .bind::<Jsonb, _>(change);
    retexted(conn, query).await
}

/// Runs a [`retext_sql`] statement in a savepoint. A code given the same text by a transaction
/// that committed after the statement's snapshot passes its `not exists` and fails the unique
/// index instead: that is the same answer, `None`, and the caller's transaction goes on.
async fn retexted<Q>(conn: &mut AsyncPgConnection, query: Q) -> Result<Option<Code>, Error>
where
    Q: diesel_async::methods::LoadQuery<'static, AsyncPgConnection, CodeRow> + Send + 'static,
{
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    use diesel_async::AsyncConnection;
    let loaded = conn
        .transaction::<Vec<CodeRow>, DieselError, _>(async |conn| query.load(conn).await)
        .await;
    match loaded {
        Ok(rows) => Ok(to_codes(rows)?.into_iter().next()),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("codes_integration_code") =>
        {
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Gives `code` (locked) back what it had before a brand's edit the store refused: its text,
/// affiliate link (to the plan's page as `code`'s is now: it may have moved during the edit) and
/// status, and its history without the edit's entry (the edit's rename was the last change of
/// its text: nothing else renames a code while it is edited). A pending code is due for its
/// push at once. `None` when another code of the integration has that text now (minted
/// meanwhile).
pub async fn put_back(
    conn: &mut AsyncPgConnection,
    code: &Code,
    rename: &super::renames::Rename,
) -> Result<Option<Code>, Error> {
    let query = tracking_db::prepared(retext_sql("history - -1"))
        .bind::<BigInt, _>(code.brand_id)
        .bind::<BigInt, _>(code.id)
        .bind::<Text, _>(rename.previous_code.clone())
        .bind::<Text, _>(crate::domain::links::with_redirect_of(
            &rename.previous_affiliate_url,
            &code.affiliate_url,
        ))
        .bind::<Text, _>(rename.previous_status().as_str())
        .bind::<BigInt, _>(code.integration_id);
    retexted(conn, query).await
}

/// The update that gives code (brand `$1`, id `$2`) the text `$3`, the affiliate link `$4` and
/// the status `$5`, its history changed by the expression `history`, due for a push at once, and
/// returns it; unless another code of its integration (`$6`) has the text.
fn retext_sql(history: &str) -> String {
    format!(
        "update codes set code = $3, affiliate_url = $4, status = $5, history = {history}, \
           store_error = '', push_attempts = 0, next_push_at = now(), updated_at = now() \
         where brand_id = $1 and id = $2 and not exists (select 1 \
           from unnest(array[$1::bigint], array[$6::bigint], array[lower($3)]) \
             as k(key_brand, key_integration, key_code) \
           join codes o on o.brand_id = k.key_brand and o.integration_id = k.key_integration \
             and lower(o.code) = k.key_code \
           where o.id <> $2) \
         returning {COLUMNS}"
    )
}

/// Gives the live codes minted under plan (brand `brand_id`, `plan_id`) for its campaigns the
/// plan's link terms as they are now: the destination of their tracking links, when the links
/// end, and, with `shopify_redirect` (Shopify plans), where their discount links send the
/// shopper on to. Returns the codes changed (none when they already had them). Read through the
/// plan's campaigns (`codes_by_campaign`), not the whole table.
pub async fn follow_plan_links(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
    destination_url: &str,
    expires_at: Option<DateTime<Utc>>,
    shopify_redirect: Option<&str>,
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "update codes set destination_url = $3, expires_at = $4, updated_at = now(), \
           affiliate_url = case when $5::text is not null \
                   and strpos(affiliate_url, '?redirect=') > 0 \
               then split_part(affiliate_url, '?redirect=', 1) || '?redirect=' || $5 \
               else affiliate_url end \
         where brand_id = $1 and plan_id = $2 and not disabled \
           and campaign_id in (select id from campaigns where brand_id = $1 and plan_id = $2) \
           and (destination_url <> $3 or expires_at is distinct from $4) \
         returning {COLUMNS}"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(plan_id)
        .bind::<Text, _>(destination_url)
        .bind::<Nullable<Timestamptz>, _>(expires_at)
        .bind::<Nullable<Text>, _>(shopify_redirect)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Sets the status of codes (by id within a brand) and returns them.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    ids: &[i64],
    status: CodeStatus,
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "update codes set status = $3, store_error = '', updated_at = now() \
         from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_id) \
         where brand_id = k.key_brand and id = k.key_id returning {COLUMNS}"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(vec![brand_id; ids.len()])
        .bind::<Array<BigInt>, _>(ids)
        .bind::<Text, _>(status.as_str())
        .load(conn)
        .await?;
    to_codes(rows)
}

/// The live codes of these creators `(brand, campaign, creator)`, locked in the order every
/// writer of codes locks them (brand, id): found key by key ([`live_for`]), then locked
/// ([`locked_of`]), so that both statements read by key at any table size.
pub async fn live_of_creators(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, i64, i64)],
) -> Result<Vec<Code>, Error> {
    let found: Vec<(i64, i64)> = live_for(conn, keys)
        .await?
        .iter()
        .map(|code| (code.brand_id, code.id))
        .collect();
    if found.is_empty() {
        return Ok(Vec::new());
    }
    // Disabled since it was found: not live any more.
    Ok(locked_of(conn, &found)
        .await?
        .into_iter()
        .filter(|code| code.status != CodeStatus::Disabled)
        .collect())
}

/// The live codes a campaign's creators hold under another plan than `plan_id`, locked.
pub async fn live_of_campaign_not_of_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    plan_id: i64,
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "select {COLUMNS} from unnest(array[$1::bigint], array[$2::bigint]) \
           as k(key_brand, key_campaign) \
         join codes on brand_id = k.key_brand and campaign_id = k.key_campaign \
         where plan_id <> $3 and not disabled order by id for update of codes"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(campaign_id)
        .bind::<BigInt, _>(plan_id)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Queues the texts of `codes` for deactivation at their stores, in one statement (as
/// [`queue_store_disable`] for each).
pub async fn queue_store_disables(
    conn: &mut AsyncPgConnection,
    codes: &[Code],
) -> Result<(), Error> {
    let texts: Vec<(i64, i64, &str, i64)> = codes
        .iter()
        .filter_map(|c| Some((c.brand_id, c.integration_id, c.code.as_deref()?, c.id)))
        .collect();
    queue_texts_disable(conn, &texts).await
}

/// Pending codes due for a push, locked for the caller's transaction (other rounds skip them),
/// in which the pusher [`hold`]s them before calling the store.
pub async fn due_for_push(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<Code>, Error> {
    due_pending(conn, "q.with_code", limit).await
}

/// Of these codes `(brand, id)` (this process's fresh codes, held for its pusher), those still
/// pending with a code and not being edited (a brand's edit pushes its code itself, and parks it
/// until then: `renames::begin`), as committed: nothing is locked, since the store is called after
/// this read, outside any transaction ([`locked_of`] reads them again to record the answer). The
/// codes are read by primary key and only then checked: a condition next to the key would let
/// the planner hash every pending code (or `BitmapAnd` them with each key) when it underestimates
/// them.
pub async fn pushable_of(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "with keyed as materialized ( \
           select {COLUMNS}, \
             status = 'pending' and code is not null and next_push_at <> 'infinity' as pushable \
           from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_id) \
           join codes on brand_id = k.key_brand and id = k.key_id) \
         select {COLUMNS} from keyed where pushable"
    );
    by_keys(conn, sql, ids).await
}

/// These codes `(brand, id)` as they are now, locked (in key order) until the caller's transaction
/// ends.
pub async fn locked_of(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "select {COLUMNS} from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_id) \
         join codes on brand_id = k.key_brand and id = k.key_id \
         order by k.key_brand, k.key_id for update of codes"
    );
    by_keys(conn, sql, ids).await
}

/// Runs `sql`, which reads codes by the keys `(brand, id)` bound as `$1` and `$2`, for `ids`.
async fn by_keys(
    conn: &mut AsyncPgConnection,
    sql: String,
    ids: &[(i64, i64)],
) -> Result<Vec<Code>, Error> {
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(ids.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(ids.iter().map(|k| k.1).collect::<Vec<_>>())
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Holds these codes `(brand, id)` for one push round for `secs`: no scan takes them before
/// (unless a recorded answer sets their next push first). Returns the hold's end, which the
/// codes keep as their next push while the hold is this round's ([`set_links`]).
pub async fn hold(
    conn: &mut AsyncPgConnection,
    ids: &[(i64, i64)],
    secs: i64,
) -> Result<DateTime<Utc>, Error> {
    #[derive(QueryableByName)]
    struct Until {
        #[diesel(sql_type = Timestamptz)]
        until: DateTime<Utc>,
    }
    let held: Until = tracking_db::prepared(
        "with hold as (select now() + make_interval(secs => $3::bigint) as until), \
         held as (update codes set next_push_at = (select until from hold) \
           from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_id) \
           where brand_id = k.key_brand and id = k.key_id) \
         select until from hold",
    )
    .bind::<Array<BigInt>, _>(ids.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(ids.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<BigInt, _>(secs)
    .get_result(conn)
    .await?;
    Ok(held.until)
}

/// Pending links without a code due for their store-made link (Amazon attribution tags), locked
/// for the caller's transaction (other rounds skip them), in which the pusher [`hold`]s them.
pub async fn due_for_link(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<Code>, Error> {
    due_pending(conn, "not q.with_code", limit).await
}

/// Takes the oldest due codes in the order of the push queue's partial index (`code_pushes_due`
/// or `code_pushes_links_due`; `which` picks the queue's rows with or without a code). Each code
/// is probed by its key and locked in a `lateral` subquery, skipped if another round has it
/// locked, and checked again as it is locked: a round that waited on the lock sees the code as
/// another transaction left it (pushed, or held by another round). As a join, with statistics
/// that believe few codes are pending, the planner hashed or materialized every pending code for
/// a round. Sorts and bitmap scans are off for the rest of the caller's transaction: a planner
/// that believes few codes are pending would otherwise fetch and sort all of them (on disk past
/// ~145,000) to return the first 500.
async fn due_pending(
    conn: &mut AsyncPgConnection,
    which: &str,
    limit: i64,
) -> Result<Vec<Code>, Error> {
    tracking_db::prepared(
        "select set_config('enable_sort', 'off', true), \
           set_config('enable_bitmapscan', 'off', true)",
    )
    .execute(conn)
    .await?;
    let sql = format!(
        "select c.* from code_pushes q \
         cross join lateral (select {COLUMNS} from codes \
           where brand_id = q.brand_id and id = q.code_id \
             and status = 'pending' and next_push_at <= now() limit 1) c \
         where {which} and q.due_at <= now() \
         order by q.due_at limit $1 for update of c skip locked"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Gives pending links their affiliate link and destination (by code id within a brand) and
/// activates them; returns those changed. Only links the caller's round still holds (their next
/// push is still its hold's end, `held_until`): one sent back to wait for its tag meanwhile (its
/// plan moved to another page, which the round read too early), or taken by another round since,
/// is left to that round.
pub async fn set_links(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    links: &[(i64, String, String)],
    held_until: DateTime<Utc>,
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "update codes set affiliate_url = l.affiliate, destination_url = l.destination, \
           status = 'active', store_error = '', updated_at = now() \
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
           as l(key_brand, key_id, affiliate, destination) \
         where brand_id = l.key_brand and id = l.key_id and status = 'pending' \
           and next_push_at = $5 returning {COLUMNS}"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(vec![brand_id; links.len()])
        .bind::<Array<BigInt>, _>(links.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(links.iter().map(|l| l.1.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(links.iter().map(|l| l.2.as_str()).collect::<Vec<_>>())
        .bind::<Timestamptz, _>(held_until)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// As [`follow_plan_links`] for a plan whose links carry a tag the gateway makes (Amazon Ads):
/// their live codes get the plan's end date and, when its page `moved`, go back to waiting for
/// their tag (pending, due now), which the pusher then puts on the new page; until then they
/// lead where they did. Returns the codes changed.
pub async fn follow_plan_tagged_links(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
    moved: bool,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Vec<Code>, Error> {
    let sql = format!(
        "update codes set expires_at = $3, updated_at = now(), \
           status = case when $4 then 'pending' else status end, \
           next_push_at = case when $4 then now() else next_push_at end, \
           push_attempts = case when $4 then 0 else push_attempts end \
         where brand_id = $1 and plan_id = $2 and not disabled \
           and campaign_id in (select id from campaigns where brand_id = $1 and plan_id = $2) \
           and ($4 or expires_at is distinct from $3) \
         returning {COLUMNS}"
    );
    let rows: Vec<CodeRow> = tracking_db::prepared(sql)
        .bind::<BigInt, _>(brand_id)
        .bind::<BigInt, _>(plan_id)
        .bind::<Nullable<Timestamptz>, _>(expires_at)
        .bind::<Bool, _>(moved)
        .load(conn)
        .await?;
    to_codes(rows)
}

/// Makes a pending code the store refused, or could not be reached for, due for a push now,
/// its backoff started over; a code an edit holds (due never) is left to the edit. Whether it
/// was. A round holding the code at that moment may then push it alongside another: the store
/// knows the code's `external_ref`, so the second push is a retry, not a second discount.
pub async fn push_now(conn: &mut AsyncPgConnection, brand_id: i64, id: i64) -> Result<bool, Error> {
    let changed = tracking_db::prepared(
        "update codes set next_push_at = now(), push_attempts = 0 \
         where brand_id = $1 and id = $2 and status = 'pending' and store_error <> '' \
           and next_push_at <> 'infinity'",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(changed > 0)
}

/// Records a failed push and when to try again.
pub async fn push_failed(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    ids: &[i64],
    error: &str,
    retry_in_secs: i64,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update codes set store_error = $3, push_attempts = push_attempts + 1, \
           next_push_at = now() + make_interval(secs => least($4 * power(2, least(push_attempts, 6)), 300)), \
           updated_at = now() \
         from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_id) \
         where brand_id = k.key_brand and id = k.key_id",
    )
    .bind::<Array<BigInt>, _>(vec![brand_id; ids.len()])
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(error)
    .bind::<BigInt, _>(retry_in_secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues the text `code` of code `code_id` for deactivation at its store: the discount pushed
/// for that code, not another's of the same text.
pub async fn queue_store_disable(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    code: &str,
    code_id: i64,
) -> Result<(), Error> {
    queue_texts_disable(conn, &[(brand_id, integration_id, code, code_id)]).await
}

/// Queues `(brand, integration, text, code id)` texts for deactivation, in key order as the
/// other writers: the one writer of `store_disables`' queue.
async fn queue_texts_disable(
    conn: &mut AsyncPgConnection,
    texts: &[(i64, i64, &str, i64)],
) -> Result<(), Error> {
    if texts.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "insert into store_disables (brand_id, integration_id, code, external_ref) \
         select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
           as u(brand_id, integration_id, code, external_ref) \
         order by brand_id, integration_id, code \
         on conflict (brand_id, integration_id, code) do update \
           set next_at = now(), external_ref = excluded.external_ref",
    )
    .bind::<Array<BigInt>, _>(texts.iter().map(|t| t.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(texts.iter().map(|t| t.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(texts.iter().map(|t| t.2).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        texts
            .iter()
            .map(|t| crate::convert::external_ref(t.3))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A text to deactivate at its store, as a round took it: `held_until` marks the round's hold,
/// so that what it records applies only if nothing queued the text again meanwhile.
#[derive(QueryableByName, Debug, Clone)]
pub struct StoreDisable {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub code: String,
    /// The ref of the discount to deactivate; empty for any of the suite's.
    #[diesel(sql_type = Text)]
    pub external_ref: String,
    #[diesel(sql_type = Timestamptz)]
    pub held_until: DateTime<Utc>,
}

/// Takes the oldest due deactivations (skipping those another round has locked) and holds
/// them for `held_secs`, so that the store is called after this commits. The rows are updated
/// by the `ctid`s just locked: one plan at any size.
///
/// A store deactivates by text, and a text freed by an edit or a suffix may have been given to
/// another code since it was queued. So a text a live code holds now is not returned: if that
/// code is active, the store made it with this text for that code (it would have refused it
/// while an old one was there), so there is nothing left to deactivate and the deactivation is
/// done; if it is still waiting for its store, the deactivation waits too (should the store
/// still have the old one, it refuses the new code, which is suffixed and frees the text).
pub async fn take_store_disables(
    conn: &mut AsyncPgConnection,
    limit: i64,
    held_secs: i64,
) -> Result<Vec<StoreDisable>, Error> {
    let due: Vec<StoreDisable> = tracking_db::prepared(
        "update store_disables set next_at = now() + make_interval(secs => $2::bigint) \
         where ctid = any(array(select ctid from store_disables where next_at <= now() \
           order by next_at limit $1 for update skip locked)) \
         returning brand_id, integration_id, code, external_ref, next_at as held_until",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(held_secs)
    .load(conn)
    .await?;
    let mut held = vec![false; due.len()];
    for (n, code_id, status) in live_holders(conn, &due).await? {
        let Some(item) = due.get(n) else { continue };
        held[n] = true;
        if status == CodeStatus::Active {
            tracing::info!(brand_id = item.brand_id, code_id, code = %item.code, "text to deactivate is another code's at the store now; nothing to deactivate");
            store_disable_done(conn, item).await?;
        } else {
            let why = format!("code {code_id} holds this text now; waiting for its push");
            store_disable_failed(conn, item, &why).await?;
        }
    }
    Ok(due
        .into_iter()
        .zip(held)
        .filter(|(_, held)| !held)
        .map(|(item, _)| item)
        .collect())
}

/// The live code (not disabled) that holds each deactivation's text at its integration now, if
/// any, case-insensitively: `(index in items, code id, its status)`. Each text probed by key.
async fn live_holders(
    conn: &mut AsyncPgConnection,
    items: &[StoreDisable],
) -> Result<Vec<(usize, i64, CodeStatus)>, Error> {
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        status: String,
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Holder> = tracking_db::prepared(
        "select k.n, c.id, c.status \
         from unnest($1::bigint[], $2::bigint[], $3::text[]) with ordinality \
           as k(key_brand, key_integration, key_code, n) \
         cross join lateral (select id, status from codes where brand_id = k.key_brand \
           and integration_id = k.key_integration and lower(code) = lower(k.key_code) \
           and not disabled limit 1) c",
    )
    .bind::<Array<BigInt>, _>(items.iter().map(|i| i.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(items.iter().map(|i| i.integration_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(items.iter().map(|i| i.code.as_str()).collect::<Vec<_>>())
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let status = CodeStatus::parse(&row.status)
                .ok_or_else(|| Error::Internal(format!("code status {:?}", row.status)))?;
            Ok((
                usize::try_from(row.n - 1).unwrap_or(usize::MAX),
                row.id,
                status,
            ))
        })
        .collect()
}

/// Done (disabled, or the store never had it): forget it, unless it was queued again since it
/// was taken. Whether it was forgotten.
pub async fn store_disable_done(
    conn: &mut AsyncPgConnection,
    item: &StoreDisable,
) -> Result<bool, Error> {
    let deleted = tracking_db::prepared(
        "delete from store_disables where brand_id = $1 and integration_id = $2 and code = $3 \
         and next_at = $4",
    )
    .bind::<BigInt, _>(item.brand_id)
    .bind::<BigInt, _>(item.integration_id)
    .bind::<Text, _>(&item.code)
    .bind::<Timestamptz, _>(item.held_until)
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}

/// Records that the store stopped taking `text`, a text code (brand, `id`) had before a brand's
/// edit, which the store went on taking until its discount was disabled there just now: the
/// edit's history entry gets its `released_at`. Returns the code when it recorded that (not
/// for a text no edit of the code left, or one recorded already).
pub async fn former_text_released(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    text: &str,
) -> Result<Option<Code>, Error> {
    let Some(mut code) = get(conn, brand_id, id, true).await? else {
        return Ok(None);
    };
    // The code's own text (a disable of the code, or of the text it has again) is no former
    // text; nor is one the code last left for any other reason than a brand's edit.
    if code
        .code
        .as_deref()
        .is_some_and(|current| current.eq_ignore_ascii_case(text))
    {
        return Ok(None);
    }
    let Some(left) = code
        .history
        .iter()
        .rposition(|change| change.from.eq_ignore_ascii_case(text))
    else {
        return Ok(None);
    };
    let edit = &mut code.history[left];
    if edit.reason != MANUAL || edit.released_at.is_some() {
        return Ok(None);
    }
    edit.released_at = Some(Utc::now());
    let history =
        serde_json::to_value(&code.history).map_err(|e| Error::Internal(e.to_string()))?;
    let rows: Vec<CodeRow> = tracking_db::prepared(format!(
        "update codes set history = $3, updated_at = now() where brand_id = $1 and id = $2 \
         returning {COLUMNS}"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(id)
    .bind::<Jsonb, _>(history)
    .load(conn)
    .await?;
    Ok(to_codes(rows)?.into_iter().next())
}

/// Failed: try again later (with backoff), unless it was queued again since it was taken.
pub async fn store_disable_failed(
    conn: &mut AsyncPgConnection,
    item: &StoreDisable,
    error: &str,
) -> Result<(), Error> {
    tracking_db::prepared(
        "update store_disables set attempts = attempts + 1, last_error = $4, \
           next_at = now() + make_interval(secs => least(power(2, least(attempts, 11)), 3600)) \
         where brand_id = $1 and integration_id = $2 and code = $3 and next_at = $5",
    )
    .bind::<BigInt, _>(item.brand_id)
    .bind::<BigInt, _>(item.integration_id)
    .bind::<Text, _>(&item.code)
    .bind::<Text, _>(error)
    .bind::<Timestamptz, _>(item.held_until)
    .execute(conn)
    .await?;
    Ok(())
}
