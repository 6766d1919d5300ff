//! The pusher's statements probe the codes they are given even when the table's statistics have
//! never seen the brand ([`tracking_db::stale_statistics`]): the forms these replaced read all of
//! the new brand's codes for a batch. Its look for due deactivations, counted the same way, reads
//! the due ones only (`store_disables_due`). A mint batch's plans, read through its campaigns,
//! and single lookups (a campaign, a creator's code, a code by text) are checked the same way.
//! So is a new deployment's table, before any analyze: a mint batch's and the pusher's
//! statements probe a batch of a few hundred codes rather than hash the whole table.

use std::collections::BTreeSet;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use tracking_db::stale_statistics::{
    self, BATCH_BOUND, BATCH_KEYS, BOUND, KNOWN, NEW, UNANALYZED, execute as sql, fill,
    fill_unanalyzed, rows_read_by, without_autovacuum,
};
use tracking_db::{Database, SchemaSpec, TestDb};

use mint_service::domain::{CodeStatus, PlanTerms, RosterStatus};
use mint_service::store::{codes, projection};

static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

/// Codes per call, as the pusher's rounds take them.
const KEYS: usize = stale_statistics::KEYS as usize;

struct Setup {
    _test_db: TestDb,
    db: Database,
    /// Brand 2's pending code ids; the code of id `ids[n]` is `B2x{n+1}`, and the higher `n`, the
    /// longer it has been due.
    ids: Vec<i64>,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Brand 1's codes analyzed (active, but one in 50 waits for a retry tomorrow, so the statistics
/// know pending codes); brand 2's pending codes unseen by the statistics.
async fn setup() -> Setup {
    setup_filled(false).await
}

/// As [`setup`], or with brand 2's codes only, in a table never analyzed ([`fill_unanalyzed`]).
async fn setup_filled(unanalyzed: bool) -> Setup {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // The push queue, filled by the codes' trigger, is never analyzed either.
    without_autovacuum(&mut conn, "code_pushes").await;
    if unanalyzed {
        fill_unanalyzed(&mut conn, "codes", code_rows).await;
    } else {
        fill(&mut conn, "codes", code_rows).await;
    }
    let ids = diesel::sql_query("select id from codes where brand_id = 2 order by id")
        .load::<Id>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|row| row.id)
        .collect();
    Setup {
        _test_db: test_db,
        db,
        ids,
    }
}

/// Codes of creators 1..=`count` of brand `brand`'s campaign `brand`: brand 2's pending, the
/// creator's number of seconds overdue; brand 1's as in [`setup`].
fn code_rows(brand: i64, count: i64) -> String {
    let (status, due) = if brand == 1 {
        (
            "case when g % 50 = 0 then 'pending' else 'active' end",
            "case when g % 50 = 0 then now() + interval '1 day' else now() end",
        )
    } else {
        ("'pending'", "now() - make_interval(secs => g)")
    };
    format!(
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug, next_push_at) \
         select {brand}, {brand}, g, {brand}, {brand}, 'PROVIDER_SANDBOX', \
           'B{brand}x' || g, {status}, 's{brand}-' || g, {due} \
         from generate_series(1, {count}) g"
    )
}

fn ids_of(codes: &[mint_service::domain::Code]) -> BTreeSet<i64> {
    codes.iter().map(|code| code.id).collect()
}

