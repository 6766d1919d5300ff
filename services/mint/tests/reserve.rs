//! A mint batch's reservation: ids drawn with its reads, then the codes, their events and the
//! cleared failures in one statement (its own transaction). A batch's statements are planned
//! once per connection: planned on empty tables, they still probe a batch's keys once the
//! tables have grown.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::stale_statistics::{
    BATCH_BOUND, BATCH_KEYS, UNANALYZED, execute as sql, rows_read_by, without_autovacuum,
};
use tracking_db::{Conn, Database, DbError, PoolOptions, Taken, TestDb, until_lock_wait};
use tracking_events::NewEvent;

use mint_service::domain::Code;
use mint_service::domain::PlanTerms;
use mint_service::store::{codes, failures, projection};

mod common;

use common::{SCHEMAS, code, database, enroll};

#[derive(QueryableByName, Debug, PartialEq)]
struct Setting {
    #[diesel(sql_type = Text)]
    synchronous_commit: String,
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = Text)]
    what: String,
}

fn event(code: &Code) -> NewEvent {
    NewEvent {
        brand_id: code.brand_id,
        kind: "CODE_EVENT_KIND_MINTED",
        payload: code.code.clone().unwrap_or_default().into_bytes(),
    }
}

/// The ids drawn for `keys`.
async fn drawn(conn: &AsyncPgConnection, keys: &[(i64, i64, i64)], skip_live: bool) -> Vec<i64> {
    codes::draw_ids(conn, keys, skip_live)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .ids
        .into_iter()
        .flatten()
        .collect()
}

/// Codes `C1`..=`Cn` of creators 1..=`n` of brand 7's campaign 1, with ids drawn for them.
async fn numbered_codes(conn: &AsyncPgConnection, n: i64) -> Vec<Code> {
    let keys: Vec<(i64, i64, i64)> = (1..=n).map(|creator| (7, 1, creator)).collect();
    drawn(conn, &keys, false)
        .await
        .into_iter()
        .zip(1..)
        .map(|(id, creator)| code(id, creator, &format!("C{creator}")))
        .collect()
}

#[tokio::test]
async fn drawn_ids_are_new_and_leave_the_connection_committing_synchronously() {
    let (_test_db, mut conn) = database().await;
    let keys: Vec<(i64, i64, i64)> = (1..=3).map(|creator| (7, 1, creator)).collect();
    let first = drawn(&conn, &keys, true).await;
    let second = drawn(&conn, &keys[..2], false).await;
    assert_eq!(first.len(), 3);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]) && first[2] < second[0] && second[0] < second[1],
        "{first:?} then {second:?}"
    );
    // The asynchronous commit was the drawing transaction's only: the codes' own statements,
    // on the same pooled connection, wait for the disk.
    let setting: Vec<Setting> = diesel::sql_query("show synchronous_commit")
        .load(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(setting[0].synchronous_commit, "on");
}

