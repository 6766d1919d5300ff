//! CodeMintService's projection of PlanService's events applied a batch at a time ends as one
//! event at a time would: a plan's trigger switched, or a campaign unlinked, inside a batch
//! applies to the roster entries after it (and a switch to minting at approval takes the added
//! creators still queued off the queue).

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;
use tracking_api::plan::v1::{
    Campaign, CodeTrigger, CreatorProfile, Discount, EventKind, Plan, PlanEvent, RosterEntry,
    RosterStatus, discount, plan_event::Subject,
};
use tracking_db::{Database, DbError, SchemaSpec, TestDb};
use tracking_events::Apply;

use mint_service::projection::Projector;

static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

fn event(kind: EventKind, subject: Subject) -> PlanEvent {
    PlanEvent {
        brand_id: 1,
        kind: kind as i32,
        subject: Some(subject),
        ..PlanEvent::default()
    }
}

fn plan(kind: EventKind, trigger: CodeTrigger) -> PlanEvent {
    event(
        kind,
        Subject::Plan(Plan {
            id: 10,
            name: "Summer".into(),
            integration_id: 100,
            provider: Provider::Sandbox as i32,
            discount: Some(Discount {
                kind: Some(discount::Kind::PercentBps(2000)),
            }),
            code_pattern: "{username}{discount}".into(),
            click_url: "https://brand.example.com".into(),
            code_trigger: trigger as i32,
            ..Plan::default()
        }),
    )
}

fn campaign(kind: EventKind, plan_id: i64) -> PlanEvent {
    event(
        kind,
        Subject::Campaign(Campaign {
            id: 5,
            name: "Summer".into(),
            plan_id,
            ..Campaign::default()
        }),
    )
}

fn creator(id: i64, status: RosterStatus) -> PlanEvent {
    event(
        EventKind::CreatorAdded,
        Subject::RosterEntry(RosterEntry {
            campaign_id: 5,
            creator_id: id,
            status: status as i32,
            profile: Some(CreatorProfile {
                first_name: "Ana".into(),
                username: format!("ana{id}"),
                ..CreatorProfile::default()
            }),
            ..RosterEntry::default()
        }),
    )
}

fn events() -> Vec<(i64, PlanEvent)> {
    [
        plan(EventKind::PlanCreated, CodeTrigger::OnApproval),
        campaign(EventKind::CampaignCreated, 10),
        creator(1, RosterStatus::Added), // not approved: nothing to mint yet
        creator(2, RosterStatus::Approved), // minted on approval
        plan(EventKind::CodeTriggerChanged, CodeTrigger::OnAdd), // backfills creator 1
        creator(3, RosterStatus::Added), // minted on add now
        plan(EventKind::CodeTriggerChanged, CodeTrigger::OnApproval), // 1 and 3 dequeued
        creator(5, RosterStatus::Added), // not approved: nothing to mint
        campaign(EventKind::CampaignPlanLinked, 0), // unlinked: nothing mints
        creator(4, RosterStatus::Approved),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, e)| (n as i64 + 1, e))
    .collect()
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

