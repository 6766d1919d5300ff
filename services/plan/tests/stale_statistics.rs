//! Roster reads probe their keys even when the table's statistics have never seen the campaign
//! ([`tracking_db::stale_statistics`]). With an index on (brand_id, campaign_id, status,
//! creator_id) the planner found it as cheap as the primary key for a lookup of one entry, and
//! each lookup read the campaign's whole range: adding creators slowed down as the roster grew.
//! A campaign's lookups by key (and by plan) are checked the same way, and so is a plan's page of
//! campaigns.

use std::collections::BTreeSet;

use tracking_db::stale_statistics::{
    BOUND, KEYS, NEW, execute, fill, index_pages_read_by, rows_read_by,
};
use tracking_db::{Database, SchemaSpec, TestDb};

use plan_service::domain::roster::{Profile, RosterStatus};
use plan_service::store::{Lock, campaigns, roster};

static SCHEMAS: &[SchemaSpec] = &[("plan", plan_service::MIGRATIONS)];

/// Brand `brand`'s campaign `brand` with creators 1..=`count`: every tenth approved, every
/// hundredth (of the others) removed, the rest added.
fn entries(brand: i64, count: i64) -> String {
    format!(
        "insert into roster (brand_id, campaign_id, creator_id, profile, status) \
         select {brand}, {brand}, g, \
           '{{\"first_name\":\"A\",\"last_name\":\"B\",\"email\":\"a@b.c\",\"username\":\"u\",\
             \"social_handles\":{{}}}}', \
           case when g % 10 = 0 then 'approved' when g % 100 = 1 then 'removed' else 'added' end \
         from generate_series(1, {count}) g"
    )
}

/// Brand 1's campaign 1 analyzed, brand 2's campaign 2 unseen by the statistics.
async fn setup() -> (TestDb, Database) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(plan_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into campaigns (brand_id, id, name) values (1, 1, 'known'), (2, 2, 'new')",
    )
    .await;
    fill(&mut conn, "roster", entries).await;
    (test_db, db)
}

#[tokio::test]
async fn entries_are_read_by_their_key_in_a_campaign_the_statistics_never_saw() {
    let (_test_db, db) = setup().await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));

    // Approving, removing or editing a creator looks the entry up (locked, then as stored) and
    // writes it.
    // The index that misled the planner returns the one entry wanted, so its cost shows in the
    // index pages read: a probe reads a page per level, a scan the campaign's whole range.
    let mut read = 0;
    for creator_id in (1..=KEYS / 4).map(|n| n * 1_000) {
        let (entry, n) = index_pages_read_by(&mut conn, "roster", async |conn| {
            roster::get(conn, 2, 2, creator_id, Lock::ForUpdate).await
        })
        .await;
        assert_eq!(entry.map(|e| e.creator_id), Some(creator_id));
        read += n;
        let ((), n) = index_pages_read_by(&mut conn, "roster", async |conn| {
            roster::set_status(conn, 2, 2, creator_id, RosterStatus::Approved).await
        })
        .await;
        read += n;
        let ((), n) = index_pages_read_by(&mut conn, "roster", async |conn| {
            roster::set_profile(conn, 2, 2, creator_id, &Profile::default()).await
        })
        .await;
        read += n;
        let (entry, n) = index_pages_read_by(&mut conn, "roster", async |conn| {
            roster::get(conn, 2, 2, creator_id, Lock::None).await
        })
        .await;
        let entry = entry.unwrap_or_else(|| panic!("creator {creator_id} is on the roster"));
        assert_eq!(entry.status, RosterStatus::Approved);
        assert_eq!(entry.profile, Profile::default());
        read += n;
    }
    let (absent, n) = index_pages_read_by(&mut conn, "roster", async |conn| {
        roster::get(conn, 2, 2, NEW + 1, Lock::ForUpdate).await
    })
    .await;
    assert!(absent.is_none());
    read += n;
    // Writes descend the index they add an entry to as well: 8 pages a call leaves room for
    // both (about 4 are read here); the scans read more than 30,000.
    let calls = KEYS + 1;
    assert!(
        read <= 8 * calls,
        "{calls} lookups and writes read {read} index pages"
    );

    // AddCreators reads its batch's entries in one statement: every key probed, whether the
    // planner hashes them or not (rows read count a sequential scan, which reads no index page).
    let mut ids: Vec<i64> = (1..=KEYS).map(|n| n * 7).collect();
    ids.push(NEW + 1); // not on the roster
    let (entries, read) = rows_read_by(&mut conn, "roster", async |conn| {
        roster::get_many(conn, 2, 2, &ids).await
    })
    .await;
    assert_eq!(
        entries.iter().map(|e| e.creator_id).collect::<Vec<_>>(),
        ids[..KEYS as usize]
    );
    assert!(read <= BOUND, "{KEYS} entries read {read} rows");
}

#[tokio::test]
async fn a_page_of_one_status_reads_that_status_only() {
    let (_test_db, db) = setup().await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));

    for (status, wanted) in [
        (
            RosterStatus::Approved,
            (1..=KEYS).map(|n| n * 10).collect::<Vec<_>>(),
        ),
        (
            RosterStatus::Removed,
            (0..KEYS).map(|n| n * 100 + 1).collect(),
        ),
    ] {
        let (page, read) = rows_read_by(&mut conn, "roster", async |conn| {
            roster::list(conn, 2, 2, Some(status), None, KEYS).await
        })
        .await;
        let creators: Vec<i64> = page.iter().map(|e| e.creator_id).collect();
        assert_eq!(creators, wanted, "{status:?}");
        assert!(read <= BOUND, "a page of {KEYS} read {read} entries");
    }
    let (page, _) = rows_read_by(&mut conn, "roster", async |conn| {
        roster::list(conn, 2, 2, None, Some(NEW - 5), KEYS).await
    })
    .await;
    let creators: BTreeSet<i64> = page.iter().map(|e| e.creator_id).collect();
    assert_eq!(creators, (NEW - 4..=NEW).collect());
}