#[tokio::test]
async fn activating_and_retrying_codes_reads_only_those_codes() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let (activate, rest) = setup.ids[1000..1000 + 3 * KEYS].split_at(KEYS);
    let (retry, dequeue) = rest.split_at(KEYS);

    let (activated, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::set_status(conn, 2, activate, CodeStatus::Active).await
    })
    .await;
    assert_eq!(ids_of(&activated), activate.iter().copied().collect());
    assert!(activated.iter().all(|c| c.status == CodeStatus::Active));
    assert!(
        read <= BOUND,
        "activation read {read} rows for {KEYS} codes"
    );
    // The push queue's trigger, on a queue that no analyze has seen, probes its keys too.
    let (_, read) = rows_read_by(&mut conn, "code_pushes", async |conn| {
        codes::set_status(conn, 2, dequeue, CodeStatus::Active).await
    })
    .await;
    assert!(
        read <= BOUND,
        "activation read {read} rows of the push queue for {KEYS} codes"
    );

    let ((), read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::push_failed(conn, 2, retry, "store down", 30).await
    })
    .await;
    assert!(read <= BOUND, "recording a failed push read {read} rows");
    let waiting = diesel::sql_query(
        "select id from codes where brand_id = 2 and store_error = 'store down' \
         and next_push_at > now() order by id",
    )
    .load::<Id>(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        waiting.iter().map(|row| row.id).collect::<Vec<_>>(),
        retry,
        "every failed code, and only those, waits for its retry"
    );

    let links: Vec<(i64, String, String)> = retry
        .iter()
        .map(|&id| (id, format!("https://a.example/{id}"), String::new()))
        .collect();
    // The round that sets links holds them first.
    let held_until = codes::hold(
        &mut conn,
        &retry.iter().map(|&id| (2, id)).collect::<Vec<_>>(),
        120,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (linked, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::set_links(conn, 2, &links, held_until).await
    })
    .await;
    assert_eq!(ids_of(&linked), retry.iter().copied().collect());
    assert!(read <= BOUND, "setting links read {read} rows");
}

#[tokio::test]
async fn fresh_codes_are_read_by_key_held_or_locked_and_only_while_pending() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let keys = &setup.ids[..KEYS];
    let (held, rest) = keys.split_at(10);
    let (pushed, rest) = rest.split_at(10);
    let (locked, due) = rest.split_at(10);
    let list = |ids: &[i64]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    sql(
        &mut conn,
        &format!(
            "update codes set next_push_at = now() + interval '1 hour' \
             where brand_id = 2 and id in ({})",
            list(held)
        ),
    )
    .await;
    sql(
        &mut conn,
        &format!(
            "update codes set status = 'active' where brand_id = 2 and id in ({})",
            list(pushed)
        ),
    )
    .await;
    // A brand's edit holds these (the read takes no lock, so it does not wait).
    let mut other = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    sql(&mut other, "begin").await;
    sql(
        &mut other,
        &format!(
            "select id from codes where brand_id = 2 and id in ({}) for update",
            list(locked)
        ),
    )
    .await;

    let mut asked: Vec<(i64, i64)> = keys.iter().map(|&id| (2, id)).collect();
    asked.push((2, i64::MAX)); // no such code
    asked.push((1, 1)); // brand 1's code, active
    let (taken, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::pushable_of(conn, &asked).await
    })
    .await;
    let pushable: BTreeSet<i64> = held.iter().chain(locked).chain(due).copied().collect();
    assert_eq!(
        ids_of(&taken),
        pushable,
        "every pending code asked for, held or locked"
    );
    assert!(read <= BOUND, "taking {KEYS} fresh codes read {read} rows");
    sql(&mut other, "rollback").await;
}

#[tokio::test]
async fn the_scan_takes_the_longest_due_codes_in_index_order() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Random reads priced so that reading and sorting every pending code looks cheaper than the
    // index in order, as it did to the planner in a big run's tail (the pending codes were
    // scattered over the table by their updates).
    sql(&mut conn, "set random_page_cost = 1000").await;
    let (taken, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::due_for_push(conn, KEYS as i64).await
    })
    .await;
    let oldest: Vec<i64> = setup.ids.iter().rev().take(KEYS).copied().collect();
    assert_eq!(taken.iter().map(|code| code.id).collect::<Vec<_>>(), oldest);
    assert!(read <= BOUND, "the scan read {read} rows for {KEYS} codes");
    let (taken, read) = rows_read_by(&mut conn, "code_pushes", async |conn| {
        codes::due_for_push(conn, KEYS as i64).await
    })
    .await;
    assert_eq!(taken.len(), KEYS);
    assert!(
        read <= BOUND,
        "the scan read {read} rows of the push queue for {KEYS} codes"
    );
}

