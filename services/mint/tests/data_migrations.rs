//! The mint schema's data migrations, each run again on rows as they were before it:
//! - `retry_pattern_failures` queues again the creators whose codes failed as PATTERN before the
//!   pattern engine spelled Cyrillic and Greek: only where the plan's trigger still wants a code,
//!   and after a wait that keeps replicas of the older engine from taking them;
//! - `failures_by_trigger_before` takes failures recorded before `by_trigger` existed, and
//!   untouched since, as the trigger's where the plan's trigger wants the creator's code now.

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use tracking_db::{SchemaSpec, TestDb};

static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

const RETRY_PATTERN_FAILURES: &str =
    include_str!("../migrations/2026-12-13-000001_retry_pattern_failures/up.sql");
const FAILURES_BY_TRIGGER_BEFORE: &str =
    include_str!("../migrations/2026-12-14-000001_failures_by_trigger_before/up.sql");

#[derive(QueryableByName)]
struct Creator {
    #[diesel(sql_type = BigInt)]
    creator_id: i64,
}

/// A migrated mint schema holding plan 10, minting when a creator is added, and plan 11, at
/// approval.
async fn with_plans() -> (TestDb, tracking_db::Conn) {
    let test_db = TestDb::new(SCHEMAS).await;
    let mut conn = test_db
        .pool("mint")
        .conn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conn.batch_execute(
        "insert into plans (brand_id, id, name, integration_id, provider, terms, code_trigger, archived)
         values (1, 10, 'p', 100, 'PROVIDER_SANDBOX', '{}', 'on_add', false),
                (1, 11, 'q', 100, 'PROVIDER_SANDBOX', '{}', 'on_approval', false);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (test_db, conn)
}

#[tokio::test]
async fn pattern_failures_the_trigger_still_wants_are_queued_again() {
    let (_test_db, mut conn) = with_plans().await;
    // Campaign 5 (plan 10, minting when added) and archived campaign 6 (same plan). Creators:
    // 1 added, PATTERN by the trigger: queued. 2 the same, failed by the brand's own MintCode:
    // queued too (the trigger wants it). 3 a missing profile field. 4 removed. 5 has a live code since. 6 in the archived campaign.
    // 7 added, but its campaign's plan 11 mints at approval.
    conn.batch_execute(
        "insert into campaigns (brand_id, id, name, plan_id, archived)
         values (1, 5, 'c', 10, false), (1, 6, 'old', 10, true), (1, 7, 'd', 11, false);
         insert into roster (brand_id, campaign_id, creator_id, profile, status)
         values (1, 5, 1, '{}', 'added'), (1, 5, 2, '{}', 'added'), (1, 5, 3, '{}', 'added'),
                (1, 5, 4, '{}', 'removed'), (1, 5, 5, '{}', 'approved'), (1, 6, 6, '{}', 'added'),
                (1, 7, 7, '{}', 'added');
         insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, provider,
                            code, status, slug)
         values (1, 5, 5, 10, 100, 'PROVIDER_SANDBOX', 'ANNA20', 'active', 'anna-slug');
         insert into mint_failures (brand_id, campaign_id, creator_id, reason, message, by_trigger)
         values (1, 5, 1, 'pattern', 'x', true), (1, 5, 2, 'pattern', 'x', false),
                (1, 5, 3, 'missing_profile_field', 'x', true), (1, 5, 4, 'pattern', 'x', true),
                (1, 5, 5, 'pattern', 'x', true), (1, 6, 6, 'pattern', 'x', true),
                (1, 7, 7, 'pattern', 'x', true);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    conn.batch_execute(RETRY_PATTERN_FAILURES)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queued: Vec<Creator> = diesel::sql_query(
        "select creator_id from mint_queue
         where claimed_until > now() + interval '9 minutes' order by creator_id",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let queued: Vec<i64> = queued.into_iter().map(|q| q.creator_id).collect();
    assert_eq!(queued, [1, 2]);
}

#[tokio::test]
async fn old_failures_the_trigger_wants_become_the_triggers() {
    let (_test_db, mut conn) = with_plans().await;
    // Campaign 5's plan 10 mints when added, campaign 7's plan 11 at approval. Failures from
    // before the column (a day before it was added): 1 added under plan 10, 2 approved under plan
    // 11 (both wanted by the trigger), 3 added under plan 11 (not wanted: the brand's MintCode).
    // 4 is like 1 but failed again since the column came (its value is right already).
    conn.batch_execute(
        "insert into campaigns (brand_id, id, name, plan_id, archived)
         values (1, 5, 'c', 10, false), (1, 7, 'd', 11, false);
         insert into roster (brand_id, campaign_id, creator_id, profile, status)
         values (1, 5, 1, '{}', 'added'), (1, 7, 2, '{}', 'approved'), (1, 7, 3, '{}', 'added'),
                (1, 5, 4, '{}', 'added');
         insert into mint_failures (brand_id, campaign_id, creator_id, reason, message, by_trigger,
                                    failed_at)
         values (1, 5, 1, 'missing_profile_field', 'x', false, now() - interval '1 day'),
                (1, 7, 2, 'missing_profile_field', 'x', false, now() - interval '1 day'),
                (1, 7, 3, 'missing_profile_field', 'x', false, now() - interval '1 day'),
                (1, 5, 4, 'missing_profile_field', 'x', false, now() + interval '1 minute');",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    conn.batch_execute(FAILURES_BY_TRIGGER_BEFORE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let triggers: Vec<Creator> = diesel::sql_query(
        "select creator_id from mint_failures where by_trigger order by creator_id",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let triggers: Vec<i64> = triggers.into_iter().map(|c| c.creator_id).collect();
    assert_eq!(triggers, [1, 2]);
}