/// Plans 1 and 2 of brands 1 and 2, and their campaigns: brand 1's analyzed, brand 2's, numbered
/// from 100,001, unseen by the statistics. One campaign in 300 uses its brand's plan (100 of brand
/// 2's), and every other one of those is archived.
async fn setup_campaigns() -> (TestDb, Database) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(plan_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into plans (brand_id, id, name, integration_id, provider, terms, code_trigger) \
         values (1, 1, 'known', 1, 'PROVIDER_SANDBOX', '{}', 'added'), \
           (2, 2, 'new', 2, 'PROVIDER_SANDBOX', '{}', 'added')",
    )
    .await;
    fill(&mut conn, "campaigns", |brand, count| {
        let first = if brand == 1 { 0 } else { 100_000 };
        format!(
            "insert into campaigns (brand_id, id, name, plan_id, archived_at) \
             select {brand}, {first} + g, 'c' || g, case when g % 300 = 0 then {brand} end, \
               case when g % 600 = 0 then now() end \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    (test_db, db)
}

#[tokio::test]
async fn campaigns_are_read_and_changed_by_their_key() {
    let (_test_db, db) = setup_campaigns().await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));

    let ids: Vec<i64> = (1..=KEYS / 4).map(|n| 100_000 + n * 1_000 + 1).collect();
    let mut read = 0;
    for &id in &ids {
        let (campaign, n) = rows_read_by(&mut conn, "campaigns", async |conn| {
            campaigns::get(conn, 2, id, Lock::ForUpdate).await
        })
        .await;
        assert_eq!(campaign.map(|c| c.id), Some(id));
        read += n;
        let ((), n) = rows_read_by(&mut conn, "campaigns", async |conn| {
            campaigns::set_plan(conn, 2, id, 2).await
        })
        .await;
        read += n;
        let ((), n) = rows_read_by(&mut conn, "campaigns", async |conn| {
            campaigns::start_outreach(conn, 2, id).await
        })
        .await;
        read += n;
        let ((), n) = rows_read_by(&mut conn, "campaigns", async |conn| {
            campaigns::archive(conn, 2, id).await
        })
        .await;
        read += n;
    }
    assert!(
        read <= BOUND,
        "{KEYS} lookups and changes read {read} campaigns"
    );

    let (using, read) = rows_read_by(&mut conn, "campaigns", async |conn| {
        campaigns::using_plan(conn, 2, 2, Lock::ForUpdate).await
    })
    .await;
    let mut expected: Vec<i64> = (1..=NEW / 300).map(|n| 100_000 + n * 300).collect();
    expected.extend(&ids);
    expected.sort_unstable();
    assert_eq!(using.iter().map(|c| c.id).collect::<Vec<_>>(), expected);
    for campaign in using.iter().filter(|c| ids.contains(&c.id)) {
        assert!(campaign.outreach_started_at.is_some() && campaign.archived_at.is_some());
        assert_eq!(campaign.shared_with.len(), expected.len() - 1);
    }
    assert!(
        read <= BOUND + expected.len() as i64 * expected.len() as i64,
        "the plan's {} campaigns (each listing the others) read {read} campaigns",
        expected.len()
    );
}

#[tokio::test]
async fn a_plans_campaigns_are_paged_from_the_plans_index() {
    let (_test_db, db) = setup_campaigns().await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let ids = |page: &[plan_service::domain::campaign::Campaign]| {
        page.iter().map(|c| c.id).collect::<Vec<_>>()
    };
    // Each campaign of the plan lists the plan's others (`shared_with`): an index entry and a row
    // for each of the plan's 100 campaigns.
    let shared = |page: i64| 2 * 100 * page;

    let (page, read) = rows_read_by(&mut conn, "campaigns", async |conn| {
        campaigns::list(conn, 2, true, Some(2), None, 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        (51..=100)
            .rev()
            .map(|n| 100_000 + 300 * n)
            .collect::<Vec<_>>()
    );
    assert!(
        read <= BOUND + shared(50),
        "a plan's page of 50 read {read} campaigns"
    );

    let (page, read) = rows_read_by(&mut conn, "campaigns", async |conn| {
        campaigns::list(conn, 2, false, Some(2), Some(100_000 + 300 * 60), 10).await
    })
    .await;
    let unarchived: Vec<i64> = (1..60).rev().filter(|n| n % 2 == 1).take(10).collect();
    assert_eq!(
        ids(&page),
        unarchived
            .iter()
            .map(|n| 100_000 + 300 * n)
            .collect::<Vec<_>>()
    );
    assert!(
        read <= BOUND + shared(10),
        "a plan's page of 10 read {read} campaigns"
    );

    // The brand's newest 50: one of them (100,000 + 30,000) is the plan's.
    let (page, read) = rows_read_by(&mut conn, "campaigns", async |conn| {
        campaigns::list(conn, 2, true, None, None, 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        (NEW - 49..=NEW)
            .rev()
            .map(|g| 100_000 + g)
            .collect::<Vec<_>>()
    );
    assert!(
        read <= BOUND + shared(1),
        "the brand's page read {read} campaigns"
    );
}