#[tokio::test]
async fn holders_are_looked_up_code_by_code() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let mut asked: Vec<String> = (1..=KEYS).map(|n| format!("B2X{n}")).collect();
    asked.push("nobody-has-this".to_owned());
    let (held, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::holders(conn, 2, 2, &asked).await
    })
    .await;
    let expected: BTreeSet<(String, i64, i64, bool)> = (1..=KEYS as i64)
        .map(|n| (format!("b2x{n}"), 2, n, true))
        .collect();
    let held: BTreeSet<_> = held
        .into_iter()
        .map(|h| (h.code, h.campaign_id, h.creator_id, h.live))
        .collect();
    assert_eq!(held, expected);
    assert!(read <= BOUND, "looking up {KEYS} codes read {read} rows");
}

#[tokio::test]
async fn due_deactivations_are_taken_in_order_not_all_of_them_and_held() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Integration 1's codes wait an hour for their retry (the store is down); of integration
    // 2's, the first 50 are due.
    fill(&mut conn, "store_disables", |integration, count| {
        let next_at = if integration == 1 {
            "now() + interval '1 hour'"
        } else {
            "now() + make_interval(secs => g - 50)"
        };
        format!(
            "insert into store_disables (brand_id, integration_id, code, next_at) \
             select 1, {integration}, 'code-' || g, {next_at} from generate_series(1, {count}) g"
        )
    })
    .await;
    let (due, read) = rows_read_by(&mut conn, "store_disables", async |conn| {
        codes::take_store_disables(conn, KEYS as i64, 120).await
    })
    .await;
    let mut texts: Vec<String> = due.iter().map(|item| item.code.clone()).collect();
    texts.sort();
    let mut expected: Vec<String> = (1..=50).map(|g| format!("code-{g}")).collect();
    expected.sort();
    assert_eq!(texts, expected);
    assert!(read <= BOUND, "50 due deactivations read {read} rows");
    let again = codes::take_store_disables(&mut conn, KEYS as i64, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_empty(), "held: {again:?}");

    // Queued again while the store was called (the text replaced once more): the round's
    // answer does not forget it.
    codes::queue_store_disable(&mut conn, 1, 2, "code-7", 7)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for item in &due {
        codes::store_disable_done(&mut conn, item)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let left = codes::take_store_disables(&mut conn, KEYS as i64, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // (Codes from 51 on fall due a second apart from the start.)
    let left: Vec<(&str, &str)> = left
        .iter()
        .map(|item| (item.code.as_str(), item.external_ref.as_str()))
        .filter(|(code, _)| expected.iter().any(|e| e == code))
        .collect();
    // With the ref of the code whose discount it is: only that one is deactivated.
    assert_eq!(left, [("code-7", "code-7")]);
}

#[tokio::test]
async fn a_page_of_pending_or_active_codes_reads_that_page() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Brand 1's campaign: one code in 50 pending; brand 2's: every code pending, unseen.
    for (brand, status) in [
        (1, CodeStatus::Pending),
        (1, CodeStatus::Active),
        (2, CodeStatus::Pending),
    ] {
        let (page, read) = rows_read_by(&mut conn, "codes", async |conn| {
            codes::list(conn, brand, brand, None, Some(status), Some(1_000), 50).await
        })
        .await;
        assert_eq!(page.len(), 50);
        assert!(page.iter().all(|code| code.status == status));
        assert!(page.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert!(
            read <= BOUND,
            "a page of 50 {} codes of brand {brand} read {read} rows",
            status.as_str()
        );
    }
}

#[tokio::test]
async fn single_codes_are_found_by_creator_and_by_text() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let mut read = 0;
    for creator in (1..=KEYS as i64 / 4).map(|n| n * 1_000) {
        let (live, n) = rows_read_by(&mut conn, "codes", async |conn| {
            codes::live_of_creators(conn, &[(2, 2, creator)]).await
        })
        .await;
        read += n;
        let live = live
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("creator {creator} has a live code"));
        assert_eq!(live.code.as_deref(), Some(format!("B2x{creator}").as_str()));

        let (found, n) = rows_read_by(&mut conn, "codes", async |conn| {
            codes::resolve(conn, 2, 2, &format!("b2X{creator}")).await
        })
        .await;
        read += n;
        assert_eq!(
            found.map(|code| code.id),
            Some(live.id),
            "found case-insensitively"
        );

        // Renamed onto another code's text: refused; onto a free one: done.
        let taken = format!("b2x{}", creator + 1);
        let (refused, n) = rows_read_by(&mut conn, "codes", async |conn| {
            codes::rename(conn, &live, &taken, "", "edit", CodeStatus::Pending).await
        })
        .await;
        read += n;
        assert!(refused.is_none(), "{taken} is taken");
        let free = format!("FREE{creator}");
        let (renamed, n) = rows_read_by(&mut conn, "codes", async |conn| {
            codes::rename(conn, &live, &free, "", "edit", CodeStatus::Pending).await
        })
        .await;
        read += n;
        assert_eq!(renamed.and_then(|code| code.code), Some(free));
    }
    let (absent, n) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::resolve(conn, 2, 1, "B2x1000").await
    })
    .await;
    assert!(absent.is_none(), "another integration's text");
    read += n;
    assert!(read <= BOUND, "{KEYS} single lookups read {read} rows");
}