#[tokio::test]
async fn a_code_is_stored_with_its_event_and_a_skipped_code_writes_neither() {
    let (_test_db, mut conn) = database().await;
    diesel::sql_query(
        "insert into mint_failures (brand_id, campaign_id, creator_id, reason, message) \
         values (7, 1, 1, 'missing_profile_field', 'no email'), \
                (7, 1, 3, 'missing_profile_field', 'no email'), \
                (7, 1, 4, 'missing_profile_field', 'no email')",
    )
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<(i64, i64, i64)> = [1, 2, 3, 2, 4].map(|creator| (7, 1, creator)).to_vec();
    let ids = drawn(&conn, &keys, false).await;

    let first = [code(ids[0], 1, "ANNA"), code(ids[1], 2, "BEN")];
    let second = [
        code(ids[4], 4, "CARL"),
        code(ids[2], 3, "anna"),
        code(ids[3], 2, "BEN2"),
    ];
    enroll(&mut conn, &first).await;
    enroll(&mut conn, &second).await;
    let events: Vec<NewEvent> = first.iter().map(event).collect();
    let inserted = codes::reserve(
        &mut conn,
        &first,
        &events,
        &[true, false],
        &[""; 2],
        Taken::Fail,
        0,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .inserted;
    assert_eq!(inserted, [ids[0], ids[1]].into(), "none was taken");

    // Creator 3's text is taken (case-insensitively), creator 2 has a live code already:
    // neither is stored nor announced, and creator 3's failure stays; creator 4's is cleared.
    let events: Vec<NewEvent> = second.iter().map(event).collect();
    let clear = [true, true, false];
    // A reservation that fails on a taken code leaves nothing of the batch, not even creator 4's
    // code, inserted before the taken one.
    let failed = codes::reserve(
        &mut conn,
        &second,
        &events,
        &clear,
        &vec![""; second.len()],
        Taken::Fail,
        0,
    )
    .await;
    assert!(
        matches!(failed, Err(DbError::UniqueViolation { .. })),
        "{failed:?}"
    );
    let counts: Vec<Row> = diesel::sql_query(
        "select 7::bigint as brand_id, \
           (select count(*) from codes) || ' ' || (select count(*) from events) || ' ' || \
           (select string_agg(creator_id::text, ',' order by creator_id) from mint_failures) \
           as what",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        counts[0].what, "2 2 3,4",
        "codes, events, failures on record"
    );
    // One that skips taken codes stores creator 4's.
    let inserted = codes::reserve(
        &mut conn,
        &second,
        &events,
        &clear,
        &vec![""; second.len()],
        Taken::Skip,
        0,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        inserted,
        codes::Reserved {
            inserted: [ids[4]].into(),
            off_roster: [].into(),
            relinked: [].into(),
            stale_links: [].into(),
        }
    );

    let stored: Vec<Row> =
        diesel::sql_query("select brand_id, code as what from codes order by id")
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let announced: Vec<Row> = diesel::sql_query(
        "select brand_id, convert_from(payload, 'UTF8') as what from events order by seq",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<Row> = ["ANNA", "BEN", "CARL"]
        .into_iter()
        .map(|what| Row {
            brand_id: 7,
            what: what.to_owned(),
        })
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(announced, expected, "one event per stored code, in order");
    let failures: Vec<Row> = diesel::sql_query(
        "select brand_id, creator_id::text as what from mint_failures order by creator_id",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        failures,
        vec![Row {
            brand_id: 7,
            what: "3".to_owned()
        }]
    );

    // A creator with a live code draws no id for another (a repeated MintCode leaves no gap).
    let drawn = codes::draw_ids(&conn, &[(7, 1, 1), (7, 1, 5)], true)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .ids;
    assert!(
        matches!(drawn[..], [None, Some(id)] if id == ids[4] + 1),
        "{drawn:?} after {ids:?}"
    );
}

/// `value`, noting in `most` the rows it read if they are the most yet.
fn counted<T>(most: &mut i64, (value, read): (T, i64)) -> T {
    *most = (*most).max(read);
    value
}

/// Runs every statement of a mint batch for `keys` (creators of brand 7's campaign 1 who have a
/// code and a failure on record) and `new` (creators who have no code; the second half of them
/// with a failure on record), and returns the most rows any of them read from one table.
/// `first`: no code and no failure is stored yet.
async fn run_a_batch(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, i64, i64)],
    new: &[(i64, i64, i64)],
    first: bool,
) -> i64 {
    let mut most = 0;
    let live = counted(
        &mut most,
        rows_read_by(conn, "codes", async |conn| {
            codes::live_for(conn, keys).await
        })
        .await,
    );
    assert_eq!(
        live.len(),
        if first { 0 } else { keys.len() },
        "each creator's live code"
    );
    for table in ["campaigns", "roster", "mint_failures"] {
        let contexts = counted(
            &mut most,
            rows_read_by(conn, table, async |conn| {
                projection::contexts(conn, keys).await
            })
            .await,
        );
        let positions: Vec<i64> = contexts.iter().map(|c| c.i).collect();
        assert_eq!(positions, (1..=keys.len() as i64).collect::<Vec<_>>());
        assert!(
            contexts.iter().all(|c| c.campaign_name.is_some()
                && c.roster_status.is_some()
                && c.had_failure != first),
            "each creator's campaign, roster entry and failure"
        );
    }
    for table in ["campaigns", "plans"] {
        let plans = counted(
            &mut most,
            rows_read_by(conn, table, async |conn| {
                projection::plans_of_campaigns(conn, keys).await
            })
            .await,
        );
        assert_eq!(plans.len(), 1, "the campaign's plan");
    }
    let plan_keys: Vec<(i64, i64)> = (1..=keys.len() as i64).map(|id| (7, id)).collect();
    let plans = counted(
        &mut most,
        rows_read_by(conn, "plans", async |conn| {
            projection::plans(conn, &plan_keys).await
        })
        .await,
    );
    assert_eq!(plans.len(), plan_keys.len());
    // The codes' links are made from plan 1's terms as read.
    let links_key = plans
        .iter()
        .find(|plan| plan.id == 1)
        .map(|plan| plan.links_key.clone())
        .unwrap_or_default();
    let drawn = counted(
        &mut most,
        rows_read_by(conn, "codes", async |conn| {
            codes::draw_ids(conn, new, true).await
        })
        .await,
    );
    let ids: Vec<i64> = drawn.ids.into_iter().flatten().collect();
    assert_eq!(
        ids.len(),
        new.len(),
        "an id for each creator without a code"
    );
    let rows: Vec<Code> = ids
        .iter()
        .zip(new)
        .map(|(&id, &(_, _, creator))| code(id, creator, &format!("NEW{creator}")))
        .collect();
    let events: Vec<NewEvent> = rows.iter().map(event).collect();
    let (plain, failing) = rows.split_at(rows.len() / 2);
    let (plain_events, failing_events) = events.split_at(plain.len());
    // Codes with no failure to clear, then codes whose failures are cleared (each a plain
    // insert), then all of them again, skipping the taken: each is found in (its index entries
    // read) and nothing is written; the same again, counting the roster entries each locks.
    for (table, rows, events, clear, taken, expected) in [
        (
            "codes",
            plain,
            plain_events,
            false,
            Taken::Fail,
            plain.len(),
        ),
        (
            "mint_failures",
            failing,
            failing_events,
            true,
            Taken::Fail,
            failing.len(),
        ),
        ("codes", &rows[..], &events[..], false, Taken::Skip, 0),
        ("roster", &rows[..], &events[..], false, Taken::Skip, 0),
    ] {
        let clear = vec![clear; rows.len()];
        let inserted = counted(
            &mut most,
            rows_read_by(conn, table, async |conn| {
                let keys = vec![links_key.as_str(); rows.len()];
                codes::reserve(conn, rows, events, &clear, &keys, taken, 0).await
            })
            .await,
        );
        assert_eq!(inserted.inserted.len(), expected);
        assert!(
            inserted.off_roster.is_empty(),
            "each creator is on the roster"
        );
    }
    counted(
        &mut most,
        rows_read_by(conn, "mint_failures", async |conn| {
            failures::clear(conn, keys).await
        })
        .await,
    );
    most
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Plans {
    #[diesel(sql_type = BigInt)]
    reused: i64,
    #[diesel(sql_type = BigInt)]
    custom: i64,
}

/// Creator numbers from which the creators to mint are counted.
const NEW: i64 = 1_000_000;

/// Brand 7's plans and campaigns `ids` (each campaign of plan 1); campaign 1's roster entries
/// for creators `ids` and `NEW + new`, codes for creators `ids`, and failures for creators `ids`
/// and `NEW + failing` (SQL sets).
fn fill(terms: &str, ids: &str, new: &str, failing: &str) -> [String; 5] {
    [
        format!(
            "insert into plans (brand_id, id, name, integration_id, provider, terms, \
               code_trigger, archived) \
             select 7, g, 'p' || g, 1, 'PROVIDER_SANDBOX', '{terms}', 'on_add', false from {ids} g"
        ),
        format!(
            "insert into campaigns (brand_id, id, name, plan_id, archived) \
             select 7, g, 'c' || g, 1, false from {ids} g"
        ),
        format!(
            "insert into roster (brand_id, campaign_id, creator_id, profile, status) \
             select 7, 1, g, '{{}}'::jsonb, 'approved' from {ids} g \
             union all select 7, 1, {NEW} + g, '{{}}', 'approved' from {new} g"
        ),
        format!(
            "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
               provider, code, status, slug) \
             select 7, 1, g, 1, 1, 'PROVIDER_SANDBOX', 'C' || g, 'pending', 's' || g from {ids} g"
        ),
        format!(
            "insert into mint_failures (brand_id, campaign_id, creator_id, reason, message) \
             select 7, 1, g, 'missing_profile_field', 'no email' from {ids} g \
             union all select 7, 1, {NEW} + g, 'missing_profile_field', 'no email' \
             from {failing} g"
        ),
    ]
}