async fn queued_after(apply: impl AsyncFnOnce(&Projector, &Database)) -> Vec<String> {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let projector = Projector {
        public_base_url: "http://links.test".into(),
    };
    apply(&projector, &db).await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query(
        "select concat_ws(' ', brand_id, campaign_id, creator_id) as line from mint_queue \
         order by brand_id, campaign_id, creator_id",
    )
    .load::<Line>(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .into_iter()
    .map(|l| l.line)
    .collect()
}

#[tokio::test]
async fn plan_events_in_one_batch_end_as_if_applied_one_at_a_time() {
    let events = events();
    let one_by_one = queued_after(async |projector, db| {
        for (seq, event) in &events {
            let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
            conn.transaction::<_, DbError, _>(async |conn| {
                projector.apply(conn, *seq, event).await
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    })
    .await;
    let batched = queued_after(async |projector, db| {
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &events).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
    assert_eq!(one_by_one, ["1 5 2"]);
    assert_eq!(batched, one_by_one);
}

/// A test database with plan 10 (minting at approval) and its campaign 5, with `creators`
/// approved, projected (events 1 to 2 + `creators`).
async fn projected(creators: &[i64]) -> (TestDb, Database, std::sync::Arc<Projector>) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let projector = std::sync::Arc::new(Projector {
        public_base_url: "http://links.test".into(),
    });
    let setup: Vec<(i64, PlanEvent)> = (1..)
        .zip(
            [
                plan(EventKind::PlanCreated, CodeTrigger::OnApproval),
                campaign(EventKind::CampaignCreated, 10),
            ]
            .into_iter()
            .chain(
                creators
                    .iter()
                    .map(|id| creator(*id, RosterStatus::Approved)),
            ),
        )
        .collect();
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &setup).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (test_db, db, projector)
}

/// Plan 10 (campaign 5, creator 1 approved) projected; then, while a mint under way holds the
/// campaign's roster (`hold`, as a mint statement holds it) and has written creator 1's code
/// (`insert`), not committed, applies `change`, which must wait for the mint: the mint commits
/// once it does. Returns `sql`'s answer read after the change (one line a row).
async fn apply_while_minting(
    hold: &str,
    insert: &str,
    change: PlanEvent,
    sql: &str,
) -> Vec<String> {
    use tracking_db::stale_statistics::execute;
    let (_test_db, db, projector) = projected(&[1]).await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));

    let mut minting = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut minting, "begin").await;
    execute(&mut minting, hold).await;
    execute(&mut minting, insert).await;
    let applied = tokio::spawn(async move {
        conn.transaction::<_, DbError, _>(async |conn| {
            projector.apply_batch(conn, &[(4, change)]).await
        })
        .await
    });
    let mut watcher = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    tracking_db::until_lock_wait(&mut watcher, &applied).await;
    execute(&mut minting, "commit").await;
    applied
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Line> = diesel::sql_query(sql)
        .load(&mut watcher)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    lines.into_iter().map(|l| l.line).collect()
}

#[tokio::test]
async fn a_removal_waits_for_the_codes_being_minted_for_the_campaign_and_disables_them() {
    // A mint under way: the campaign's roster held (as codes' statements hold it), creator 1's
    // code written; the removal, applied meanwhile, waits for the mint and then disables it.
    let status = apply_while_minting(
        "select count(*) from roster_open(array[1], array[5], array[1])",
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug) \
         values (1, 5, 1, 10, 100, 'PROVIDER_SANDBOX', 'ANA20', 'pending', 's1')",
        creator(1, RosterStatus::Removed),
        "select status || ' ' || disabled as line from codes where creator_id = 1",
    )
    .await;
    assert_eq!(status, ["disabled true"]);
}

/// A change of a plan's link terms waits for the codes being minted under it, then gives them
/// the new links too (they were made from the old terms).
#[tokio::test]
async fn a_change_of_a_plans_links_waits_for_the_codes_being_minted_and_gives_them_the_new_ones() {
    let mut updated = plan(EventKind::PlanUpdated, CodeTrigger::OnApproval);
    if let Some(Subject::Plan(plan)) = &mut updated.subject {
        plan.click_url = "https://brand.example.com/new".into();
    }
    // The roster held as a batch's statement holds it, the code's links made from the plan's
    // terms as read.
    let links = apply_while_minting(
        "select count(*) from roster_open_for_plans(array[1], array[5], array[1], array[10], \
           array[(select links_key from plans where brand_id = 1 and id = 10)])",
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug, destination_url) \
         values (1, 5, 1, 10, 100, 'PROVIDER_SANDBOX', 'ANA20', 'pending', 's1', \
           'https://brand.example.com')",
        updated,
        "select destination_url || ' ' || (select count(*) from events \
           where kind = 'CODE_EVENT_KIND_CHANGED') as line from codes where creator_id = 1",
    )
    .await;
    assert_eq!(links, ["https://brand.example.com/new 1"]);
}