#[tokio::test]
async fn creators_without_a_code_are_queued_in_one_pass_over_the_codes() {
    let setup = setup().await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Each brand's campaign of its plan, and a creator on its roster per code; of brand 2's,
    // one creator in 300 has a disabled code and no live one (not the brand's disable, which
    // the roster would record), so has no code.
    sql(
        &mut conn,
        "insert into campaigns (brand_id, id, name, plan_id, archived) \
         values (1, 1, 'known', 1, false), (2, 2, 'new', 2, false)",
    )
    .await;
    fill(&mut conn, "roster", |brand, count| {
        format!(
            "insert into roster (brand_id, campaign_id, creator_id, profile, status) \
             select {brand}, {brand}, g, '{{}}', 'approved' from generate_series(1, {count}) g"
        )
    })
    .await;
    sql(
        &mut conn,
        "update codes set status = 'disabled' where brand_id = 2 and creator_id % 300 = 0",
    )
    .await;

    let (queued, read) = rows_read_by(&mut conn, "codes", async |conn| {
        projection::enqueue_missing(conn, 2, Some(2), None, &[RosterStatus::Approved]).await
    })
    .await;
    assert_eq!(queued as i64, NEW / 300, "the creators without a live code");
    assert!(
        read <= KNOWN + NEW,
        "queueing read {read} codes: more than one pass over the table"
    );
}

/// Campaigns of brand `brand` numbered 1..=`count` (brand 2's from 100,001); one in 300 uses the
/// brand's plan of the brand's number.
fn campaigns(brand: i64, count: i64) -> String {
    let first = if brand == 1 { 0 } else { 100_000 };
    format!(
        "insert into campaigns (brand_id, id, name, plan_id, archived) \
         select {brand}, {first} + g, 'c' || g, case when g % 300 = 0 then {brand} end, false \
         from generate_series(1, {count}) g"
    )
}

#[tokio::test]
async fn a_campaign_is_read_by_its_key() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Brand 2's campaigns are numbered from 100,001; one in 300 uses plan 2.
    fill(&mut conn, "campaigns", campaigns).await;
    let mut read = 0;
    for id in (1..=KEYS as i64).map(|n| 100_000 + n * 300) {
        let (campaign, n) = rows_read_by(&mut conn, "campaigns", async |conn| {
            projection::get_campaign(conn, 2, id).await
        })
        .await;
        let campaign = campaign.unwrap_or_else(|| panic!("campaign {id} is stored"));
        assert_eq!((campaign.id, campaign.plan_id), (id, Some(2)));
        read += n;
    }
    assert!(read <= BOUND, "{KEYS} campaigns read {read} rows");
}