#[tokio::test]
async fn a_batchs_statements_planned_on_empty_tables_probe_keys_once_the_tables_grow() {
    let test_db = TestDb::new(SCHEMAS).await;
    let mut admin = test_db
        .pool(mint_service::SCHEMA)
        .conn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Known to be empty (vacuumed: no pages), as a table is after its rows are deleted; then
    // never analyzed again. Before any plan is made: either would have them made again.
    for table in ["codes", "campaigns", "plans", "roster", "mint_failures"] {
        sql(&mut admin, &format!("vacuum analyze {table}")).await;
        without_autovacuum(&mut admin, table).await;
    }
    let one = PoolOptions::default().planned_once(1);
    let db =
        Database::new(test_db.url(), mint_service::SCHEMA, one).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let terms = serde_json::to_string(&PlanTerms::default()).unwrap_or_else(|e| panic!("{e}"));

    // Planned for a batch of one creator with a code and two to mint, before any code or
    // failure is stored.
    let none = "generate_series(1, 0)";
    for statement in &fill(
        &terms,
        "generate_series(1, 1)",
        "generate_series(0, 1)",
        none,
    )[..3]
    {
        sql(&mut admin, statement).await;
    }
    run_a_batch(
        &mut conn,
        &[(7, 1, 1)],
        &[(7, 1, NEW), (7, 1, NEW + 1)],
        true,
    )
    .await;

    // The tables grow, unanalyzed; the plans stay.
    let ids = format!("generate_series(2, {UNANALYZED})");
    let new = format!("generate_series(2, {})", BATCH_KEYS + 1);
    let failing = format!(
        "generate_series({}, {})",
        BATCH_KEYS / 2 + 2,
        BATCH_KEYS + 1
    );
    for statement in fill(&terms, &ids, &new, &failing) {
        sql(&mut admin, &statement).await;
    }
    let step = UNANALYZED / BATCH_KEYS;
    let keys: Vec<(i64, i64, i64)> = (1..=BATCH_KEYS).map(|n| (7, 1, n * step)).collect();
    let new: Vec<(i64, i64, i64)> = (2..=BATCH_KEYS + 1).map(|n| (7, 1, NEW + n)).collect();
    let most = run_a_batch(&mut conn, &keys, &new, false).await;
    assert!(
        most <= BATCH_BOUND,
        "a statement read {most} rows of one table for a batch of {BATCH_KEYS}"
    );

    // The seven statements the connection keeps (the reservation's plain insert and its insert
    // that skips taken codes among them) were each planned once, generically, and run again on
    // that plan; the failure deletes were not kept.
    let plans: Vec<Plans> = diesel::sql_query(
        "select count(*) filter (where generic_plans >= 2) as reused, \
           coalesce(sum(custom_plans), 0)::bigint as custom \
         from pg_prepared_statements where statement not like '%pg_prepared_statements%'",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plans[0].custom, 0, "no statement planned for its values");
    assert_eq!(
        plans[0].reused, 7,
        "statements run again on their generic plan"
    );
    let left: Vec<Count> = diesel::sql_query("select count(*) as n from mint_failures")
        .load(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        left[0].n,
        (UNANALYZED - 1) - BATCH_KEYS,
        "of the failures of creators 2 to {UNANALYZED} and of the new, the batch's are cleared"
    );
}