#[tokio::test]
async fn a_relink_retires_the_codes_of_the_plan_left_and_queues_what_the_new_trigger_wants() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let projector = Projector {
        public_base_url: "http://links.test".into(),
    };
    let mut winter = plan(EventKind::PlanCreated, CodeTrigger::OnApproval);
    if let Some(Subject::Plan(plan)) = &mut winter.subject {
        plan.id = 11;
        plan.name = "Winter".into();
    }
    // Plan 10 mints when added; creators 1 (approved) and 2 (added) have its codes, creator 1's
    // refused by the store for good; creator 3 (added) is queued for one.
    let setup: Vec<(i64, PlanEvent)> = (1..)
        .zip([
            plan(EventKind::PlanCreated, CodeTrigger::OnAdd),
            winter,
            campaign(EventKind::CampaignCreated, 10),
            creator(1, RosterStatus::Approved),
            creator(2, RosterStatus::Added),
            creator(3, RosterStatus::Added),
        ])
        .collect();
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &setup).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    use tracking_db::stale_statistics::execute as sql;
    for statement in [
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug) \
         values (1, 5, 1, 10, 100, 'PROVIDER_SANDBOX', 'ANA1', 'active', 's1'), \
                (1, 5, 2, 10, 100, 'PROVIDER_SANDBOX', 'ANA2', 'active', 's2')",
        "delete from mint_queue where creator_id in (1, 2)",
        "insert into mint_failures (brand_id, campaign_id, creator_id, reason, message) \
         values (1, 5, 1, 'store_error', 'the store refused it')",
    ] {
        sql(&mut conn, statement).await;
    }

    // Relinked to plan 11, which mints at approval.
    let relink = [(7, campaign(EventKind::CampaignPlanLinked, 11))];
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &relink).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = async |conn: &mut tracking_db::Conn, query: &str| -> Vec<String> {
        diesel::sql_query(query)
            .load::<Line>(conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|l| l.line)
            .collect()
    };
    assert_eq!(
        lines(
            &mut conn,
            "select concat_ws(' ', creator_id, code, status) as line from codes order by id"
        )
        .await,
        ["1 ANA1 disabled", "2 ANA2 disabled"]
    );
    assert_eq!(
        lines(
            &mut conn,
            "select code as line from store_disables order by code"
        )
        .await,
        ["ANA1", "ANA2"],
        "the old plan's store is told"
    );
    assert_eq!(
        lines(&mut conn, "select reason as line from mint_failures").await,
        Vec::<String>::new(),
        "the store's refusal of a retired code is not the brand's to act on"
    );
    assert_eq!(
        lines(
            &mut conn,
            "select creator_id::text as line from mint_queue order by creator_id"
        )
        .await,
        ["1"],
        "the approved creator is queued for the new plan; the added ones wait for approval"
    );
}

#[tokio::test]
async fn a_profile_fix_while_the_creator_is_being_minted_queues_them_again() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let projector = Projector {
        public_base_url: "http://links.test".into(),
    };
    let setup: Vec<(i64, PlanEvent)> = (1..)
        .zip([
            plan(EventKind::PlanCreated, CodeTrigger::OnAdd),
            campaign(EventKind::CampaignCreated, 10),
            creator(1, RosterStatus::Added),
        ])
        .collect();
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &setup).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A worker claimed the creator and is minting from the profile it read: its failure is not
    // recorded yet.
    let claimed = mint_service::store::queue::claim(&mut conn, 10, 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claimed.len(), 1);

    let mut fixed = creator(1, RosterStatus::Added);
    fixed.kind = EventKind::CreatorProfileUpdated as i32;
    let update = [(4, fixed)];
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &update).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The worker's attempt ends (failed on the old profile) and settles its entry: the entry
    // stays, queued again for the new profile, and free to be claimed.
    mint_service::store::queue::settle(&mut conn, &claimed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = mint_service::store::queue::claim(&mut conn, 10, 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again
            .iter()
            .map(|e| (e.brand_id, e.campaign_id, e.creator_id))
            .collect::<Vec<_>>(),
        vec![(1, 5, 1)]
    );
}

/// A Shopify plan's page moved before outreach: the codes' tracking links and their discount
/// links (which send the shopper on to the plan's page within the shop) both follow.
#[tokio::test]
async fn a_shopify_plans_new_page_reaches_its_discount_links() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let projector = Projector {
        public_base_url: "http://links.test".into(),
    };
    let shopify = |click_url: &str, kind: EventKind| {
        let mut event = plan(kind, CodeTrigger::OnApproval);
        if let Some(Subject::Plan(plan)) = &mut event.subject {
            plan.provider = Provider::Shopify as i32;
            plan.click_url = click_url.into();
        }
        event
    };
    let setup: Vec<(i64, PlanEvent)> = (1..)
        .zip([
            shopify("https://shop.example/summer", EventKind::PlanCreated),
            campaign(EventKind::CampaignCreated, 10),
            creator(1, RosterStatus::Approved),
        ])
        .collect();
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &setup).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tracking_db::stale_statistics::execute(
        &mut conn,
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug, destination_url, affiliate_url) \
         values (1, 5, 1, 10, 100, 'PROVIDER_SHOPIFY', 'ANA20', 'active', 's1', \
           'https://shop.example/summer', \
           'https://s.myshopify.com/discount/ANA20?redirect=%2Fsummer')",
    )
    .await;
    let moved = [(
        4,
        shopify("https://shop.example/summer-sale", EventKind::PlanUpdated),
    )];
    conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &moved).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let links: Vec<Line> = diesel::sql_query(
        "select concat_ws(' ', destination_url, affiliate_url) as line from codes",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        links.into_iter().map(|l| l.line).collect::<Vec<_>>(),
        ["https://shop.example/summer-sale \
          https://s.myshopify.com/discount/ANA20?redirect=%2Fsummer-sale"]
    );
}