#[tokio::test]
async fn a_batchs_plans_are_read_through_its_campaigns_by_key() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Brand 2's campaigns are numbered from 100,001; one in 300 uses brand 2's plan 2.
    fill(&mut conn, "campaigns", campaigns).await;
    let terms = serde_json::to_string(&PlanTerms::default()).unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "plans", |brand, count| {
        format!(
            "insert into plans (brand_id, id, name, integration_id, provider, terms, \
               code_trigger, archived) \
             select {brand}, g, 'p' || g, 1, 'PROVIDER_SANDBOX', '{terms}', 'on_add', false \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    // A batch of creators of many campaigns, each campaign twice.
    let keys: Vec<(i64, i64, i64)> = (1..=KEYS as i64)
        .map(|n| (2, 100_000 + (n + 1) / 2 * 300, n))
        .collect();
    for table in ["campaigns", "plans"] {
        let (plans, read) = rows_read_by(&mut conn, table, async |conn| {
            projection::plans_of_campaigns(conn, &keys).await
        })
        .await;
        let found: Vec<(i64, i64)> = plans.iter().map(|p| (p.brand_id, p.id)).collect();
        assert_eq!(found, [(2, 2)], "the campaigns' one plan, once");
        assert!(read <= BOUND, "{KEYS} keys read {read} {table}");
    }
}

#[tokio::test]
async fn a_new_deployments_codes_are_probed_by_key_before_any_analyze() {
    let setup = setup_filled(true).await;
    let mut conn = setup.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Codes spread over the table: every one of the batch on a page of its own.
    let step = (UNANALYZED / BATCH_KEYS) as usize;
    let batch: Vec<i64> = setup.ids.iter().step_by(step).copied().collect();
    let creators: Vec<(i64, i64, i64)> = (0..batch.len() as i64)
        .map(|n| (2, 2, 1 + n * step as i64))
        .collect();
    let wanted: BTreeSet<i64> = batch.iter().copied().collect();

    let (drawn, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::draw_ids(conn, &creators, true).await
    })
    .await;
    assert!(
        drawn.ids.iter().all(Option::is_none),
        "every creator has a live code"
    );
    assert!(read <= BATCH_BOUND, "drawing ids read {read} rows");

    let (live, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::live_for(conn, &creators).await
    })
    .await;
    assert_eq!(ids_of(&live), wanted);
    assert!(read <= BATCH_BOUND, "reading live codes read {read} rows");

    // Removed creators' codes: found (as above), then locked by id.
    let (removed, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::live_of_creators(conn, &creators).await
    })
    .await;
    assert_eq!(ids_of(&removed), wanted);
    assert!(
        read <= 2 * BATCH_BOUND,
        "locking removed creators' codes read {read} rows"
    );

    let keys: Vec<(i64, i64)> = batch.iter().map(|&id| (2, id)).collect();
    let (due, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::pushable_of(conn, &keys).await
    })
    .await;
    assert_eq!(ids_of(&due), wanted);
    assert!(read <= BATCH_BOUND, "reading fresh codes read {read} rows");

    let (_, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::hold(conn, &keys, 120).await
    })
    .await;
    assert!(read <= BATCH_BOUND, "holding codes read {read} rows");

    let (locked, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::locked_of(conn, &keys).await
    })
    .await;
    assert_eq!(ids_of(&locked), wanted);
    assert!(
        read <= BATCH_BOUND,
        "locking codes to record answers read {read} rows"
    );

    let (activated, read) = rows_read_by(&mut conn, "codes", async |conn| {
        codes::set_status(conn, 2, &batch, CodeStatus::Active).await
    })
    .await;
    assert_eq!(ids_of(&activated), wanted);
    assert!(read <= BATCH_BOUND, "activation read {read} rows");
}