#[tokio::test]
async fn fresh_codes_are_held_for_their_pusher_and_links_left_due() {
    let (_test_db, mut conn) = database().await;
    let keys: Vec<(i64, i64, i64)> = [1, 2].map(|creator| (7, 1, creator)).to_vec();
    let ids = drawn(&conn, &keys, false).await;
    let held = code(ids[0], 1, "ANNA");
    let link = Code {
        code: None,
        ..code(ids[1], 2, "")
    };
    let rows = [held, link];
    enroll(&mut conn, &rows).await;
    let events: Vec<NewEvent> = rows.iter().map(event).collect();
    codes::reserve(
        &mut conn,
        &rows,
        &events,
        &[false, false],
        &[""; 2],
        Taken::Fail,
        120,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let due: Vec<Row> = diesel::sql_query(
        "select creator_id as brand_id, \
           case when next_push_at > now() + interval '110 seconds' then 'held' \
                when next_push_at <= now() then 'due' else 'other' end as what \
         from codes order by creator_id",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let due: Vec<(i64, &str)> = due.iter().map(|r| (r.brand_id, r.what.as_str())).collect();
    assert_eq!(due, [(1, "held"), (2, "due")]);
}

#[tokio::test]
async fn a_creators_live_code_is_never_looked_up_through_the_campaign_index() {
    #[derive(QueryableByName)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let test_db = TestDb::new(SCHEMAS).await;
    let one = PoolOptions::default().planned_once(1);
    let db =
        Database::new(test_db.url(), mint_service::SCHEMA, one).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Even with the creator index gone, a batch's lookups of live codes (planned once, without
    // statistics) cannot take the campaign index, whose range is the creator's whole campaign.
    sql(
        &mut conn,
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug) \
         select 7, g % 20, g, 1, 1, 'PROVIDER_SANDBOX', 'C' || g, 'active', 's' || g \
         from generate_series(1, 4000) g",
    )
    .await;
    sql(&mut conn, "begin").await;
    sql(&mut conn, "drop index codes_live_creator").await;
    let keys: Vec<(i64, i64, i64)> = (1..=3).map(|creator| (7, 1, creator)).collect();
    let live = codes::live_for(&conn, &keys)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(live.iter().map(|c| c.creator_id).collect::<Vec<_>>(), [1]);
    assert_eq!(drawn(&conn, &keys, true).await.len(), 2);
    let scans: Scans =
        diesel::sql_query("select pg_stat_get_xact_numscans('codes_by_campaign'::regclass) as n")
            .get_result(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scans.n, 0, "lookups through codes_by_campaign");
    sql(&mut conn, "rollback").await;
}

/// Reserves `rows` (their links made from plan terms keyed `links_key`) on `conn` while another
/// session holds their campaign's roster, as the projection does, and has run `change` in its
/// transaction; that session commits once the reservation waits for its hold. What the
/// reservation did, and `conn` back.
async fn reserve_while_the_projection_holds(
    test_db: &TestDb,
    mut conn: Conn,
    rows: &[Code],
    links_key: &str,
    change: &str,
) -> (codes::Reserved, Conn) {
    let pool = test_db.pool(mint_service::SCHEMA);
    let mut projector = pool.conn().await.unwrap_or_else(|e| panic!("{e}"));
    sql(&mut projector, "begin").await;
    projection::hold_rosters(&mut projector, &[(7, 1)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sql(&mut projector, change).await;
    let events: Vec<NewEvent> = rows.iter().map(event).collect();
    let batch = {
        let rows = rows.to_vec();
        let links_key = links_key.to_owned();
        tokio::spawn(async move {
            let clear = vec![false; rows.len()];
            let reserved = codes::reserve(
                &mut conn,
                &rows,
                &events,
                &clear,
                &vec![links_key.as_str(); rows.len()],
                Taken::Fail,
                0,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            (reserved, conn)
        })
    };
    let mut watcher = pool.conn().await.unwrap_or_else(|e| panic!("{e}"));
    until_lock_wait(&mut watcher, &batch).await;
    sql(&mut projector, "commit").await;
    batch.await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn only_creators_on_the_roster_get_a_code_even_one_removed_while_it_is_written() {
    let (test_db, mut conn) = database().await;
    let rows = numbered_codes(&conn, 4).await;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    // Creator 4 was never added; creator 3 was removed before the batch; creator 2 is being
    // removed (not yet committed) when the batch writes.
    enroll(&mut conn, &rows[..3]).await;
    sql(
        &mut conn,
        "update roster set status = 'removed' where creator_id = 3",
    )
    .await;
    // As the projection applies a removal: the campaign's roster held, the entry changed; the
    // batch waits for the hold, then sees creator 2 removed.
    let (reserved, mut conn) = reserve_while_the_projection_holds(
        &test_db,
        conn,
        &rows,
        "",
        "update roster set status = 'removed' where creator_id = 2",
    )
    .await;
    assert_eq!(
        reserved,
        codes::Reserved {
            inserted: [ids[0]].into(),
            off_roster: [ids[1], ids[2], ids[3]].into(),
            relinked: [].into(),
            stale_links: [].into(),
        }
    );
    let stored: Vec<Row> = diesel::sql_query(
        "select brand_id, string_agg(code, ',') || ' ' || \
           (select count(*) from events) as what from codes group by brand_id",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored,
        [Row {
            brand_id: 7,
            what: "C1 1".to_owned()
        }],
        "creator 1's code and its event only"
    );
}

#[tokio::test]
async fn a_code_of_a_plan_its_campaign_left_while_it_is_written_is_refused() {
    let (test_db, mut conn) = database().await;
    let rows = numbered_codes(&conn, 2).await;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    enroll(&mut conn, &rows).await;
    // The campaign is linked to plan 1, the codes' plan.
    sql(
        &mut conn,
        "insert into campaigns (brand_id, id, name, plan_id, archived) \
         values (7, 1, 'Summer', 1, false)",
    )
    .await;
    // As the projection applies a relink: the campaign's roster held, its plan changed; the
    // batch waits for the hold, then sees the campaign's new plan.
    let (reserved, mut conn) = reserve_while_the_projection_holds(
        &test_db,
        conn,
        &rows,
        "",
        "update campaigns set plan_id = 2 where id = 1",
    )
    .await;
    assert_eq!(
        reserved,
        codes::Reserved {
            inserted: [].into(),
            off_roster: [].into(),
            relinked: [ids[0], ids[1]].into(),
            stale_links: [].into(),
        }
    );
    let stored: Vec<Row> = diesel::sql_query(
        "select 7::bigint as brand_id, \
           (select count(*) from codes) || ' ' || (select count(*) from events) as what",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored[0].what, "0 0", "no code, no event");
}

/// Codes whose links were made from plan terms the projection changes while they are written
/// are refused (the projection, holding the campaign's roster, gives the plan's codes their new
/// links only from those written before); a change of other terms refuses nothing.
#[tokio::test]
async fn codes_whose_plans_links_changed_while_they_are_written_are_refused() {
    let (test_db, mut conn) = database().await;
    sql(
        &mut conn,
        &format!(
            "insert into plans (brand_id, id, name, integration_id, provider, terms, \
               code_trigger, archived) \
             values (7, 1, 'Summer', 1, 'PROVIDER_SANDBOX', '{}', 'on_approval', false)",
            serde_json::to_string(&PlanTerms {
                click_url: "https://shop.example/old".into(),
                ..PlanTerms::default()
            })
            .unwrap_or_else(|e| panic!("{e}"))
        ),
    )
    .await;
    sql(
        &mut conn,
        "insert into campaigns (brand_id, id, name, plan_id, archived) \
         values (7, 1, 'Summer', 1, false)",
    )
    .await;
    let key = links_key(&mut conn).await;
    let rows = numbered_codes(&conn, 2).await;
    enroll(&mut conn, &rows).await;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let (reserved, mut conn) = reserve_while_the_projection_holds(
        &test_db,
        conn,
        &rows,
        &key,
        "update plans set terms = jsonb_set(terms, '{click_url}', '\"https://shop.example/new\"') \
         where brand_id = 7 and id = 1",
    )
    .await;
    assert_eq!(
        reserved,
        codes::Reserved {
            inserted: [].into(),
            off_roster: [].into(),
            relinked: [].into(),
            stale_links: [ids[0], ids[1]].into(),
        }
    );
    let changed = links_key(&mut conn).await;
    assert_ne!(changed, key);
    // The pattern changed: the links are the same.
    let (reserved, _conn) = reserve_while_the_projection_holds(
        &test_db,
        conn,
        &rows,
        &changed,
        "update plans set terms = jsonb_set(terms, '{code_pattern}', '\"{username}\"') \
         where brand_id = 7 and id = 1",
    )
    .await;
    assert_eq!(reserved.inserted, ids.iter().copied().collect());
}

/// Plan 1's links key as the projection has it.
async fn links_key(conn: &mut AsyncPgConnection) -> String {
    projection::get_plan(conn, 7, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("plan 1 is projected"))
        .links_key
}
