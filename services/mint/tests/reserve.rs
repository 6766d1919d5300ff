//! A mint batch's reservation: ids drawn with its reads, then the codes, their events and the
//! cleared failures in one statement (its own transaction).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_api::common::v1::Provider;
use tracking_db::{SchemaSpec, TestDb};
use tracking_events::NewEvent;

use mint_service::domain::{Code, CodeStatus};
use mint_service::store::codes;

static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

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

fn code(id: i64, creator_id: i64, text: &str) -> Code {
    let at = chrono::DateTime::from_timestamp_micros(1_764_979_200_000_000)
        .unwrap_or_else(|| panic!("a valid time"));
    Code {
        brand_id: 7,
        id,
        campaign_id: 1,
        creator_id,
        plan_id: 1,
        integration_id: 1,
        provider: Provider::Sandbox,
        code: Some(text.to_owned()),
        status: CodeStatus::Pending,
        store_error: String::new(),
        slug: format!("slug-{id}"),
        destination_url: String::new(),
        affiliate_url: String::new(),
        expires_at: None,
        history: Vec::new(),
        created_at: at,
        updated_at: at,
    }
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

#[tokio::test]
async fn drawn_ids_are_new_and_leave_the_connection_committing_synchronously() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
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
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
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
    let events: Vec<NewEvent> = first.iter().map(event).collect();
    let inserted = codes::reserve(&mut conn, &first, &events, &[true, false])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inserted, [ids[0], ids[1]].into());

    // Creator 3's text is taken (case-insensitively), creator 2 has a live code already:
    // neither is stored nor announced, and creator 3's failure stays; creator 4's is cleared.
    let second = [
        code(ids[2], 3, "anna"),
        code(ids[3], 2, "BEN2"),
        code(ids[4], 4, "CARL"),
    ];
    let events: Vec<NewEvent> = second.iter().map(event).collect();
    let inserted = codes::reserve(&mut conn, &second, &events, &[true, false, true])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inserted, [ids[4]].into());

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
