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