/// Creators removed in one batch have their codes locked in the order every writer of codes
/// locks them (by id), not in the events' order: a disable round holding the first code waits
/// for nothing the batch holds, where the batch, holding the second code while waiting for the
/// first, would deadlock with it.
#[tokio::test]
async fn removals_lock_their_codes_in_id_order() {
    use tracking_db::stale_statistics::execute;
    let (_test_db, db, projector) = projected(&[1, 2]).await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into codes (brand_id, campaign_id, creator_id, plan_id, integration_id, \
           provider, code, status, slug) \
         values (1, 5, 1, 10, 100, 'PROVIDER_SANDBOX', 'ANA20', 'active', 's1'), \
           (1, 5, 2, 10, 100, 'PROVIDER_SANDBOX', 'BEA20', 'active', 's2')",
    )
    .await;

    // A disable round holds the first code (creator 1's).
    let mut round = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut round, "begin").await;
    execute(
        &mut round,
        "select id from codes where creator_id = 1 for update",
    )
    .await;
    // The removals come second creator first.
    let removals: Vec<(i64, PlanEvent)> = vec![
        (5, creator(2, RosterStatus::Removed)),
        (6, creator(1, RosterStatus::Removed)),
    ];
    let applied = tokio::spawn(async move {
        conn.transaction::<_, DbError, _>(async |conn| projector.apply_batch(conn, &removals).await)
            .await
    });
    let mut watcher = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    tracking_db::until_lock_wait(&mut watcher, &applied).await;
    // The round takes the second code at once: the batch waits for the first without holding it.
    execute(
        &mut round,
        "select id from codes where creator_id = 2 for update nowait",
    )
    .await;
    execute(&mut round, "commit").await;
    applied
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Line> = diesel::sql_query(
        "select creator_id || ' ' || status || ' ' || disabled as line from codes \
         order by creator_id",
    )
    .load(&mut watcher)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<String> = lines.into_iter().map(|l| l.line).collect();
    assert_eq!(lines, ["1 disabled true", "2 disabled true"]);
}

/// A creator whose code the brand disabled is queued by no trigger and settled unminted by the
/// queue's worker, unless a failure of the brand's own `MintCode` is on record for them: a
/// profile fix retries that one.
#[tokio::test]
async fn a_creator_whose_code_the_brand_disabled_is_queued_only_for_the_brands_failure() {
    use mint_service::store::{projection as store, queue};
    use tracking_db::stale_statistics::execute;
    let (_test_db, db, _projector) = projected(&[]).await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into roster (brand_id, campaign_id, creator_id, status, profile, code_disabled) \
         values (1, 5, 1, 'approved', '{}', true), (1, 5, 2, 'approved', '{}', true)",
    )
    .await;
    execute(
        &mut conn,
        "insert into mint_failures (brand_id, campaign_id, creator_id, reason, message, \
           by_trigger) values (1, 5, 2, 'missing_profile_field', 'no email', false)",
    )
    .await;
    store::enqueue(&mut conn, &[(1, 5, 1), (1, 5, 2)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = queue::claim(&mut conn, 10, 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = |entries: &[queue::Claimed]| {
        entries
            .iter()
            .map(|e| (e.brand_id, e.campaign_id, e.creator_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&first),
        [(1, 5, 2)],
        "only the brand's failure is queued"
    );
    // Queued anyway (before the disable): the worker leaves out the trigger's only.
    execute(
        &mut conn,
        "insert into mint_queue (brand_id, campaign_id, creator_id) values (1, 5, 1)",
    )
    .await;
    let claimed = queue::claim(&mut conn, 10, 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all = [first, claimed].concat();
    let disabled = queue::disabled_among(&mut conn, &all)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys(&disabled), [(1, 5, 1)]);
}
