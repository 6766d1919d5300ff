//! A brand's edit of a code while the store renames its discount (`code_renames`): the code is
//! parked out of the pusher's scans, one edit at a time, put back when the store refuses, and
//! an edit whose hold ran out is taken over once.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tracking_db::{SchemaSpec, Taken, TestDb};
use tracking_events::NewEvent;

use mint_service::domain::{Code, CodeStatus};
use mint_service::error::Error;
use mint_service::store::codes;
use mint_service::store::renames::{self, Rename};

mod common;

use common::code;

static SCHEMAS: &[SchemaSpec] = &[("mint", mint_service::MIGRATIONS)];

/// Mints `text` for `creator` (brand 7, campaign 1, integration 1) and returns the stored code.
async fn minted(conn: &mut AsyncPgConnection, id: i64, creator: i64, text: &str) -> Code {
    let row = Code {
        affiliate_url: format!("https://shop.example/?code={text}"),
        ..code(id, creator, text)
    };
    let event = NewEvent {
        brand_id: 7,
        kind: "CODE_EVENT_KIND_MINTED",
        payload: text.as_bytes().to_vec(),
    };
    codes::reserve(conn, &[row], &[event], &[false], Taken::Fail, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stored(conn, id).await
}

async fn stored(conn: &mut AsyncPgConnection, id: i64) -> Code {
    codes::get(conn, 7, id, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("code {id} is stored"))
}

/// Renames `code` to `to` as `UpdateCode` does and starts its edit, held for `held_secs`; `None`
/// when an edit of the code is already being made.
async fn edit(
    conn: &mut AsyncPgConnection,
    code: &Code,
    to: &str,
    held_secs: i64,
) -> Option<(Code, Rename)> {
    let code = code.clone();
    let to = to.to_owned();
    conn.transaction::<_, Error, _>(async |conn| {
        let renamed = codes::rename(
            conn,
            &code,
            &to,
            &format!("https://shop.example/?code={to}"),
            "manual",
            CodeStatus::Pending,
        )
        .await?
        .unwrap_or_else(|| panic!("{to} is free"));
        // As `UpdateCode`: a refused start rolls the rename back.
        let rename = renames::begin(conn, &code, held_secs)
            .await?
            .ok_or_else(|| Error::FailedPrecondition("being edited".into()))?;
        Ok((renamed, rename))
    })
    .await
    .map_err(|e| assert!(matches!(e, Error::FailedPrecondition(_)), "{e}"))
    .ok()
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    what: String,
}

/// Whether the pusher's scan could take code `id`: `parked` (waiting for its edit) or `due`.
async fn push_state(conn: &mut AsyncPgConnection, id: i64) -> String {
    let rows: Vec<Due> = diesel::sql_query(
        "select case when next_push_at = 'infinity' then 'parked' \
           when next_push_at <= now() then 'due' else 'later' end as what \
         from codes where brand_id = 7 and id = $1",
    )
    .bind::<BigInt, _>(id)
    .load(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|r| r.what).collect()
}

#[tokio::test]
async fn an_edit_parks_its_code_one_at_a_time_and_a_refusal_puts_everything_back() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let before = minted(&mut conn, 1, 1, "ANNA").await;
    let before = codes::set_status(&mut conn, 7, &[before.id], CodeStatus::Active)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);

    let (renamed, rename) = edit(&mut conn, &before, "ANNAVIP", 120)
        .await
        .unwrap_or_else(|| panic!("the first edit starts"));
    assert_eq!(renamed.code.as_deref(), Some("ANNAVIP"));
    assert_eq!(renamed.status, CodeStatus::Pending);
    assert_eq!(
        (rename.previous_code.as_str(), rename.previous_status()),
        ("ANNA", CodeStatus::Active)
    );
    assert_eq!(push_state(&mut conn, before.id).await, "parked");

    // A second edit while the first is made at the store is refused (its rename rolled back).
    assert!(edit(&mut conn, &renamed, "ANNA2", 120).await.is_none());
    assert_eq!(
        stored(&mut conn, before.id).await.code.as_deref(),
        Some("ANNAVIP")
    );
    // Nothing abandoned while the edit's hold runs.
    let abandoned = renames::take_abandoned(&mut conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(abandoned.is_empty(), "{abandoned:?}");

    // The store refused: the code has what it had, its history without the edit.
    let back = codes::put_back(&mut conn, &renamed, &rename)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ANNA is free"));
    assert_eq!(
        (back.code.as_deref(), back.status, back.history.len()),
        (Some("ANNA"), CodeStatus::Active, 0)
    );
    assert_eq!(back.affiliate_url, before.affiliate_url);
    assert!(
        renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    // The next edit may start.
    assert!(edit(&mut conn, &back, "ANNA3", 120).await.is_some());
}

#[tokio::test]
async fn an_abandoned_edit_is_taken_over_once_and_put_back_only_while_its_old_text_is_free() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(mint_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let pending = minted(&mut conn, 1, 1, "BO").await;
    // Held for no time: as if its process had stopped before the store answered.
    let (renamed, rename) = edit(&mut conn, &pending, "BOVIP", 0)
        .await
        .unwrap_or_else(|| panic!("the edit starts"));

    let taken = renames::take_abandoned(&mut conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.len(), 1);
    assert!(taken[0].held_until > rename.held_until);
    let again = renames::take_abandoned(&mut conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again.is_empty(),
        "held by the round that took it: {again:?}"
    );
    // The stopped process's hold is no longer the edit's.
    assert!(
        !renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    // Another creator got the old text meanwhile: it cannot be put back.
    minted(&mut conn, 2, 2, "bo").await;
    let back = codes::put_back(&mut conn, &renamed, &taken[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(back.is_none());
    assert_eq!(stored(&mut conn, 1).await.code.as_deref(), Some("BOVIP"));
    assert!(
        renames::end(&mut conn, &taken[0])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
}
